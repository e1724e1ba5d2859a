"""SQL for pending messages, deduplication ids and the event log."""

# Queries are assembled from constant column lists and Where conditions; every value is a
# bound parameter.

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .db import Where
from .options import PublishOptions
from .records import MessageRecord

_MESSAGE_COLUMNS = (
    "seq, id, url, topic, endpoint, queue, schedule_id, caller_ip, created_ms, not_before_ms,"
    " due_ms, retried, options, body"
)

_SELECT = f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608
_SELECT_IDS = "SELECT id FROM messages"
_SELECT_EVENTS = (
    "SELECT id, time_ms, message_id, state, url, topic, queue, schedule_id, label, data FROM events"
)


def insert_message(conn: sqlite3.Connection, rec: MessageRecord) -> None:
    """Insert a message and set its sequence number (its FIFO position)."""
    cur = conn.execute(
        "INSERT INTO messages (id, url, topic, endpoint, queue, schedule_id, caller_ip, label,"
        " flow_key, created_ms, not_before_ms, due_ms, retried, options, body)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            rec.id,
            rec.url,
            rec.topic,
            rec.endpoint,
            rec.queue,
            rec.schedule_id,
            rec.caller_ip,
            rec.label,
            rec.flow_key,
            rec.created_ms,
            rec.not_before_ms,
            rec.due_ms,
            rec.retried,
            rec.options.to_json(),
            rec.body,
        ),
    )
    rec.seq = int(cur.lastrowid or 0)


def _message(row: tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(
        seq=row[0],
        id=row[1],
        url=row[2],
        topic=row[3],
        endpoint=row[4],
        queue=row[5],
        schedule_id=row[6],
        caller_ip=row[7],
        created_ms=row[8],
        not_before_ms=row[9],
        due_ms=row[10],
        retried=row[11],
        options=PublishOptions.from_json(row[12]),
        body=bytes(row[13]),
    )


def get_message(conn: sqlite3.Connection, message_id: str) -> MessageRecord | None:
    """Return a pending message, or None once delivered, failed or cancelled."""
    row = conn.execute(_SELECT + " WHERE id = ?", (message_id,)).fetchone()
    return _message(row) if row else None


def all_messages(conn: sqlite3.Connection) -> list[MessageRecord]:
    """Return every pending message in FIFO order (used once, at start-up)."""
    rows = conn.execute(_SELECT + " ORDER BY seq").fetchall()
    return [_message(row) for row in rows]


def delete_message(conn: sqlite3.Connection, message_id: str) -> bool:
    """Delete a message; return whether it was still there."""
    return conn.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount > 0


def set_retry(conn: sqlite3.Connection, message_id: str, retried: int, due_ms: int) -> bool:
    """Record a failed attempt and when to try again; return whether the message exists."""
    cur = conn.execute(
        "UPDATE messages SET retried = ?, due_ms = ? WHERE id = ?", (retried, due_ms, message_id)
    )
    return cur.rowcount > 0


def find_messages(conn: sqlite3.Connection, where: Where, limit: int | None = None) -> list[str]:
    """Return the ids of pending messages matching ``where``."""
    sql = _SELECT_IDS + where.sql() + " ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [row[0] for row in conn.execute(sql, where.args)]


def queue_lag(conn: sqlite3.Connection, queue: str) -> int:
    """Return how many messages of ``queue`` are not delivered yet."""
    row = conn.execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,)).fetchone()
    return int(row[0])


def get_dedup(conn: sqlite3.Connection, key: str, now_ms: int) -> Any | None:
    """Return the stored publish response for a live deduplication key."""
    row = conn.execute(
        "SELECT response FROM dedup WHERE key = ? AND expires_ms > ?", (key, now_ms)
    ).fetchone()
    return json.loads(row[0]) if row else None


def put_dedup(conn: sqlite3.Connection, key: str, response: Any, expires_ms: int) -> None:
    """Remember a publish response under a deduplication key until ``expires_ms``."""
    conn.execute(
        "INSERT OR REPLACE INTO dedup (key, response, expires_ms) VALUES (?,?,?)",
        (key, json.dumps(response), expires_ms),
    )


def prune(conn: sqlite3.Connection, now_ms: int, max_events: int) -> None:
    """Forget expired deduplication keys and the oldest events beyond ``max_events``."""
    conn.execute("DELETE FROM dedup WHERE expires_ms <= ?", (now_ms,))
    conn.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (max_events,))


def add_event(
    conn: sqlite3.Connection, time_ms: int, state: str, rec: MessageRecord, data: dict[str, Any]
) -> None:
    """Append a log event for ``rec``; ``data`` holds the event's other JSON fields."""
    conn.execute(
        "INSERT INTO events (time_ms, message_id, state, url, topic, queue, schedule_id, label,"
        " data) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            time_ms,
            rec.id,
            state,
            rec.url,
            rec.topic,
            rec.queue,
            rec.schedule_id,
            rec.label,
            json.dumps(data, separators=(",", ":")),
        ),
    )


def list_events(
    conn: sqlite3.Connection, where: Where, cursor: int | None, count: int, newest_first: bool
) -> tuple[list[dict[str, Any]], int | None]:
    """Return one page of events and the cursor of the next page (None at the end)."""
    if cursor is not None:
        where.compare("id", "<" if newest_first else ">", cursor)
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        _SELECT_EVENTS + where.sql() + f" ORDER BY id {order} LIMIT ?",
        [*where.args, count + 1],
    ).fetchall()
    events = []
    for row in rows[:count]:
        event: dict[str, Any] = {
            "time": row[1],
            "messageId": row[2],
            "state": row[3],
            "url": row[4],
        }
        for key, value in (
            ("topicName", row[5]),
            ("queueName", row[6]),
            ("scheduleId", row[7]),
            ("label", row[8]),
        ):
            if value is not None:
                event[key] = value
        event.update(json.loads(row[9]))
        events.append(event)
    next_cursor = rows[count - 1][0] if len(rows) > count and count > 0 else None
    return events, next_cursor
