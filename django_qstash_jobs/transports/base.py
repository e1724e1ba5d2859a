"""The transport interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        """What QStash delivers back: the row holds everything else, so the body stays small."""
        return {"job_id": self.job_id, "job_type": self.job_type}


class BaseTransport:
    """Publishes jobs and cancels published ones."""

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
