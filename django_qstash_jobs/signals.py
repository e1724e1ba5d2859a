"""Lifecycle signals of jobs, and :func:`enqueue_on` to enqueue jobs from model signals."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.db import router, transaction
from django.db.models.signals import pre_save
from django.dispatch import Signal

from django_qstash_jobs.registry import function_identity

if TYPE_CHECKING:
    from django_qstash_jobs.models import JobExecution

logger = logging.getLogger("django_qstash_jobs")

#: Sent after a job is recorded (before it is published). Args: ``execution``.
job_enqueued = Signal()
#: Sent when a delivery has claimed a job, before the handler runs.
#: Args: ``execution``, ``attempt``.
job_started = Signal()
#: Sent after a handler succeeded and its result was stored. Args: ``execution``, ``result``.
job_succeeded = Signal()
#: Sent after an attempt failed and QStash will deliver again. Args: ``execution``, ``error``,
#: ``exception``.
job_retrying = Signal()
#: Sent after a job failed for good. Args: ``execution``, ``error``, ``exception``.
job_failed = Signal()
#: Sent after ``job_dispatcher.cancel`` cancelled a job that had not started. Args: ``execution``.
job_cancelled = Signal()


def send_job_failed(execution: JobExecution, error: str, exception: BaseException) -> None:
    """Log a job's failure for good and send ``job_failed``: every way a job fails ends here
    (its handler's last attempt, QStash giving up on it, QStash refusing its message)."""
    logger.error("Job %s (%s) failed: %s", execution.job_id, execution.job_type, error)
    send_lifecycle(job_failed, execution, error=error, exception=exception)


def send_lifecycle(signal: Signal, execution: JobExecution, **kwargs: Any) -> None:
    """Send a lifecycle signal; a failing receiver is logged and never fails the job."""
    from django_qstash_jobs.models import JobExecution

    about = ("job lifecycle", "job", execution.job_id)
    send_logging_failures(signal, JobExecution, about, execution=execution, **kwargs)


def send_logging_failures(
    signal: Signal, sender: Any, about: tuple[str, str, str], **kwargs: Any
) -> None:
    """``send_robust``, logging each receiver that raised: a receiver never fails the caller.

    ``about`` names the signal's kind, and what it was sent for, for the log line
    ("Receiver ... of a <kind> signal raised for <noun> <id>.").
    """
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of a %s signal raised for %s %s.", receiver, *about, exc_info=response
            )


Builder = Callable[..., Any]


def enqueue_on(
    signal: Signal,
    sender: Any,
    job_type: str,
    *,
    payload: Builder | Mapping[str, Any] | None = None,
    metadata: Builder | Mapping[str, Any] | None = None,
    options: Builder | Mapping[str, Any] | None = None,
    when: Callable[..., bool] | None = None,
    dispatch_uid: str | None = None,
) -> Callable[..., None]:
    """Enqueue ``job_type`` each time ``signal`` is sent by ``sender``, after the commit.

    ``payload``, ``metadata`` and ``options`` are dicts or callables receiving the signal's
    keyword arguments (``instance``, ``created``...); ``when`` filters. For example, a welcome
    email for each new user::

        enqueue_on(post_save, User, JOB_TYPES.SEND_EMAIL,
                   payload=lambda instance, **kw: {"template": "welcome", "to": instance.email,
                                                   "data": {"recipient_name": instance.first_name}},
                   metadata=lambda instance, **kw: {"user_id": instance.pk},
                   when=lambda created, **kw: created)

    The payload is built and validated when the signal fires, so a bad payload raises in the code
    that saved the model; the job is published once the transaction commits (the model's, when
    it was saved on another database than the jobs). A raw save (``loaddata``) enqueues nothing;
    ``pre_save``, sent before the row exists, is refused.
    Returns the receiver, connected with a strong reference; its ``dispatch_uid`` attribute
    disconnects it: ``signal.disconnect(sender=sender, dispatch_uid=receiver.dispatch_uid)``.
    """

    if signal is pre_save:
        raise TypeError(
            "enqueue_on(pre_save, ...) would record the job before the row is saved, and even "
            "if saving it fails; connect it to post_save."
        )

    def build(value: Builder | Mapping[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        return value(**kwargs) if callable(value) else value

    def receiver_in_transaction(sender: Any, **kwargs: Any) -> None:
        if kwargs.get("raw"):
            # loaddata saves fixtures as they are: no welcome email to every user of a fixture.
            return
        if when is not None and not when(sender=sender, **kwargs):
            return
        from django_qstash_jobs.dispatcher import job_dispatcher
        from django_qstash_jobs.models import JobExecution

        arguments = {"sender": sender, **kwargs}
        # Built and checked now: a bad payload raises in the code that saved the model.
        execution = job_dispatcher._prepare(
            job_type,
            build(payload, arguments),
            build(metadata, arguments),
            build(options, arguments),
        )
        jobs_database = router.db_for_write(JobExecution)

        # In a transaction, so that the publish waits for the commit even when the model was
        # saved in autocommit mode, and whatever ENQUEUE_ON_COMMIT says; a failed publish is
        # then logged and left to republish_jobs instead of raising out of the caller's save().
        def record() -> None:
            with transaction.atomic(using=jobs_database):
                job_dispatcher._record(execution, after_commit=True)

        saved_on = kwargs.get("using") or jobs_database
        if saved_on != jobs_database and transaction.get_connection(saved_on).in_atomic_block:
            # The model's transaction is on another database than the jobs: the job is
            # recorded once that one commits (never, if it rolls back).
            transaction.on_commit(record, using=saved_on, robust=True)
        else:
            record()

    # The same registration made twice (ready() run again) connects once; two that differ
    # only in their payload or filter (a welcome email on create, another on update) both do.
    builders = (payload, metadata, options, when)
    identities = repr([function_identity(builder) for builder in builders])
    uid = (
        dispatch_uid
        or f"django_qstash_jobs.enqueue_on:{job_type}:{id(signal)}:{sender!r}:"
        + hashlib.sha256(identities.encode()).hexdigest()
    )
    signal.connect(receiver_in_transaction, sender=sender, weak=False, dispatch_uid=uid)
    receiver_in_transaction.dispatch_uid = uid  # type: ignore[attr-defined]
    return receiver_in_transaction
