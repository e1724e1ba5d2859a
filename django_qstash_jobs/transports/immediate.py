"""Running jobs in-process, synchronously, through the receiver's own execution code.

For unit tests and local scripts. Retries happen at once, as if QStash redelivered with no
backoff; delays are ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage


class ImmediateTransport(BaseTransport):
    """Executes each job as soon as it is published."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        from django_qstash_jobs.execution import Delivery, Outcome, execute

        message_ids = []
        for message in messages:
            message_id = f"msg_immediate_{uuid.uuid4().hex}"
            message_ids.append(message_id)
            for retried in range(message.max_retries + 1):
                delivery = Delivery(job_id=message.job_id, message_id=message_id, retried=retried)
                if execute(delivery) is not Outcome.RETRY:
                    break
        return message_ids

    def cancel(self, message_id: str) -> None:
        """Nothing to cancel: an immediate job has already run."""
