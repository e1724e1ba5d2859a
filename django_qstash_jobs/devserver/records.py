"""Plain records the store reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .options import PublishOptions


@dataclass
class MessageRecord:
    """A message waiting for delivery (or being delivered)."""

    id: str
    url: str
    body: bytes
    options: PublishOptions
    created_ms: int
    not_before_ms: int
    due_ms: int
    retried: int = 0
    topic: str | None = None
    endpoint: str | None = None
    queue: str | None = None
    schedule_id: str | None = None
    caller_ip: str | None = None
    seq: int = 0

    @property
    def label(self) -> str | None:
        """The first label, the one the API filters on."""
        return self.options.labels[0] if self.options.labels else None

    @property
    def flow_key(self) -> str | None:
        """The flow-control key, if any."""
        flow = self.options.flow_control
        return flow.key if flow else None


@dataclass
class DlqRecord:
    """A message that failed for good, with the last response it got."""

    dlq_id: str
    message: MessageRecord
    failed_ms: int
    response_status: int
    response_headers: dict[str, list[str]]
    response_body: bytes
    seq: int = 0


@dataclass
class ScheduleRecord:
    """A cron schedule and the message template it produces."""

    id: str
    destination: str
    cron: str
    options: PublishOptions
    body: bytes
    created_ms: int
    updated_ms: int
    paused: bool = False
    queue: str | None = None
    caller_ip: str | None = None
    last_ms: int | None = None
    next_ms: int | None = None
    last_states: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class QueueRecord:
    """A named FIFO queue."""

    name: str
    parallelism: int
    paused: bool
    created_ms: int
    updated_ms: int


@dataclass
class TopicRecord:
    """A URL group: a name and its endpoints (``{"url": ..., "name": ...}``)."""

    name: str
    created_ms: int
    updated_ms: int
    endpoints: list[dict[str, Any]] = field(default_factory=list)
