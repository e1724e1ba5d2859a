"""The context a handler receives: who it runs for, which attempt, and progress reporting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from django_qstash_jobs import storable

if TYPE_CHECKING:
    from django_qstash_jobs.models import JobExecution


@dataclass
class JobContext:
    """Passed to every handler as its second argument."""

    job_id: str
    job_type: str
    #: 1 on the first attempt, 2 on the first retry, ...
    attempt: int
    max_retries: int
    #: ``user_id``, ``organization_id`` and ``idempotency_key``, as given to ``enqueue``.
    metadata: dict[str, Any]
    execution: JobExecution
    lease_seconds: int = 300

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now fails the job instead of retrying it."""
        return self.attempt > self.max_retries

    def set_progress(self, percent: int | float, message: str = "") -> None:
        """Record progress (0-100) on the row, for the admin and the status API.

        It also renews the job's lease, so a long job that reports progress is not taken over.
        A delivery whose lease already ran out, and whose job another delivery took over,
        changes nothing: the row belongs to the new holder.
        """
        from django_qstash_jobs import statements

        percent = _percent(percent, self.execution.progress)
        # A file name from os.listdir() may hold a lone surrogate, which no text column takes.
        message = storable.text(str(message))[:255]
        now = timezone.now()
        statements.update_if_claimed(
            self.execution,
            progress=percent,
            progress_message=message,
            lease_expires_at=now + timedelta(seconds=self.lease_seconds),
            updated_at=now,
        )
        self.execution.progress = percent
        self.execution.progress_message = message


def _percent(value: int | float, current: int) -> int:
    """``value`` as a whole percentage from 0 to 100; a NaN keeps ``current``.

    A progress report must never fail the job: ``int()`` raises on a NaN or an infinity.
    """
    if isinstance(value, float):
        if math.isnan(value):
            return current
        value = max(0.0, min(100.0, value))
    return max(0, min(100, int(value)))
