"""SQL for the dead-letter queue."""

# Queries are assembled from constant column lists and Where conditions; every value is a
# bound parameter.

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .db import Where
from .options import PublishOptions
from .records import DlqRecord, MessageRecord

_COLUMNS = (
    "seq, dlq_id, message_id, url, topic, endpoint, queue, schedule_id, caller_ip, created_ms,"
    " not_before_ms, failed_ms, retried, options, body, response_status, response_headers,"
    " response_body"
)

_SELECT = f"SELECT {_COLUMNS} FROM dlq"  # noqa: S608
_DELETE = "DELETE FROM dlq"


def insert_dlq(conn: sqlite3.Connection, rec: DlqRecord) -> None:
    """Store a failed message with its last response."""
    msg = rec.message
    conn.execute(
        "INSERT INTO dlq (dlq_id, message_id, url, topic, endpoint, queue, schedule_id, caller_ip,"
        " label, flow_key, created_ms, not_before_ms, failed_ms, retried, options, body,"
        " response_status, response_headers, response_body)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            rec.dlq_id,
            msg.id,
            msg.url,
            msg.topic,
            msg.endpoint,
            msg.queue,
            msg.schedule_id,
            msg.caller_ip,
            msg.label,
            msg.flow_key,
            msg.created_ms,
            msg.not_before_ms,
            rec.failed_ms,
            msg.retried,
            msg.options.to_json(),
            msg.body,
            rec.response_status,
            json.dumps(rec.response_headers),
            rec.response_body,
        ),
    )


def _record(row: tuple[Any, ...]) -> DlqRecord:
    message = MessageRecord(
        id=row[2],
        url=row[3],
        topic=row[4],
        endpoint=row[5],
        queue=row[6],
        schedule_id=row[7],
        caller_ip=row[8],
        created_ms=row[9],
        not_before_ms=row[10],
        due_ms=row[10],
        retried=row[12],
        options=PublishOptions.from_json(row[13]),
        body=bytes(row[14]),
    )
    return DlqRecord(
        seq=row[0],
        dlq_id=row[1],
        message=message,
        failed_ms=row[11],
        response_status=row[15],
        response_headers=json.loads(row[16]),
        response_body=bytes(row[17]),
    )


def get_dlq(conn: sqlite3.Connection, dlq_id: str) -> DlqRecord | None:
    """Return one DLQ entry."""
    row = conn.execute(_SELECT + " WHERE dlq_id = ?", (dlq_id,)).fetchone()
    return _record(row) if row else None


def list_dlq(
    conn: sqlite3.Connection, where: Where, cursor: int | None, count: int, newest_first: bool
) -> tuple[list[DlqRecord], int | None]:
    """Return one page of DLQ entries and the next cursor (None at the end)."""
    if cursor is not None:
        where.compare("seq", "<" if newest_first else ">", cursor)
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        _SELECT + where.sql() + f" ORDER BY seq {order} LIMIT ?",
        [*where.args, count + 1],
    ).fetchall()
    records = [_record(row) for row in rows[:count]]
    next_cursor = records[-1].seq if len(rows) > count and records else None
    return records, next_cursor


def delete_dlq(conn: sqlite3.Connection, where: Where) -> int:
    """Delete the matching DLQ entries; return how many."""
    return conn.execute(_DELETE + where.sql(), where.args).rowcount
