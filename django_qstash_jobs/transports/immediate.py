"""Running jobs in-process, synchronously, through the receiver's own execution code.

For unit tests and local scripts. Retries happen at once, as if QStash redelivered with no
backoff; delays are ignored.

Schedules are kept in an in-memory store shared by the process (a transport is rebuilt each
time ``QSTASH_JOBS`` changes, so the store cannot live on the instance). Nothing fires on its
own: :meth:`ImmediateTransport.fire_schedule` delivers one firing the way QStash would, so tests
can follow a schedule from ``job_dispatcher.schedule`` to its recorded job.
:func:`clear_schedules` empties the store between tests.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace

from django_qstash_jobs.exceptions import ScheduleError
from django_qstash_jobs.transports.base import (
    BaseTransport,
    OutgoingMessage,
    OutgoingSchedule,
    RemoteSchedule,
    ScheduleNotFound,
)

_schedules: dict[str, RemoteSchedule] = {}
_lock = threading.Lock()


def clear_schedules() -> None:
    """Forget every schedule of the in-memory store."""
    with _lock:
        _schedules.clear()


class ImmediateTransport(BaseTransport):
    """Executes each job as soon as it is published."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        message_ids = []
        for message in messages:
            message_id = f"msg_immediate_{uuid.uuid4().hex}"
            message_ids.append(message_id)
            self._deliver(message.job_id, None, message_id, message.max_retries)
        return message_ids

    def cancel(self, message_id: str) -> None:
        """Nothing to cancel: an immediate job has already run."""

    def forward(self, url: str, body: bytes, *, deduplication_id: str) -> None:
        """Nothing to forward: without QStash, no failure notice ever comes."""

    def upsert_schedule(self, schedule: OutgoingSchedule) -> None:
        with _lock:
            _schedules[schedule.schedule_id] = RemoteSchedule(
                schedule_id=schedule.schedule_id,
                destination=self.config.receiver_url or "",
                cron=schedule.cron,
                body=schedule.body(),
                retries=schedule.max_retries,
                paused=False,
                failure_callback=self.config.receiver_url,
            )

    def delete_schedule(self, schedule_id: str) -> None:
        with _lock:
            _schedules.pop(schedule_id, None)

    def pause_schedule(self, schedule_id: str) -> None:
        self._set_paused(schedule_id, paused=True)

    def resume_schedule(self, schedule_id: str) -> None:
        self._set_paused(schedule_id, paused=False)

    def list_schedules(self) -> list[RemoteSchedule]:
        with _lock:
            return list(_schedules.values())

    def fire_schedule(self, schedule_id: str, *, message_id: str | None = None) -> str:
        """Deliver one firing of a stored schedule now (paused or not); return its message id.

        Pass the ``message_id`` of an earlier firing to deliver that firing again, as QStash
        does when it retries one.
        """
        with _lock:
            schedule = _schedules.get(schedule_id)
        if schedule is None:
            raise ScheduleError(f"No schedule {schedule_id!r} in the in-memory store.")
        message_id = message_id or f"msg_immediate_{uuid.uuid4().hex}"
        self._deliver(None, schedule_id, message_id, schedule.retries)
        return message_id

    @staticmethod
    def _deliver(
        job_id: str | None, schedule_id: str | None, message_id: str, max_retries: int
    ) -> None:
        from django_qstash_jobs.execution import Delivery, Outcome, execute

        for retried in range(max_retries + 1):
            delivery = Delivery(
                job_id=job_id, message_id=message_id, retried=retried, schedule_id=schedule_id
            )
            if execute(delivery) is not Outcome.RETRY:
                break

    @staticmethod
    def _set_paused(schedule_id: str, *, paused: bool) -> None:
        with _lock:
            schedule = _schedules.get(schedule_id)
            if schedule is None:
                raise ScheduleNotFound(f"No schedule {schedule_id!r} in the in-memory store.")
            _schedules[schedule_id] = replace(schedule, paused=paused)
