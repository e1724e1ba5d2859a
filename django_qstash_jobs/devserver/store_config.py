"""SQL for schedules, queues, URL groups and server metadata."""

# Queries are assembled from constant column lists and Where conditions; every value is a
# bound parameter.

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .options import PublishOptions
from .records import QueueRecord, ScheduleRecord, TopicRecord

_SCHEDULE_COLUMNS = (
    "id, destination, cron, options, body, created_ms, updated_ms, paused, queue, caller_ip,"
    " last_ms, next_ms, last_states, error"
)

_SELECT_SCHEDULES = f"SELECT {_SCHEDULE_COLUMNS} FROM schedules"  # noqa: S608
_PUT_SCHEDULE = f"INSERT OR REPLACE INTO schedules ({_SCHEDULE_COLUMNS}) VALUES "  # noqa: S608
_PUT_SCHEDULE += "(" + ",".join("?" * 14) + ")"


def put_schedule(conn: sqlite3.Connection, rec: ScheduleRecord) -> None:
    """Insert or overwrite a schedule."""
    conn.execute(
        _PUT_SCHEDULE,
        (
            rec.id,
            rec.destination,
            rec.cron,
            rec.options.to_json(),
            rec.body,
            rec.created_ms,
            rec.updated_ms,
            int(rec.paused),
            rec.queue,
            rec.caller_ip,
            rec.last_ms,
            rec.next_ms,
            json.dumps(rec.last_states),
            rec.error,
        ),
    )


def set_last_state(conn: sqlite3.Connection, schedule_id: str, message_id: str, state: str) -> None:
    """Record how the schedule's latest firing ``message_id`` ended, if it is still the latest.

    Only that column is read and written: the rest of the row may be large (its body).
    """
    row = conn.execute("SELECT last_states FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
    if row is None:
        return
    states = json.loads(row[0])
    if message_id in states:
        states[message_id] = state
        conn.execute(
            "UPDATE schedules SET last_states = ? WHERE id = ?", (json.dumps(states), schedule_id)
        )


def _schedule(row: tuple[Any, ...]) -> ScheduleRecord:
    return ScheduleRecord(
        id=row[0],
        destination=row[1],
        cron=row[2],
        options=PublishOptions.from_json(row[3]),
        body=bytes(row[4]),
        created_ms=row[5],
        updated_ms=row[6],
        paused=bool(row[7]),
        queue=row[8],
        caller_ip=row[9],
        last_ms=row[10],
        next_ms=row[11],
        last_states=json.loads(row[12]),
        error=row[13],
    )


def get_schedule(conn: sqlite3.Connection, schedule_id: str) -> ScheduleRecord | None:
    """Return one schedule."""
    row = conn.execute(_SELECT_SCHEDULES + " WHERE id = ?", (schedule_id,)).fetchone()
    return _schedule(row) if row else None


def list_schedules(conn: sqlite3.Connection) -> list[ScheduleRecord]:
    """Return every schedule, oldest first."""
    rows = conn.execute(_SELECT_SCHEDULES + " ORDER BY created_ms, id")
    return [_schedule(row) for row in rows]


def delete_schedule(conn: sqlite3.Connection, schedule_id: str) -> bool:
    """Delete a schedule; return whether it existed."""
    return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0


def put_queue(conn: sqlite3.Connection, rec: QueueRecord) -> None:
    """Insert or update a queue."""
    conn.execute(
        "INSERT OR REPLACE INTO queues (name, parallelism, paused, created_ms, updated_ms)"
        " VALUES (?,?,?,?,?)",
        (rec.name, rec.parallelism, int(rec.paused), rec.created_ms, rec.updated_ms),
    )


def _queue(row: tuple[Any, ...]) -> QueueRecord:
    return QueueRecord(
        name=row[0],
        parallelism=row[1],
        paused=bool(row[2]),
        created_ms=row[3],
        updated_ms=row[4],
    )


_SELECT_QUEUES = "SELECT name, parallelism, paused, created_ms, updated_ms FROM queues"
_SELECT_TOPICS = "SELECT name, created_ms, updated_ms, endpoints FROM topics"


def get_queue(conn: sqlite3.Connection, name: str) -> QueueRecord | None:
    """Return one queue."""
    row = conn.execute(_SELECT_QUEUES + " WHERE name = ?", (name,)).fetchone()
    return _queue(row) if row else None


def list_queues(conn: sqlite3.Connection) -> list[QueueRecord]:
    """Return every queue by name."""
    return [_queue(row) for row in conn.execute(_SELECT_QUEUES + " ORDER BY name")]


def delete_queue(conn: sqlite3.Connection, name: str) -> bool:
    """Delete a queue; return whether it existed."""
    return conn.execute("DELETE FROM queues WHERE name = ?", (name,)).rowcount > 0


def put_topic(conn: sqlite3.Connection, rec: TopicRecord) -> None:
    """Insert or update a URL group."""
    conn.execute(
        "INSERT OR REPLACE INTO topics (name, created_ms, updated_ms, endpoints) VALUES (?,?,?,?)",
        (rec.name, rec.created_ms, rec.updated_ms, json.dumps(rec.endpoints)),
    )


def get_topic(conn: sqlite3.Connection, name: str) -> TopicRecord | None:
    """Return one URL group."""
    row = conn.execute(_SELECT_TOPICS + " WHERE name = ?", (name,)).fetchone()
    return _topic(row) if row else None


def list_topics(conn: sqlite3.Connection) -> list[TopicRecord]:
    """Return every URL group by name."""
    return [_topic(row) for row in conn.execute(_SELECT_TOPICS + " ORDER BY name")]


def _topic(row: tuple[Any, ...]) -> TopicRecord:
    return TopicRecord(row[0], row[1], row[2], json.loads(row[3]))


def delete_topic(conn: sqlite3.Connection, name: str) -> bool:
    """Delete a URL group; return whether it existed."""
    return conn.execute("DELETE FROM topics WHERE name = ?", (name,)).rowcount > 0


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """Return a metadata value."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Store a metadata value."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, value))
