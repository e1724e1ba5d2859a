"""Publishing and scheduling through QStash with the official ``qstash`` SDK."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from qstash import QStash
from qstash.errors import QStashError
from qstash.http import RetryConfig
from qstash.message import BatchJsonRequest
from qstash.schedule import Schedule

from django_qstash_jobs.exceptions import EnqueueError, PublishRefused, ScheduleError
from django_qstash_jobs.transports.base import (
    BaseTransport,
    OutgoingMessage,
    OutgoingSchedule,
    RemoteSchedule,
    ScheduleNotFound,
)

if TYPE_CHECKING:
    from django_qstash_jobs.conf import JobsConfig

#: Publishes carry a deduplication id, so repeating one after a network error cannot deliver a
#: job twice. The SDK's default (five retries over ~32 s) would stall a web request far too long.
PUBLISH_RETRY = RetryConfig(retries=2, backoff=lambda attempt: 100 * (attempt + 1))
T = TypeVar("T")

#: Retries of QStash's failure notice itself. A notice that finds the job still held by a
#: delivery is answered busy, with Retry-After set to what is left of the lease, and comes back
#: then: a holder that died is past its lease by the first retry.
NOTICE_RETRIES = 3

#: QStash accepts large batches; chunks bound the size of one request and of one failure.
BATCH_SIZE = 500

#: Answers refusing the message itself: sent again as is, it is refused again. (401 and 403 are
#: the token's, 429 a limit's, 5xx QStash's own trouble: those pass, so the rows wait.)
REFUSED_STATUSES = frozenset({400, 413, 422})


class QStashTransport(BaseTransport):
    """Publishes to and schedules on QStash (or a compatible server at ``QSTASH_JOBS["URL"]``)."""

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
            if not _is_not_found(exc):
                raise EnqueueError(f"QStash refused to cancel message {message_id}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EnqueueError(f"{self._unreachable(exc)}.") from exc

    def forward(self, url: str, body: bytes, *, deduplication_id: str) -> None:
        try:
            self.client.message.publish(
                url=url,
                body=body,
                content_type="application/json",
                deduplication_id=deduplication_id,
            )
        except (QStashError, httpx.HTTPError) as exc:
            raise EnqueueError(f"Forwarding a failure notice to {url} failed: {exc}") from exc

    def upsert_schedule(self, schedule: OutgoingSchedule) -> None:
        if not self.config.receiver_url:
            raise ScheduleError(
                "QSTASH_JOBS['RECEIVER_URL'] is not set: a schedule fires to this site's "
                "receiver, so QStash needs its absolute URL."
            )
        # Upstash-Schedule-Id makes this an upsert: the same id replaces the schedule.
        self._schedule_call(
            f"save schedule {schedule.schedule_id}",
            lambda: self.client.schedule.create_json(
                destination=self.config.receiver_url or "",
                cron=schedule.cron,
                body=schedule.body(),
                retries=schedule.max_retries,
                schedule_id=schedule.schedule_id,
                **self._failure_notice,
            ),
        )

    def delete_schedule(self, schedule_id: str) -> None:
        # An unknown id is already gone, which is what deleting it was for.
        with contextlib.suppress(ScheduleNotFound):
            self._schedule_call(
                f"delete schedule {schedule_id}", lambda: self.client.schedule.delete(schedule_id)
            )

    def pause_schedule(self, schedule_id: str) -> None:
        self._schedule_call(
            f"pause schedule {schedule_id}", lambda: self.client.schedule.pause(schedule_id)
        )

    def resume_schedule(self, schedule_id: str) -> None:
        self._schedule_call(
            f"resume schedule {schedule_id}", lambda: self.client.schedule.resume(schedule_id)
        )

    def list_schedules(self) -> list[RemoteSchedule]:
        schedules: list[Schedule] = self._schedule_call("list schedules", self.client.schedule.list)
        return [_remote(schedule) for schedule in schedules]

    def _schedule_call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except QStashError as exc:
            if _is_not_found(exc):
                raise ScheduleNotFound(f"QStash has no such schedule ({what}): {exc}") from exc
            raise ScheduleError(f"QStash refused to {what}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ScheduleError(f"{self._unreachable(exc)}, to {what}.") from exc

    def _publish_one(self, message: OutgoingMessage) -> str:
        response = self._send(message, message.options.deduplication_id)
        if response.deduplicated and not self._holds(response.message_id, message):
            response = self._send(message, message.job_id)
        return response.message_id

    def _holds(self, message_id: str, message: OutgoingMessage) -> bool:
        """Whether QStash's message ``message_id`` will deliver ``message``'s job.

        QStash remembers a deduplication id for minutes, across every site on the account and
        after a row is deleted. An idempotency key answered as a duplicate may be this job's own
        earlier publish (a republish after its message id was lost), or another site's job, or a
        deleted one's: then this job, new to the database, would never run.
        """
        if message.options.deduplication_id in (None, message.job_id):
            return True  # the job's own id: only this job publishes under it
        try:
            existing = self.client.message.get(message_id)
            body = json.loads(existing.body or "{}")
        except (QStashError, httpx.HTTPError, ValueError):
            return False  # gone (delivered, failed) or unreadable: not this job's to count on
        return isinstance(body, dict) and body.get("job_id") == message.job_id

    def _send(self, message: OutgoingMessage, deduplication_id: str | None) -> Any:
        arguments = self._arguments(message)
        if deduplication_id:
            arguments["deduplication_id"] = deduplication_id
        try:
            return self.client.message.publish_json(
                url=self._destination, body=message.body(), **arguments
            )
        except (UnicodeEncodeError, httpx.LocalProtocolError) as exc:
            # A header value HTTP cannot carry (enqueue refuses them; a row from elsewhere may
            # hold one): sent again, it fails again. Not "QStash could not be reached".
            raise PublishRefused(
                f"The message cannot be sent: a header value HTTP cannot carry ({exc}). The job "
                "is recorded as pending.",
                job_ids=[message.job_id],
            ) from exc
        except (QStashError, httpx.HTTPError) as exc:
            raise self._error(exc, [message]) from exc

    def _publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        requests: list[BatchJsonRequest] = [
            BatchJsonRequest(url=self._destination, body=message.body(), **self._arguments(message))  # type: ignore[typeddict-item]
            for message in messages
        ]
        try:
            responses = self.client.message.batch_json(requests)
        except (QStashError, httpx.HTTPError) as exc:
            raise self._error(exc, messages) from exc
        message_ids: list[str] = []
        # Our destination is a URL, never a URL group: each answer is one message's.
        answers: list[Any] = list(responses)
        for message, answer in zip(messages, answers, strict=True):
            if answer.deduplicated and not self._holds(answer.message_id, message):
                answer = self._send(message, message.job_id)
            message_ids.append(answer.message_id)
        return message_ids

    @property
    def _failure_notice(self) -> dict[str, Any]:
        """QStash tells the receiver when it gives up on a message (see failure_notices.py)."""
        return {
            "failure_callback": self._destination,
            # The SDK sends this as Upstash-Failure-Callback-Retries: the notice's own retries.
            "failure_callback_headers": {"Retries": str(NOTICE_RETRIES)},
        }

    @property
    def _destination(self) -> str:
        if not self.config.receiver_url:
            raise EnqueueError(
                "QSTASH_JOBS['RECEIVER_URL'] is not set: QStash needs the absolute URL of "
                "this site's receiver (the 'django_qstash_jobs:receive' URL)."
            )
        return self.config.receiver_url

    def _arguments(self, message: OutgoingMessage) -> dict[str, Any]:
        options = message.options
        arguments: dict[str, Any] = {"retries": message.max_retries}
        if options.delay_seconds:
            arguments["delay"] = options.delay_seconds
        if options.callback:
            arguments["callback"] = options.callback
        # Always the receiver, which records the failure and forwards the notice to the job's
        # own failure_callback: QStash calls one URL only.
        arguments.update(self._failure_notice)
        if options.headers:
            arguments["headers"] = options.headers
        if options.deduplication_id:
            arguments["deduplication_id"] = options.deduplication_id
        return arguments

    def _unreachable(self, exc: Exception) -> str:
        return f"QStash could not be reached at {self.config.url} ({exc.__class__.__name__}: {exc})"

    def _error(self, exc: Exception, messages: Sequence[OutgoingMessage]) -> EnqueueError:
        job_ids = [message.job_id for message in messages]
        if isinstance(exc, QStashError) and _status(exc) in REFUSED_STATUSES:
            return PublishRefused(
                f"QStash refused the publish ({exc}). The job is recorded as pending; once what "
                "QStash names is fixed, `manage.py republish_jobs` publishes it.",
                job_ids=job_ids,
            )
        if isinstance(exc, httpx.HTTPError):
            reason = self._unreachable(exc)
        else:
            reason = f"QStash refused the publish ({exc})"
        return EnqueueError(
            f"{reason}. The job is recorded as pending and `manage.py republish_jobs` will "
            "publish it.",
            job_ids=job_ids,
        )


def _remote(schedule: Schedule) -> RemoteSchedule:
    body: Any = schedule.body
    # Not JSON means not ours: kept as text, it never matches the body we would send.
    if body is not None:
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    return RemoteSchedule(
        schedule_id=schedule.schedule_id,
        destination=schedule.destination,
        cron=schedule.cron,
        body=body,
        retries=schedule.retries,
        paused=schedule.paused,
        failure_callback=schedule.failure_callback,
    )


def _is_not_found(exc: QStashError) -> bool:
    return _status(exc) == 404


def _status(exc: QStashError) -> int | None:
    # The SDK reports the HTTP status only in its message ("... with status: 400, body: ...").
    found = re.search(r"status: (\d{3})\b", str(exc))
    return int(found.group(1)) if found else None
