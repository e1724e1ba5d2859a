"""Publishing through QStash with the official ``qstash`` SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from qstash import QStash
from qstash.errors import QStashError
from qstash.http import RetryConfig
from qstash.message import BatchJsonRequest

from django_qstash_jobs.exceptions import EnqueueError
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage

if TYPE_CHECKING:
    from django_qstash_jobs.conf import JobsConfig

#: Publishes carry a deduplication id, so repeating one after a network error cannot deliver a
#: job twice. The SDK's default (five retries over ~32 s) would stall a web request far too long.
PUBLISH_RETRY = RetryConfig(retries=2, backoff=lambda attempt: 100 * (attempt + 1))
#: QStash accepts large batches; chunks bound the size of one request and of one failure.
BATCH_SIZE = 500


class QStashTransport(BaseTransport):
    """Publishes to QStash (or a compatible server at ``QSTASH_JOBS["URL"]``)."""

    def __init__(self, config: JobsConfig) -> None:
        super().__init__(config)
        self.client = QStash(config.token or "", base_url=config.url, retry=PUBLISH_RETRY)
        # The SDK waits up to 600 s for an answer; a publish inside a request must fail fast.
        self.client.http._client.timeout = httpx.Timeout(
            config.publish_timeout, connect=min(5.0, config.publish_timeout)
        )

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        if not messages:
            return []
        if len(messages) == 1:
            return [self._publish_one(messages[0])]
        message_ids: list[str] = []
        for start in range(0, len(messages), BATCH_SIZE):
            message_ids.extend(self._publish_batch(messages[start : start + BATCH_SIZE]))
        return message_ids

    def cancel(self, message_id: str) -> None:
        try:
            self.client.message.cancel(message_id)
        except QStashError as exc:
            # Delivered or expired messages are gone from QStash: nothing left to cancel.
            if "status: 404" not in str(exc):
                raise EnqueueError(f"QStash refused to cancel message {message_id}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EnqueueError(f"QStash could not be reached at {self.config.url}: {exc}") from exc

    def _publish_one(self, message: OutgoingMessage) -> str:
        try:
            response = self.client.message.publish_json(
                url=self._destination, body=message.body(), **self._arguments(message)
            )
        except (QStashError, httpx.HTTPError) as exc:
            raise self._error(exc, [message]) from exc
        return response.message_id  # type: ignore[union-attr]

    def _publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        requests: list[BatchJsonRequest] = [
            BatchJsonRequest(url=self._destination, body=message.body(), **self._arguments(message))  # type: ignore[typeddict-item]
            for message in messages
        ]
        try:
            responses = self.client.message.batch_json(requests)
        except (QStashError, httpx.HTTPError) as exc:
            raise self._error(exc, messages) from exc
        return [response.message_id for response in responses]  # type: ignore[union-attr]

    @property
    def _destination(self) -> str:
        if not self.config.receiver_url:
            raise EnqueueError(
                "QSTASH_JOBS['RECEIVER_URL'] is not set: QStash needs the absolute URL of "
                "this site's receiver (the 'django_qstash_jobs:receive' URL)."
            )
        return self.config.receiver_url

    @staticmethod
    def _arguments(message: OutgoingMessage) -> dict[str, Any]:
        options = message.options
        arguments: dict[str, Any] = {"retries": message.max_retries}
        if options.delay_seconds:
            arguments["delay"] = options.delay_seconds
        if options.callback:
            arguments["callback"] = options.callback
        if options.failure_callback:
            arguments["failure_callback"] = options.failure_callback
        if options.headers:
            arguments["headers"] = options.headers
        if options.deduplication_id:
            arguments["deduplication_id"] = options.deduplication_id
        return arguments

    def _error(self, exc: Exception, messages: Sequence[OutgoingMessage]) -> EnqueueError:
        job_ids = [message.job_id for message in messages]
        if isinstance(exc, httpx.HTTPError):
            reason = (
                f"QStash could not be reached at {self.config.url} "
                f"({exc.__class__.__name__}: {exc})"
            )
        else:
            reason = f"QStash refused the publish ({exc})"
        return EnqueueError(
            f"{reason}. The job is recorded as pending and `manage.py republish_jobs` will "
            "publish it.",
            job_ids=job_ids,
        )
