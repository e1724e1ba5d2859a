"""The exceptions django-qstash-jobs raises, each saying what went wrong and what to fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import SuspiciousOperation

if TYPE_CHECKING:
    from django_qstash_jobs.models import JobExecution


class QStashJobsError(Exception):
    """Base class of every error this package raises on purpose."""


class EnqueueError(QStashJobsError):
    """A job could not be enqueued.

    Raised as is when the job was recorded but QStash refused the publish or could not be
    reached: the `JobExecution` row stays ``pending`` and ``manage.py republish_jobs`` publishes
    it later, so the job is not lost. ``job_ids`` names the rows left pending.
    """

    def __init__(self, message: str, *, job_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.job_ids: list[str] = job_ids or []


class PublishRefused(EnqueueError):
    """QStash refused to publish (HTTP 400, 413 or 422): sent again as is, it is refused again.

    ``job_ids`` names the refused jobs. When QStash accepted the other messages of the same
    batch, the refusal is these messages' own (an option, their size): they are ``failed`` with
    its answer as their error, and ``failed`` is true. Otherwise (a single job, or every one
    refused) it may be the site's, a ``RECEIVER_URL`` QStash will not deliver to: they stay
    ``pending`` for ``republish_jobs``, once what QStash names is fixed.
    """

    def __init__(
        self, message: str, *, job_ids: list[str] | None = None, failed: bool = False
    ) -> None:
        super().__init__(message, job_ids=job_ids)
        self.failed = failed
        #: When a batch was refused one message at a time: each refused row, and its refusal.
        self.refusals: dict[JobExecution, PublishRefused] = {}


class JobValidationError(EnqueueError, ValueError):
    """The payload does not match the job type's schema; nothing was recorded.

    ``errors`` holds one entry per problem: ``{"field": "a.b", "message": "...", "type": "..."}``.
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or []


class UnknownJobTypeError(EnqueueError, LookupError):
    """No job type is registered under this name."""


class JobStateError(QStashJobsError, ValueError):
    """The job is not in a state that allows the operation (e.g. retrying a running job)."""


class ScheduleError(QStashJobsError, ValueError):
    """A schedule is invalid (bad cron expression, unknown job type) or could not be synced."""


class PermanentJobError(QStashJobsError):
    """Raised by a handler to fail the job now: it is not retried.

    The message is stored as the job's error, so make it useful to whoever reads the admin.
    """


class DeliveryAbandoned(QStashJobsError):
    """QStash stopped delivering a job before any attempt recorded an outcome.

    Sent as the ``exception`` of ``job_failed`` when QStash's failure callback fails the job: the
    last attempts timed out, or never reached the site, or found its database down.
    """


class SignatureError(QStashJobsError):
    """A delivery's ``Upstash-Signature`` did not verify. The reason is logged, never answered."""


class EmailsNotSent(QStashJobsError):
    """Some emails of a job failed for a reason that may pass; the job is retried for those only."""


class WebhookValidationError(QStashJobsError, SuspiciousOperation):
    """An inbound webhook failed verification; it is logged and answered with a bare 400.

    A missing or wrong signature, a stale timestamp, or a body not in the provider's format.
    """
