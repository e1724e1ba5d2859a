"""``job_dispatcher``: the one entry point to enqueue, cancel and retry jobs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from django_qstash_jobs import outbox, schedules, signals, statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import EnqueueError, JobStateError
from django_qstash_jobs.models import CLAIMABLE_STATUSES, JobExecution, JobStatus
from django_qstash_jobs.options import (
    EnqueueOptions,
    JobMetadata,
    PublishOptions,
    check_keys,
    deduplication_id_for,
    owner_columns,
    parse_metadata,
    parse_options,
)
from django_qstash_jobs.registry import registry
from django_qstash_jobs.transports import get_transport

logger = logging.getLogger("django_qstash_jobs")

_ENQUEUE_MANY_KEYS = frozenset({"job_type", "payload", "metadata", "options"})


class JobDispatcher:
    """Enqueues, cancels and retries jobs. Use the module-level ``job_dispatcher``."""

    def enqueue(
        self,
        job_type: str,
        payload: Mapping[str, Any] | Any = None,
        metadata: JobMetadata | Mapping[str, Any] | None = None,
        options: EnqueueOptions | Mapping[str, Any] | None = None,
    ) -> str:
        """Validate, record and publish one job; return its job id.

        Inside ``transaction.atomic()`` the publish waits for the commit. Outside, a failed
        publish raises :class:`EnqueueError`; the row stays ``pending`` for ``republish_jobs``.
        With an ``idempotency_key`` that was used before, the first job's id is returned and
        nothing is published.
        """
        return self._record(self._prepare(job_type, payload, metadata, options))

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Enqueue many jobs with one INSERT and one batch publish; return their ids in order.

        Each job is a dict with ``job_type`` and optionally ``payload``, ``metadata`` and
        ``options``. Every payload is validated before anything is recorded, so one bad job
        records none. Idempotency keys behave as in :meth:`enqueue`.
        """
        prepared: list[JobExecution] = []
        for index, job in enumerate(jobs):
            check_keys(job, _ENQUEUE_MANY_KEYS, f"enqueue_many job #{index}")
            if "job_type" not in job:
                raise TypeError(f"enqueue_many job #{index} has no 'job_type'.")
            prepared.append(
                self._prepare(
                    job["job_type"], job.get("payload"), job.get("metadata"), job.get("options")
                )
            )
        if not prepared:
            return []

        # The first job with a given key wins, within the batch and against earlier enqueues.
        keys: set[str] = set()
        to_insert: list[JobExecution] = []
        for execution in prepared:
            key = execution.idempotency_key
            if key is not None:
                if key in keys:
                    continue
                keys.add(key)
            to_insert.append(execution)
        statements.insert_many(to_insert, ignore_conflicts=bool(keys))

        job_id_for_key: dict[str, str] = {}
        if keys:
            # From the database written to: a replica would not have the rows just inserted.
            winners = statements.job_rows().filter(idempotency_key__in=keys)
            job_id_for_key = {
                key: job_id
                for key, job_id in winners.values_list("idempotency_key", "job_id")
                if key is not None  # never, given the filter; the column's type allows it
            }
        created = [
            execution
            for execution in to_insert
            if execution.idempotency_key is None
            or job_id_for_key.get(execution.idempotency_key) == execution.job_id
        ]
        for execution in created:
            signals.send_lifecycle(signals.job_enqueued, execution)
        outbox.publish_on_commit(created)
        return [
            execution.job_id
            if execution.idempotency_key is None
            else job_id_for_key[execution.idempotency_key]
            for execution in prepared
        ]

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started; return False if it already started or finished.

        The row becomes ``cancelled`` first, so a delivery that races the cancel is acknowledged
        without running; then, once the caller's transaction commits, the QStash message is
        cancelled if it was not delivered yet. Raises ``JobExecution.DoesNotExist`` for an
        unknown job id.
        """
        now = timezone.now()
        rows = statements.job_rows()
        cancelled = rows.filter(job_id=job_id, status__in=CLAIMABLE_STATUSES).update(
            status=JobStatus.CANCELLED, finished_at=now, lease_expires_at=None, updated_at=now
        )
        execution = rows.get(job_id=job_id)
        if not cancelled:
            return False
        # After the commit: a rolled-back cancel leaves the job queued, its message still there
        # to deliver it, and nobody told it was cancelled.
        transaction.on_commit(lambda: _cancelled(execution), using=rows.db, robust=True)
        return True

    def retry(self, job_id: str) -> str:
        """Publish a failed or cancelled job again, under the same job id; return the id.

        Raises :class:`JobStateError` for a job in another state, ``JobExecution.DoesNotExist``
        for an unknown id, and :class:`EnqueueError` if the publish fails (the row is then
        ``pending`` and ``republish_jobs`` will publish it).
        """
        rows = statements.job_rows()
        execution = rows.get(job_id=job_id)
        retryable = (JobStatus.FAILED, JobStatus.CANCELLED)
        if execution.status not in retryable:
            raise JobStateError(
                f"Job {job_id} is {execution.status}; only failed or cancelled jobs can be retried."
            )
        # A new deduplication id, or QStash would drop this publish as a repeat of the first.
        options = PublishOptions.from_json(execution.options)
        options = replace(options, deduplication_id=f"{job_id}:retry:{uuid.uuid4().hex[:12]}")
        now = timezone.now()
        reset = rows.filter(pk=execution.pk, status__in=retryable).update(
            status=JobStatus.PENDING,
            options=options.as_json(),
            attempts=0,
            result=None,
            error="",
            traceback="",
            progress=0,
            progress_message="",
            started_at=None,
            finished_at=None,
            # Claimed for this publish: the row is old, and republish_jobs would otherwise take
            # it at once and publish it a second time. Published, the claim is cleared.
            publish_claimed_at=now,
            updated_at=now,
        )
        if not reset:
            raise JobStateError(f"Job {job_id} changed state while being retried; try again.")
        # Read back where it was written: refresh_from_db() asks the read router, and a
        # replica's copy would publish under the first deduplication id, which QStash drops.
        execution = rows.get(pk=execution.pk)
        outbox.publish_on_commit([execution])
        return job_id

    # Schedules: thin entry points; django_qstash_jobs.schedules has the logic.

    def schedule(
        self,
        job_type: str,
        cron: str,
        payload: Mapping[str, Any] | Any = None,
        metadata: JobMetadata | Mapping[str, Any] | None = None,
        *,
        name: str,
    ) -> str:
        """Create the schedule called ``name``, or update it; return its schedule id.

        ``cron`` is five fields (day of week 0-7, 0 and 7 Sunday), optionally prefixed with
        ``CRON_TZ=<zone>``. A bad expression, job type or payload raises :class:`ScheduleError`.
        """
        return schedules.schedule(job_type, cron, payload, metadata, name=name)

    def unschedule(self, schedule_id: str) -> None:
        """Delete a schedule (by id or name) from QStash and the database."""
        schedules.unschedule(schedule_id)

    def pause_schedule(self, schedule_id: str) -> None:
        """Stop a schedule (by id or name) from firing until it is resumed."""
        schedules.pause_schedule(schedule_id)

    def resume_schedule(self, schedule_id: str) -> None:
        """Let a paused schedule (by id or name) fire again."""
        schedules.resume_schedule(schedule_id)

    def _prepare(
        self,
        job_type: str,
        payload: Any,
        metadata: Mapping[str, Any] | None,
        options: Mapping[str, Any] | None,
    ) -> JobExecution:
        """The unsaved row of a checked job, its options and deduplication id filled in."""
        definition = registry.get(job_type)
        stored_payload = definition.serialize({} if payload is None else payload)
        parsed_metadata = parse_metadata(metadata)
        publish_options = parse_options(options)
        if publish_options.callback and publish_options.callback == get_config().receiver_url:
            # QStash's per-attempt callbacks would reach the receiver as if they were its notice
            # that it gave up, and fail a job QStash is still retrying.
            raise ValueError(
                "options['callback'] cannot be RECEIVER_URL: the receiver records every attempt "
                "already; point callback at a view of your own."
            )
        max_retries = (
            definition.max_retries if publish_options.retries is None else publish_options.retries
        )
        key = parsed_metadata.get("idempotency_key")
        execution = JobExecution(
            job_type=job_type,
            payload=stored_payload,
            **owner_columns(parsed_metadata),
            idempotency_key=key,
            metadata=parsed_metadata,
            max_retries=max_retries,
        )
        # The key, as QStash's deduplication id too; a publish QStash answers as a duplicate of
        # another site's or a deleted job's is sent again under the job id (see the transport).
        deduplication_id = execution.job_id if key is None else deduplication_id_for(key)
        publish_options = replace(publish_options, deduplication_id=deduplication_id)
        execution.options = publish_options.as_json()
        return execution

    def _record(self, execution: JobExecution, *, after_commit: bool | None = None) -> str:
        """Insert a prepared row and publish it (see :func:`outbox.publish_on_commit`).

        Returns its job id, or the existing job's for an idempotency key used before.
        """
        if execution.idempotency_key is None:
            statements.insert(execution)
        else:
            existing = self._insert_once(execution, execution.idempotency_key)
            if existing is not None:
                return existing
        signals.send_lifecycle(signals.job_enqueued, execution)
        outbox.publish_on_commit([execution], after_commit=after_commit)
        return execution.job_id

    @staticmethod
    def _insert_once(execution: JobExecution, key: str) -> str | None:
        """Insert the row; if its idempotency key exists, return the existing job's id instead."""
        try:
            # A savepoint: on PostgreSQL a failed INSERT aborts the transaction around it.
            with statements.jobs_transaction():
                statements.insert(execution)
        except IntegrityError:
            holders = statements.job_rows().filter(idempotency_key=key)
            existing = holders.values_list("job_id", flat=True).first()
            if existing is None:
                raise
            return existing
        return None


def _cancelled(execution: JobExecution) -> None:
    signals.send_lifecycle(signals.job_cancelled, execution)
    if not execution.message_id:
        return
    try:
        get_transport().cancel(execution.message_id)
    except EnqueueError as exc:
        # The row is cancelled, so a delivery would be acknowledged without running.
        logger.warning("Cancelling QStash message %s failed: %s", execution.message_id, exc)


#: The dispatcher every caller uses.
job_dispatcher = JobDispatcher()


def get_job_execution_by_job_id(job_id: str) -> JobExecution | None:
    """The job's row, or None if there is no such job."""
    return JobExecution.objects.filter(job_id=job_id).first()
