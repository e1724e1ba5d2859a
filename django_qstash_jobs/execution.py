"""Running one delivery of a job: claim the row, run the handler, record the outcome.

The HTTP receiver and the ``immediate`` transport both call :func:`execute`, so a test of the
immediate path exercises the code that serves QStash.
"""

from __future__ import annotations

import enum
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone
from pydantic import BaseModel

from django_qstash_jobs import signals, statements, storable
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import (
    JobValidationError,
    PermanentJobError,
    UnknownJobTypeError,
)
from django_qstash_jobs.models import (
    FINISHED_STATUSES,
    JobExecution,
    JobSchedule,
    JobStatus,
)
from django_qstash_jobs.registry import registry

logger = logging.getLogger("django_qstash_jobs")


class Outcome(enum.Enum):
    """What became of one delivery; the receiver turns it into an HTTP answer."""

    #: The handler ran and succeeded.
    COMPLETED = "completed"
    #: The job was already finished or cancelled: nothing ran, the delivery is acknowledged.
    ACKNOWLEDGED = "acknowledged"
    #: The handler failed and QStash should deliver again.
    RETRY = "retry"
    #: The handler failed on the last attempt: the job is failed.
    FAILED = "failed"
    #: The job can never succeed (bad payload, unknown type, PermanentJobError): QStash must
    #: not retry.
    REJECTED = "rejected"
    #: Another delivery holds the job right now; QStash should try again later.
    BUSY = "busy"


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message, as QStash describes it."""

    job_id: str | None
    message_id: str | None = None
    #: ``Upstash-Retried``: 0 on the first delivery of the message.
    retried: int = 0
    #: ``Upstash-Schedule-Id`` when a schedule produced the message.
    schedule_id: str | None = None


def execute(delivery: Delivery) -> Outcome:
    """Run one delivery to its end and record the outcome on the job's row."""
    job_id = delivery.job_id or job_id_for_schedule_firing(delivery)
    if job_id is None:
        logger.warning("Delivery %s names no job and no known schedule.", delivery.message_id)
        return Outcome.REJECTED

    config = get_config()
    execution = statements.claim(job_id, config.lease_seconds)
    if execution is None:
        return _unclaimed_outcome(job_id, delivery)

    attempt = delivery.retried + 1
    context = JobContext(
        job_id=execution.job_id,
        job_type=execution.job_type,
        attempt=attempt,
        max_retries=execution.max_retries,
        metadata=dict(execution.metadata),
        execution=execution,
        lease_seconds=config.lease_seconds,
    )
    signals.send_lifecycle(signals.job_started, execution, attempt=attempt)
    try:
        job_type = registry.get(execution.job_type)
        payload = job_type.validate(execution.payload)
        with _OutcomeKeptRecordable():
            returned = job_type.handler(payload, context)
        result = _json_result(returned)
    except (PermanentJobError, UnknownJobTypeError, JobValidationError) as exc:
        _record_failure(execution, exc, final=True)
        return Outcome.REJECTED
    except Exception as exc:
        final = context.is_last_attempt
        _record_failure(execution, exc, final=final)
        return Outcome.FAILED if final else Outcome.RETRY
    except BaseException as exc:
        # A handler's sys.exit(), or gunicorn aborting a worker past its timeout (SystemExit):
        # the attempt failed. Recorded, so that the job is not left running until its lease
        # runs out; then the exit goes on.
        _record_failure(execution, exc, final=context.is_last_attempt)
        raise
    _record_success(execution, result)
    return Outcome.COMPLETED


class _OutcomeKeptRecordable:
    """Around the handler, where it runs inside the caller's transaction (the ``immediate``
    transport there): a savepoint, rolled back only if the handler's error aborted the
    transaction (PostgreSQL), so that its outcome can still be recorded.

    Kept otherwise: the handler's own writes of a failed attempt (an email batch's delivery
    records) must stay, or the next attempt would send again what this one sent. Over HTTP
    the receiver runs in autocommit, and nothing is needed. A class rather than a
    ``@contextmanager``: that re-raises by setting the exception's ``__traceback__``, which a
    frozen (dataclass) exception refuses, and its own error would replace the handler's.
    """

    def __enter__(self) -> None:
        self.using = router.db_for_write(JobExecution)
        self.savepoint: str | None = None
        if transaction.get_connection(self.using).in_atomic_block:
            self.savepoint = _create_savepoint(using=self.using)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: Any
    ) -> None:
        if self.savepoint is not None:
            if exc is not None and _transaction_aborted(self.using):
                transaction.savepoint_rollback(self.savepoint, using=self.using)
            else:
                transaction.savepoint_commit(self.savepoint, using=self.using)
        # None: the handler's exception, if any, goes on as it is.


def _transaction_aborted(using: str) -> bool:
    """Whether a failed statement left the transaction refusing every other (PostgreSQL's)."""
    connection = transaction.get_connection(using)
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    raw = connection.connection
    info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has a method instead
    status = info.transaction_status if info is not None else raw.get_transaction_status()
    return bool(status == _LIBPQ_IN_FAILED_TRANSACTION)


#: Django 6.1 names it ``savepoint_create`` (``savepoint`` is deprecated); 5.2 has only that.
_create_savepoint = getattr(transaction, "savepoint_create", None) or transaction.savepoint

#: libpq's ``PQTRANS_INERROR``, which psycopg 3 and psycopg2 both report as it is.
_LIBPQ_IN_FAILED_TRANSACTION = 3


def _unclaimed_outcome(job_id: str, delivery: Delivery) -> Outcome:
    status = statements.job_rows().filter(job_id=job_id).values_list("status", flat=True).first()
    if status is None:
        # Perhaps not committed yet: published from inside a transaction (ENQUEUE_ON_COMMIT
        # off), QStash can deliver first, and that transaction may run long. Busy at every
        # attempt: refused, the job would be lost once it commits. A row deleted, or rolled
        # back, costs QStash only its few retries.
        logger.info("Delivery for job %s, not recorded (yet): asked to come back.", job_id)
        return Outcome.BUSY
    if status in FINISHED_STATUSES:
        return Outcome.ACKNOWLEDGED
    return Outcome.BUSY


def _json_result(result: Any) -> Any:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        return storable.json_value(result)
    except storable.NotStorable as exc:
        raise PermanentJobError(
            f"The handler returned a {type(result).__name__} that cannot be stored ({exc}); "
            "return a dict, list, str, number, bool or None, without NaN or Infinity or NUL "
            "characters."
        ) from exc


def _record_success(execution: JobExecution, result: Any) -> None:
    now = timezone.now()
    updated = statements.update_if_claimed(
        execution,
        status=JobStatus.COMPLETED,
        result=result,
        error="",
        traceback="",
        progress=100,
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )
    if not updated:
        logger.warning("Job %s finished after its lease was taken over.", execution.job_id)
        return
    execution.status, execution.result, execution.finished_at = JobStatus.COMPLETED, result, now
    execution.progress = 100
    signals.send_lifecycle(signals.job_succeeded, execution, result=result)


def _record_failure(execution: JobExecution, exc: BaseException, *, final: bool) -> None:
    now = timezone.now()
    # An exception's message may carry a NUL or a lone surrogate, which no text column takes.
    error = storable.text(f"{type(exc).__name__}: {_message_of(exc)}")
    if isinstance(exc, SystemExit):
        # Its message is only an exit code: say what it means here.
        error += (
            " (the worker was told to exit mid-job: a sys.exit() call, or the web server "
            "ending a request past its timeout)"
        )
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    trace = storable.text(trace)
    status = JobStatus.FAILED if final else JobStatus.RETRYING
    updated = statements.update_if_claimed(
        execution,
        status=status,
        error=error,
        traceback=trace,
        finished_at=now if final else None,
        lease_expires_at=None,
        updated_at=now,
    )
    if not updated:
        logger.warning("Job %s failed after its lease was taken over.", execution.job_id)
        return
    execution.status, execution.error, execution.traceback = status, error, trace
    if final:
        execution.finished_at = now
        signals.send_job_failed(execution, error, exc)
    else:
        logger.info("Job %s (%s) will be retried: %s", execution.job_id, execution.job_type, error)
        signals.send_lifecycle(signals.job_retrying, execution, error=error, exception=exc)


def _message_of(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in if that raises: the failure must be recorded all the same."""
    try:
        return str(exc)
    except Exception:
        return "<its message could not be read: str() of the exception raised>"


#: The error of a firing recorded without running, because its schedule is paused.
PAUSED_FIRING_ERROR = (
    "Not run: the schedule was paused when it fired (QStash had missed the pause; "
    "`manage.py sync_schedules` pauses it there)."
)


def job_id_for_schedule_firing(delivery: Delivery) -> str | None:
    """The row of a schedule's firing, created on its first delivery and keyed by message id.

    The firing of a paused schedule is recorded ``cancelled``, so that it is acknowledged
    without running; a firing recorded before the pause runs on.
    """
    if not (delivery.schedule_id and delivery.message_id):
        return None
    recorded = (
        statements.job_rows()
        .filter(message_id=delivery.message_id)
        .values_list("job_id", flat=True)
    )
    if existing := recorded.first():
        return existing
    # From the database written to: a pause just made must be seen.
    schedules = JobSchedule.objects.using(router.db_for_write(JobSchedule))
    schedule = schedules.filter(schedule_id=delivery.schedule_id).first()
    if schedule is None:
        return None
    # QStash fires a paused schedule when it missed the pause (it could not be reached then, or
    # the pause after a push failed). A cancelled row rather than none: it shows the operator
    # that QStash fired, and job_dispatcher.retry runs it if it was wanted after all.
    state: dict[str, Any] = {"status": JobStatus.QUEUED}
    if schedule.paused:
        state = {
            "status": JobStatus.CANCELLED,
            "error": PAUSED_FIRING_ERROR,
            "finished_at": timezone.now(),
        }
    try:
        # A savepoint, so that losing the race inside a caller's transaction leaves it usable.
        with statements.jobs_transaction():
            execution = JobExecution.objects.create(
                **state,
                job_type=schedule.job_type,
                payload=schedule.payload,
                user_id=schedule.user_id,
                organization_id=schedule.organization_id,
                metadata=schedule.job_metadata(),
                message_id=delivery.message_id,
                schedule=schedule,
                # An unknown type's firing is recorded anyway: running it fails it visibly.
                max_retries=registry.max_retries(schedule.job_type),
            )
    except IntegrityError:
        # A concurrent delivery of the same firing created it first.
        return recorded.first()
    if schedule.paused:
        logger.warning(
            "Schedule %s fired while paused: job %s recorded as cancelled, not run.",
            schedule.name,
            execution.job_id,
        )
    return execution.job_id
