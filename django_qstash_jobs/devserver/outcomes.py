"""What happens after one delivery attempt: done, retry later, or dead-letter; callbacks."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import ids
from .defaults import MAX_EVENT_BODY_BYTES
from .dispatcher import Job, now_ms
from .durations import RetryDelayExpression, default_backoff
from .engine import Engine, Published, b64, store_new
from .options import CallbackConfig, PublishOptions
from .records import DlqRecord, MessageRecord
from .serialize import put_body
from .store_config import set_last_state
from .store_dlq import insert_dlq
from .store_messages import add_event, delete_message, set_retry


@dataclass
class AttemptResult:
    """The destination's answer to one attempt (status 0 when there was no answer)."""

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None
    retry_after: float | None = None
    non_retryable: bool = False

    @property
    def ok(self) -> bool:
        """Whether the attempt counts as delivered (any 2xx)."""
        return 200 <= self.status < 300


@lru_cache(maxsize=256)
def _expression(source: str) -> RetryDelayExpression:
    return RetryDelayExpression(source)


def retry_delay_seconds(rec: MessageRecord, result: AttemptResult) -> float:
    """Unscaled wait before the next attempt of ``rec``, which just failed with ``result``."""
    if result.retry_after is not None:
        return result.retry_after
    if rec.options.retry_delay:
        try:
            # ``retried`` in the expression is 0 before the first retry.
            return _expression(rec.options.retry_delay).evaluate(rec.retried) / 1000
        except ValueError:
            pass
    return default_backoff(rec.retried + 1)


def _response_fields(result: AttemptResult) -> dict[str, Any]:
    data: dict[str, Any] = {"responseStatus": result.status, "responseHeader": result.headers}
    put_body(data, result.body[:MAX_EVENT_BODY_BYTES], "responseBody")
    if result.error:
        data["error"] = result.error
    return data


def callback_record(
    source: MessageRecord,
    url: str,
    config: CallbackConfig,
    result: AttemptResult,
    now: int,
    engine: Engine,
    dlq_id: str | None = None,
) -> MessageRecord:
    """Build the (failure) callback message for one attempt of ``source``."""
    payload: dict[str, Any] = {
        "status": result.status,
        "header": result.headers,
        "body": b64(result.body),
        "retried": source.retried,
        "maxRetries": source.options.retries,
        "sourceMessageId": source.id,
        "url": source.url,
        "method": source.options.method,
        "sourceHeader": source.options.headers,
        "sourceBody": b64(source.body),
        "notBefore": source.not_before_ms,
        "createdAt": source.created_ms,
        "callerIP": source.caller_ip or "",
    }
    for key, value in (
        ("topicName", source.topic),
        ("endpointName", source.endpoint),
        ("scheduleId", source.schedule_id),
        ("dlqId", dlq_id),
        ("error", result.error),
    ):
        if value is not None:
            payload[key] = value
    src = source.options
    headers = {"Content-Type": ["application/json"], **config.headers}
    opts = PublishOptions(
        method=config.method or "POST",
        headers=headers,
        retries=config.retries if config.retries is not None else src.retries,
        retry_delay=config.retry_delay if config.retry_delay is not None else src.retry_delay,
        timeout=config.timeout if config.timeout is not None else src.timeout,
        delay=config.delay or 0.0,
    )
    not_before_ms, due_ms = engine.first_due(opts, now)
    return MessageRecord(
        id=ids.message_id(),
        url=url,
        body=json.dumps(payload).encode("utf-8"),
        options=opts,
        created_ms=now,
        not_before_ms=not_before_ms,
        due_ms=due_ms,
        caller_ip=source.caller_ip,
    )


def record_attempt(engine: Engine, job: Job, rec: MessageRecord, result: AttemptResult) -> None:
    """Store the outcome of one attempt, schedule what follows, and release the job."""
    now = now_ms()
    opts = rec.options
    retry_due: int | None = None
    callbacks: list[MessageRecord] = []
    final_state: str | None = None
    with engine.db.transaction() as conn:
        if result.ok:
            exists = delete_message(conn, rec.id)
            if exists:
                add_event(conn, now, "DELIVERED", rec, _response_fields(result))
                final_state = "SUCCESS"
        else:
            response = _response_fields(result)
            add_event(conn, now, "ERROR", rec, response)
            if result.non_retryable or rec.retried >= opts.retries:
                exists = delete_message(conn, rec.id)
                if exists:
                    dlq_id = _dead_letter(conn, rec, result, response, now)
                    final_state = "FAIL"
                    if opts.failure_callback:
                        callbacks.append(
                            callback_record(
                                rec,
                                opts.failure_callback,
                                opts.failure_callback_config,
                                result,
                                now,
                                engine,
                                dlq_id,
                            )
                        )
            else:
                delay = retry_delay_seconds(rec, result)
                retry_due = now + int(delay * 1000 * engine.config.backoff_scale)
                exists = set_retry(conn, rec.id, rec.retried + 1, retry_due)
                if exists:
                    add_event(conn, now, "RETRY", rec, {"nextDeliveryTime": retry_due})
        if exists and opts.callback:
            # The per-attempt callback goes out before the failure callback, as on Upstash.
            callbacks.insert(
                0, callback_record(rec, opts.callback, opts.callback_config, result, now, engine)
            )
        for cb in callbacks:
            store_new(conn, cb, now)
        if final_state is not None and rec.schedule_id is not None:
            set_last_state(conn, rec.schedule_id, rec.id, final_state)
    # Callbacks are handed over before the job is released, so that the server never looks
    # idle in between.
    engine.commit([Published(None, callbacks)])
    engine.dispatcher.finish(job, retry_due if exists else None)


def _dead_letter(
    conn: sqlite3.Connection,
    rec: MessageRecord,
    result: AttemptResult,
    response: dict[str, Any],
    now: int,
) -> str:
    entry = DlqRecord(
        dlq_id=ids.dlq_id(),
        message=rec,
        failed_ms=now,
        response_status=result.status,
        response_headers=result.headers,
        response_body=result.body,
    )
    insert_dlq(conn, entry)
    add_event(conn, now, "FAILED", rec, {"dlqId": entry.dlq_id, **response})
    return entry.dlq_id
