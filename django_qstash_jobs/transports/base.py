"""The transport interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django_qstash_jobs.exceptions import ScheduleError
from django_qstash_jobs.options import PublishOptions

if TYPE_CHECKING:
    from django_qstash_jobs.conf import JobsConfig


@dataclass(frozen=True)
class OutgoingMessage:
    """One job to publish."""

    job_id: str
    job_type: str
    max_retries: int
    options: PublishOptions

    def body(self) -> dict[str, Any]:
        """What QStash delivers back: the row holds everything else, so the body stays small.

        The deduplication id, new for each manual retry, tells which publish of the job a
        failure notice is about (see failure_notices.py).
        """
        body = {"job_id": self.job_id, "job_type": self.job_type}
        if self.options.deduplication_id:
            body["deduplication_id"] = self.options.deduplication_id
        return body


@dataclass(frozen=True)
class OutgoingSchedule:
    """A schedule as QStash should hold it: fired to ``RECEIVER_URL`` on ``cron``."""

    schedule_id: str
    job_type: str
    cron: str
    max_retries: int

    def body(self) -> dict[str, Any]:
        """What each firing delivers: the receiver finds the ``JobSchedule`` by this id.

        The receiver reads the id here, where the signature covers it; the
        ``Upstash-Schedule-Id`` header QStash adds to every firing may only agree. The job type
        is for QStash's logs. The payload stays on the row, so editing it needs no call to QStash.
        """
        return {"schedule_id": self.schedule_id, "job_type": self.job_type}


@dataclass(frozen=True)
class RemoteSchedule:
    """A schedule as QStash holds it (any schedule of the account, not only this site's)."""

    schedule_id: str
    destination: str
    cron: str
    #: The body as JSON when it is JSON, else the raw text.
    body: Any
    retries: int
    paused: bool
    #: Where QStash reports a firing it gave up on: the receiver, for this site's schedules.
    failure_callback: str | None = None


class ScheduleNotFound(ScheduleError):
    """QStash has no schedule with this id."""


class BaseTransport:
    """Publishes jobs, cancels published ones, and keeps schedules."""

    def __init__(self, config: JobsConfig) -> None:
        self.config = config

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish ``messages``; return their message ids in the same order.

        Raise :class:`~django_qstash_jobs.exceptions.EnqueueError` if any could not be published.
        """
        raise NotImplementedError

    def cancel(self, message_id: str) -> None:
        """Cancel a published message that was not delivered yet; unknown ids are not an error."""
        raise NotImplementedError

    def forward(self, url: str, body: bytes, *, deduplication_id: str) -> None:
        """Deliver ``body`` to ``url`` through QStash (signed, retried): a failure notice
        passed on to a job's own ``failure_callback``. Raise ``EnqueueError`` on failure."""
        raise NotImplementedError

    # Schedules. Errors are ScheduleError, saying whether QStash refused or could not be reached.

    def upsert_schedule(self, schedule: OutgoingSchedule) -> None:
        """Create the schedule, or replace the one with the same id; it is left not paused."""
        raise NotImplementedError

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule; an unknown id is not an error."""
        raise NotImplementedError

    def pause_schedule(self, schedule_id: str) -> None:
        """Stop a schedule from firing; raise :class:`ScheduleNotFound` for an unknown id."""
        raise NotImplementedError

    def resume_schedule(self, schedule_id: str) -> None:
        """Let a paused schedule fire again; raise :class:`ScheduleNotFound` for an unknown id."""
        raise NotImplementedError

    def list_schedules(self) -> list[RemoteSchedule]:
        """Every schedule QStash holds for this account, including other sites' ones."""
        raise NotImplementedError
