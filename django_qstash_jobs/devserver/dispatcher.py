"""In-memory delivery order: a due-time heap, FIFO queues and flow-control gates.

The database is the durable copy; this is rebuilt from it at start-up. Idle workers wait on
conditions: one of them (the leader) sleeps until the earliest due time, the others until
there is something for them, so nothing polls and a new due message wakes exactly one.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .options import FlowControl

QUEUED = "queued"  # waiting for a slot in its queue
SCHEDULED = "scheduled"  # in the heap until its due time
FLOW_WAIT = "flow-wait"  # due, waiting for a flow-control slot
RUNNING = "running"


def now_ms() -> int:
    """Wall-clock time in Unix milliseconds."""
    return int(time.time() * 1000)


@dataclass(eq=False)
class Job:
    """The dispatcher's view of one pending message."""

    id: str
    seq: int
    due_ms: int
    queue: str | None = None
    flow: str | None = None
    state: str = SCHEDULED
    version: int = 0
    cancelled: bool = False


@dataclass
class QueueGate:
    """A queue: FIFO admission of at most ``parallelism`` messages at a time."""

    parallelism: int = 1
    paused: bool = False
    waiting: deque[Job] = field(default_factory=deque)
    active: set[str] = field(default_factory=set)


@dataclass
class FlowGate:
    """A flow-control key: calls in flight and calls per period."""

    parallelism: int | None = None
    rate: int | None = None
    period_ms: int = 1000
    paused: bool = False
    pinned_parallelism: bool = False
    pinned_rate: bool = False
    running: int = 0
    window_start: int = 0
    window_count: int = 0
    waiting: deque[Job] = field(default_factory=deque)

    def free_slots(self) -> int:
        """How many waiting jobs could start now (rate aside)."""
        if self.paused:
            return 0
        if self.parallelism is None:
            return len(self.waiting)
        return max(0, self.parallelism - self.running)


class Dispatcher:
    """Hands due messages to worker threads in order, honouring queues and flow control."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._clock = threading.Condition(self._lock)
        self._heap: list[tuple[int, int, int, str]] = []
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, QueueGate] = {}
        self._flows: dict[str, FlowGate] = {}
        self._leader = False
        self._followers = 0
        self._running = 0
        self._stopped = False

    # -- adding and finishing -------------------------------------------------------------

    def add(self, job: Job, flow: FlowControl | None = None) -> None:
        """Start tracking a message (new, or loaded at start-up)."""
        with self._lock:
            self._jobs[job.id] = job
            if flow is not None:
                self._configure_flow(flow)
            if job.queue is not None:
                gate = self._queues.setdefault(job.queue, QueueGate())
                job.state = QUEUED
                gate.waiting.append(job)
                self._pump(gate)
            else:
                self._schedule(job)

    def finish(self, job: Job, retry_due_ms: int | None) -> None:
        """Report the end of an attempt: retry at ``retry_due_ms`` or forget the message."""
        with self._lock:
            self._running -= 1
            if job.flow is not None:
                gate = self._flows.get(job.flow)
                if gate is not None:
                    gate.running -= 1
                    self._release_flow(gate)
            if retry_due_ms is not None and not job.cancelled and job.id in self._jobs:
                job.due_ms = retry_due_ms
                self._schedule(job)
            else:
                self._drop(job)

    def cancel(self, message_id: str) -> None:
        """Forget a message; one being delivered right now finishes its attempt first."""
        with self._lock:
            job = self._jobs.get(message_id)
            if job is None:
                return
            if job.state == RUNNING:
                job.cancelled = True
                return
            if job.state == QUEUED and job.queue in self._queues:
                self._queues[job.queue].waiting.remove(job)
            elif job.state == FLOW_WAIT and job.flow in self._flows:
                self._flows[job.flow].waiting.remove(job)
            self._drop(job)

    def take(self) -> Job | None:
        """Block until a message is due and return it; None once stopped."""
        with self._lock:
            while not self._stopped:
                job = self._pop_ready()
                if job is not None:
                    self._running += 1
                    if self._heap and (self._heap[0][0] <= now_ms() or not self._leader):
                        self._wake_follower()
                    return job
                if self._leader or not self._heap:
                    self._followers += 1
                    self._work.wait()
                else:
                    self._leader = True
                    timeout = max(0.0, (self._heap[0][0] - now_ms()) / 1000) + 0.001
                    # Longer waits raise OverflowError; a new earlier message wakes it anyway.
                    self._clock.wait(min(timeout, threading.TIMEOUT_MAX))
                    self._leader = False
            return None

    def stop(self) -> None:
        """Wake every worker so that ``take`` returns None."""
        with self._lock:
            self._stopped = True
            self._followers = 0
            self._work.notify_all()
            self._clock.notify_all()

    def busy(self) -> bool:
        """Whether a message is being delivered or is due now."""
        with self._lock:
            if self._running:
                return True
            now = now_ms()
            return any(
                self._jobs.get(entry[3]) is not None and entry[0] <= now for entry in self._heap
            )

    # -- queues ---------------------------------------------------------------------------

    def configure_queue(self, name: str, parallelism: int, paused: bool) -> None:
        """Create or update a queue gate and admit what now fits."""
        with self._lock:
            gate = self._queues.setdefault(name, QueueGate())
            gate.parallelism = parallelism
            gate.paused = paused
            self._pump(gate)

    def forget_queue(self, name: str) -> None:
        """Drop a deleted queue's gate (its messages were cancelled before).

        A gate with a delivery still in flight stays until it ends, but with a new queue's
        settings: the queue is recreated with those if it is used again meanwhile, and a pause
        of the deleted one must not hold its messages.
        """
        with self._lock:
            gate = self._queues.get(name)
            if gate is None:
                return
            if not gate.waiting and not gate.active:
                del self._queues[name]
                return
            fresh = QueueGate()
            gate.parallelism, gate.paused = fresh.parallelism, fresh.paused
            self._pump(gate)

    # -- flow control ---------------------------------------------------------------------

    def flow_info(self, key: str | None = None) -> list[dict[str, Any]]:
        """Describe one flow-control key (or all of them) for the API."""
        with self._lock:
            keys = [key] if key is not None else sorted(self._flows)
            out = []
            for name in keys:
                gate = self._flows.get(name)
                if gate is None:
                    continue
                info: dict[str, Any] = {
                    "flowControlKey": name,
                    "waitListSize": len(gate.waiting),
                    "parallelismMax": gate.parallelism or 0,
                    "parallelismCount": gate.running,
                    "rateMax": gate.rate or 0,
                    "rateCount": gate.window_count,
                    "ratePeriod": gate.period_ms // 1000,
                    "ratePeriodStart": gate.window_start,
                    "isPaused": gate.paused,
                    "isPinnedParallelism": gate.pinned_parallelism,
                    "isPinnedRate": gate.pinned_rate,
                }
                out.append(info)
            return out

    def update_flow(self, key: str, **changes: Any) -> bool:
        """Change a flow gate's settings (pause, pin, reset); return whether it exists."""
        with self._lock:
            gate = self._flows.get(key)
            if gate is None:
                return False
            for name, value in changes.items():
                setattr(gate, name, value)
            self._release_flow(gate)
            return True

    def in_flight(self) -> int:
        """How many messages are being delivered right now."""
        with self._lock:
            return self._running

    # -- internals (lock held) ------------------------------------------------------------

    def _schedule(self, job: Job) -> None:
        job.state = SCHEDULED
        job.version += 1
        entry = (job.due_ms, job.seq, job.version, job.id)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            if self._leader:
                self._clock.notify()
            else:
                self._wake_follower()
        elif job.due_ms <= now_ms():
            self._wake_follower()

    def _wake_follower(self) -> None:
        if self._followers:
            self._followers -= 1
            self._work.notify()

    def _drop(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        job.state = "gone"
        if job.queue is not None:
            gate = self._queues.get(job.queue)
            if gate is not None:
                gate.active.discard(job.id)
                self._pump(gate)

    def _pump(self, gate: QueueGate) -> None:
        while not gate.paused and len(gate.active) < gate.parallelism and gate.waiting:
            job = gate.waiting.popleft()
            gate.active.add(job.id)
            self._schedule(job)

    def _configure_flow(self, flow: FlowControl) -> None:
        gate = self._flows.setdefault(flow.key, FlowGate())
        if not gate.pinned_parallelism:
            gate.parallelism = flow.parallelism
        if not gate.pinned_rate:
            gate.rate = flow.rate
            gate.period_ms = max(1, flow.period) * 1000

    def _release_flow(self, gate: FlowGate) -> None:
        for _ in range(min(gate.free_slots(), len(gate.waiting))):
            self._schedule(gate.waiting.popleft())

    def _pop_ready(self) -> Job | None:
        now = now_ms()
        while self._heap and self._heap[0][0] <= now:
            _, _, version, message_id = heapq.heappop(self._heap)
            job = self._jobs.get(message_id)
            if job is None or job.version != version or job.state != SCHEDULED:
                continue
            if job.flow is not None and not self._flow_admits(job, now):
                continue
            job.state = RUNNING
            return job
        return None

    def _flow_admits(self, job: Job, now: int) -> bool:
        gate = self._flows.setdefault(str(job.flow), FlowGate())
        if gate.paused or (gate.parallelism is not None and gate.running >= gate.parallelism):
            job.state = FLOW_WAIT
            gate.waiting.append(job)
            return False
        if gate.rate is not None:
            if now >= gate.window_start + gate.period_ms:
                gate.window_start = now
                gate.window_count = 0
            if gate.window_count >= gate.rate:
                job.due_ms = gate.window_start + gate.period_ms
                self._schedule(job)
                return False
            gate.window_count += 1
        gate.running += 1
        return True
