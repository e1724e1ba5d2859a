"""JSON shapes of messages, DLQ entries, schedules, queues and URL groups (as the SDKs read)."""

from __future__ import annotations

from typing import Any

from .engine import b64
from .options import PublishOptions
from .records import DlqRecord, MessageRecord, QueueRecord, ScheduleRecord, TopicRecord


def put_body(data: dict[str, Any], body: bytes, key: str = "body") -> None:
    """``data[key]`` as text, or ``data[key + "Base64"]`` when the bytes are not UTF-8."""
    try:
        data[key] = body.decode("utf-8")
    except UnicodeDecodeError:
        data[key + "Base64"] = b64(body)


def _common(data: dict[str, Any], opts: PublishOptions) -> None:
    optional: dict[str, Any] = {
        "header": opts.headers or None,
        "callbackHeader": opts.callback_config.headers or None,
        "failureCallbackHeader": opts.failure_callback_config.headers or None,
        "callback": opts.callback,
        "failureCallback": opts.failure_callback,
        "retryDelayExpression": opts.retry_delay,
        "label": opts.labels[0] if opts.labels else None,
        "labels": opts.labels or None,
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    flow = opts.flow_control
    if flow is not None:
        data["flowControlKey"] = flow.key
        if flow.parallelism is not None:
            data["parallelism"] = flow.parallelism
        if flow.rate is not None:
            data["rate"] = flow.rate
        data["period"] = flow.period


def message_json(rec: MessageRecord) -> dict[str, Any]:
    """A message object (``GET /v2/messages/{id}``)."""
    data: dict[str, Any] = {
        "messageId": rec.id,
        "url": rec.url,
        "method": rec.options.method,
        "maxRetries": rec.options.retries,
        "notBefore": rec.not_before_ms,
        "createdAt": rec.created_ms,
    }
    for key, value in (
        ("topicName", rec.topic),
        ("endpointName", rec.endpoint),
        ("queueName", rec.queue),
        ("scheduleId", rec.schedule_id),
        ("callerIP", rec.caller_ip),
    ):
        if value is not None:
            data[key] = value
    put_body(data, rec.body)
    _common(data, rec.options)
    return data


def dlq_json(entry: DlqRecord) -> dict[str, Any]:
    """A DLQ message: the message object plus the last response."""
    data = message_json(entry.message)
    data["dlqId"] = entry.dlq_id
    data["responseStatus"] = entry.response_status
    data["responseHeader"] = entry.response_headers
    put_body(data, entry.response_body, "responseBody")
    return data


def schedule_json(rec: ScheduleRecord) -> dict[str, Any]:
    """A schedule object."""
    opts = rec.options
    data: dict[str, Any] = {
        "scheduleId": rec.id,
        "destination": rec.destination,
        "cron": rec.cron,
        "createdAt": rec.created_ms,
        "method": opts.method,
        "retries": opts.retries,
        "isPaused": rec.paused,
    }
    optional: dict[str, Any] = {
        "delay": int(opts.delay) if opts.delay else None,
        "timeout": int(opts.timeout) if opts.timeout is not None else None,
        "queueName": rec.queue,
        "callerIP": rec.caller_ip,
        "lastScheduleTime": rec.last_ms,
        "nextScheduleTime": rec.next_ms,
        "lastScheduleStates": rec.last_states or None,
        "error": rec.error,
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    put_body(data, rec.body)
    _common(data, opts)
    return data


def queue_json(rec: QueueRecord, lag: int) -> dict[str, Any]:
    """A queue object."""
    return {
        "name": rec.name,
        "parallelism": rec.parallelism,
        "createdAt": rec.created_ms,
        "updatedAt": rec.updated_ms,
        "lag": lag,
        "paused": rec.paused,
    }


def topic_json(rec: TopicRecord) -> dict[str, Any]:
    """A URL group object."""
    return {
        "name": rec.name,
        "createdAt": rec.created_ms,
        "updatedAt": rec.updated_ms,
        "endpoints": rec.endpoints,
    }
