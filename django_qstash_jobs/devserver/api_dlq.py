"""Dead-letter queue endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .context import (
    Context,
    as_list,
    body_filters,
    cursor_param,
    filters,
    newest_first,
    page_size,
    query_filters,
)
from .db import Where
from .errors import bad_request, not_found
from .httpd import Request, Response, json_response
from .router import Router
from .serialize import dlq_json
from .store_dlq import delete_dlq, get_dlq, list_dlq

_FILTERS = {
    "messageId": "message_id",
    "url": "url",
    "topicName": "topic",
    "queueName": "queue",
    "scheduleId": "schedule_id",
    "responseStatus": "response_status",
    "callerIp": "caller_ip",
    "callerIP": "caller_ip",
    "label": "label",
    "flowControlKey": "flow_key",
}
_NAMES = [*_FILTERS, "fromDate", "toDate"]


def _selection(request: Request) -> Where:
    """The DLQ entries a bulk call is about (body or query form); no filter means all."""
    where = Where()
    if request.body.strip():
        data: Any = request.json()
        if not isinstance(data, dict):
            raise bad_request("body must be a JSON object")
        if "dlqIds" in data:
            return where.any_of("dlq_id", as_list(data["dlqIds"]) or [""])
        return filters(where, body_filters(data, _NAMES), _FILTERS, "failed_ms")
    ids = request.param_list("dlqIds")
    if ids:
        return where.any_of("dlq_id", ids)
    return filters(where, query_filters(request, _NAMES), _FILTERS, "failed_ms")


def register(router: Router, ctx: Context) -> None:
    """Add the routes of this module."""
    engine = ctx.engine

    def list_entries(request: Request, args: dict[str, str]) -> Response:
        where = filters(Where(), query_filters(request, _NAMES), _FILTERS, "failed_ms")
        count = page_size(request, 100, 100)
        with engine.db.read() as conn:
            entries, cursor = list_dlq(
                conn, where, cursor_param(request), count, newest_first(request, False)
            )
        data: dict[str, Any] = {"messages": [dlq_json(entry) for entry in entries]}
        if cursor is not None:
            data["cursor"] = str(cursor)
        return json_response(data)

    def get(request: Request, args: dict[str, str]) -> Response:
        dlq_id = unquote(args["id"])
        with engine.db.read() as conn:
            entry = get_dlq(conn, dlq_id)
        if entry is None:
            raise not_found(f"dlq message {dlq_id} not found")
        return json_response(dlq_json(entry))

    def delete(request: Request, args: dict[str, str]) -> Response:
        dlq_id = unquote(args["id"])
        with engine.db.transaction() as conn:
            deleted = delete_dlq(conn, Where().any_of("dlq_id", [dlq_id]))
        if not deleted:
            raise not_found(f"dlq message {dlq_id} not found")
        return Response(200)

    def delete_many(request: Request, args: dict[str, str]) -> Response:
        where = _selection(request)
        with engine.db.transaction() as conn:
            deleted = delete_dlq(conn, where)
        return json_response({"deleted": deleted})

    def retry_one(request: Request, args: dict[str, str]) -> Response:
        new_ids = engine.retry_dlq([unquote(args["id"])], request.headers, strict=True)
        return json_response({"messageId": new_ids[0]}, 201)

    def retry_many(request: Request, args: dict[str, str]) -> Response:
        where = _selection(request)
        with engine.db.read() as conn:
            entries, _cursor = list_dlq(conn, where, None, 1000, False)
        new_ids = engine.retry_dlq([e.dlq_id for e in entries], request.headers, strict=False)
        return json_response({"responses": [{"messageId": i} for i in new_ids]}, 201)

    router.add("GET", r"/v2/dlq/?", list_entries)
    router.add("DELETE", r"/v2/dlq/?", delete_many)
    router.add("POST", r"/v2/dlq/retry/?", retry_many)
    router.add("POST", r"/v2/dlq/retry/(?P<id>[^/]+)", retry_one)
    router.add("GET", r"/v2/dlq/(?P<id>[^/]+)", get)
    router.add("DELETE", r"/v2/dlq/(?P<id>[^/]+)", delete)
