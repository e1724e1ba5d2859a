"""The cron thread: fires due schedules, and now and then prunes old events and dedup ids."""

from __future__ import annotations

import copy
import heapq
import logging
import threading

from .cron import parse_cron
from .defaults import MAX_EVENTS_KEPT
from .destinations import Destination
from .dispatcher import now_ms
from .engine import Engine
from .errors import ApiError, not_found
from .store_config import get_schedule, list_schedules, put_schedule
from .store_messages import prune

log = logging.getLogger("django_qstash_jobs.devserver")

_HOUSEKEEPING_MS = 30_000


def schedule_destination(text: str) -> Destination:
    """A stored schedule destination: a URL or a URL group name."""
    if text.lower().startswith(("http://", "https://")):
        return Destination(url=text)
    return Destination(group=text)


class Scheduler:
    """Keeps the next firing of every active schedule in a heap and fires them on time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._heap: list[tuple[int, str, int]] = []
        self._versions: dict[str, int] = {}
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._next_housekeeping = 0

    def start(self) -> None:
        """Load every schedule and start the thread."""
        with self.engine.db.read() as conn:
            schedules = list_schedules(conn)
        for schedule in schedules:
            try:
                self.refresh(schedule.id)
            except ValueError as exc:
                # Stored by an older version that let it through: the others still run.
                log.error("Schedule %s is not scheduled: %s", schedule.id, exc)
        self._thread = threading.Thread(target=self._run, name="qstash-dev-cron", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def refresh(self, schedule_id: str, at_ms: int | None = None) -> None:
        """Recompute a schedule's next firing after it was created, changed or deleted.

        ``at_ms`` overrides the cron's next time once (tests use it to avoid waiting).
        """
        now = now_ms()
        with self.engine.db.transaction() as conn:
            schedule = get_schedule(conn, schedule_id)
            if schedule is not None:
                cron_next = parse_cron(schedule.cron).next_after_ms(now)
                schedule.next_ms = cron_next if at_ms is None else at_ms
                put_schedule(conn, schedule)
        with self._cond:
            version = self._versions.get(schedule_id, 0) + 1
            self._versions[schedule_id] = version
            if schedule is not None and schedule.next_ms is not None:
                heapq.heappush(self._heap, (schedule.next_ms, schedule_id, version))
                self._cond.notify()

    def fire(self, schedule_id: str, manual: bool) -> list[str]:
        """Publish a schedule's message now; return the new message ids.

        A timed firing of a paused schedule does nothing; a manual one always publishes.
        """
        now = now_ms()
        with self.engine.db.transaction() as conn:
            schedule = get_schedule(conn, schedule_id)
            if schedule is None:
                raise not_found(f"schedule {schedule_id} not found")
            if not manual:
                schedule.next_ms = parse_cron(schedule.cron).next_after_ms(now)
            if schedule.paused and not manual:
                put_schedule(conn, schedule)
                return []
            opts = copy.deepcopy(schedule.options)
            opts.not_before = None
            opts.deduplication_id = None
            opts.content_based_deduplication = False
            try:
                item = self.engine.publish_in(
                    conn,
                    schedule_destination(schedule.destination),
                    schedule.body,
                    opts,
                    queue=schedule.queue,
                    caller_ip=schedule.caller_ip,
                    schedule_id=schedule.id,
                )
            except ApiError as exc:
                schedule.error = exc.message
                put_schedule(conn, schedule)
                if manual:
                    raise
                return []
            schedule.error = None
            schedule.last_ms = now
            schedule.last_states = {rec.id: "IN_PROGRESS" for rec in item.records}
            put_schedule(conn, schedule)
        self.engine.commit([item])
        return [rec.id for rec in item.records]

    def _run(self) -> None:
        while True:
            due: list[tuple[str, int]] = []
            with self._cond:
                if self._stopped:
                    return
                now = now_ms()
                while self._heap and self._heap[0][0] <= now:
                    _, schedule_id, version = heapq.heappop(self._heap)
                    if self._versions.get(schedule_id) == version:
                        due.append((schedule_id, version))
                if not due:
                    wake = self._next_housekeeping
                    if self._heap:
                        wake = min(wake, self._heap[0][0])
                    if wake > now:
                        self._cond.wait((wake - now) / 1000 + 0.001)
                        continue
            for schedule_id, version in due:
                self._fire_timed(schedule_id, version)
            self._housekeeping()

    def _fire_timed(self, schedule_id: str, version: int) -> None:
        try:
            self.fire(schedule_id, manual=False)
        except ApiError:
            return  # deleted meanwhile
        except Exception:
            log.exception("schedule %s failed to fire", schedule_id)
        with self.engine.db.read() as conn:
            schedule = get_schedule(conn, schedule_id)
        if schedule is None:
            return
        now = now_ms()
        next_ms = schedule.next_ms
        if next_ms is None or next_ms <= now:
            # The firing failed and rolled back its own next time: go on from the cron, or it
            # would fire again at once, in a loop.
            next_ms = parse_cron(schedule.cron).next_after_ms(now)
        with self._cond:
            # A change while it fired (an upsert, a pause) queued the next firing itself.
            if self._versions.get(schedule_id) == version:
                heapq.heappush(self._heap, (next_ms, schedule_id, version))

    def _housekeeping(self) -> None:
        now = now_ms()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + _HOUSEKEEPING_MS
        try:
            with self.engine.db.transaction() as conn:
                prune(conn, now, MAX_EVENTS_KEPT)
        except Exception:
            log.exception("housekeeping failed")
