"""Publish, enqueue, batch and the messages endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .context import Context, body_filters, filters, int_param, query_filters, reject_unknown
from .db import Where
from .destinations import Destination, check_name, parse_destination, read_publish
from .engine import Published
from .errors import bad_request, not_found
from .headers import Headers
from .httpd import Request, Response, json_response
from .options import PublishOptions, parse_options
from .router import Router
from .serialize import message_json
from .store_messages import get_message

# Body/query filter name -> messages column, or an SQL expression over one.
_CANCEL_FILTERS = {
    "url": "url",
    "topicName": "topic",
    "queueName": "queue",
    "scheduleId": "schedule_id",
    "callerIp": "caller_ip",
    "callerIP": "caller_ip",
    "label": "label",
    "flowControlKey": "flow_key",
    # Parts of the destination URL (qstash-js): the host name in any case and any port, and
    # the path as published.
    "host": "url_host(url) COLLATE NOCASE",
    "path": "url_path(url)",
}
_CANCEL_NAMES = [*_CANCEL_FILTERS, "fromDate", "toDate"]
# Everything a bulk cancel's body may hold; its query string may carry the token too.
_CANCEL_BODY_KEYS = frozenset([*_CANCEL_NAMES, "messageIds", "count"])
_CANCEL_QUERY_KEYS = _CANCEL_BODY_KEYS | {"qstash_token"}


def _options(ctx: Context, headers: Headers) -> PublishOptions:
    return parse_options(headers, ctx.engine.config.default_retries)


def _answer(item: Published) -> Response:
    return json_response(item.response, 202 if item.deduplicated else 200)


def register(router: Router, ctx: Context) -> None:
    """Add the routes of this module."""
    engine = ctx.engine

    def publish(request: Request, args: dict[str, str]) -> Response:
        dest, headers = read_publish(request, args["dest"])
        opts = _options(ctx, headers)
        return _answer(engine.publish(dest, request.body, opts, caller_ip=request.client_ip))

    def enqueue(request: Request, args: dict[str, str]) -> Response:
        queue = check_name("queue name", unquote(args["queue"]))
        dest, headers = read_publish(request, args["dest"])
        opts = _options(ctx, headers)
        item = engine.publish(dest, request.body, opts, queue=queue, caller_ip=request.client_ip)
        return _answer(item)

    def batch(request: Request, args: dict[str, str]) -> Response:
        items = request.json()
        if not isinstance(items, list):
            raise bad_request("batch body must be a JSON array")
        parsed = [_batch_item(ctx, index, item) for index, item in enumerate(items)]
        with engine.db.transaction() as conn:
            published = [
                engine.publish_in(conn, dest, body, opts, queue=queue, caller_ip=request.client_ip)
                for dest, body, opts, queue in parsed
            ]
        engine.commit(published)
        return json_response([item.response for item in published])

    def get(request: Request, args: dict[str, str]) -> Response:
        message_id = unquote(args["id"])
        with engine.db.read() as conn:
            rec = get_message(conn, message_id)
        if rec is None:
            raise not_found(f"message {message_id} not found")
        return json_response(message_json(rec))

    def cancel(request: Request, args: dict[str, str]) -> Response:
        engine.cancel_one(unquote(args["id"]))
        return Response(200)

    def cancel_many(request: Request, args: dict[str, str]) -> Response:
        where, limit = _cancel_selection(request)
        return json_response({"cancelled": engine.cancel(where, limit)})

    router.add("POST", r"/v2/publish/(?P<dest>.+)", publish)
    router.add("POST", r"/v2/enqueue/(?P<queue>[^/]+)/(?P<dest>.+)", enqueue)
    router.add("POST", r"/v2/batch/?", batch)
    router.add("GET", r"/v2/messages/(?P<id>[^/]+)", get)
    router.add("DELETE", r"/v2/messages/(?P<id>[^/]+)", cancel)
    router.add("DELETE", r"/v2/messages/?", cancel_many)


def _cancel_selection(request: Request) -> tuple[Where, int | None]:
    """The messages a bulk cancel is about (body or query form), and at most how many."""
    if request.body.strip():
        return _cancel_body_selection(request.json())
    return _cancel_query_selection(request)


def _cancel_body_selection(data: Any) -> tuple[Where, int | None]:
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object")
    reject_unknown(data, _CANCEL_BODY_KEYS)
    where = Where()
    ids = data.get("messageIds")
    if ids is not None:
        if not isinstance(ids, list):
            raise bad_request("messageIds must be an array")
        where.any_of("id", [str(i) for i in ids] or [""])
    else:
        filters(where, body_filters(data, _CANCEL_NAMES), _CANCEL_FILTERS, "created_ms")
    return where, _cancel_count(data.get("count"))


def _cancel_query_selection(request: Request) -> tuple[Where, int | None]:
    reject_unknown((name for name, _ in request.params), _CANCEL_QUERY_KEYS)
    where = Where()
    ids = request.param_list("messageIds")
    if ids:
        where.any_of("id", ids)
    else:
        filters(where, query_filters(request, _CANCEL_NAMES), _CANCEL_FILTERS, "created_ms")
    return where, _cancel_count(request.param("count"))


def _cancel_count(value: Any) -> int | None:
    """The ``count`` of a bulk cancel: absent (no limit) or a number that is not negative."""
    count = int_param(value, "count")
    if count is not None and count < 0:
        # SQLite reads a negative LIMIT as no limit at all.
        raise bad_request(f"invalid count: {value!r} is negative")
    return count


def _batch_item(
    ctx: Context, index: int, item: Any
) -> tuple[Destination, bytes, PublishOptions, str | None]:
    if not isinstance(item, dict):
        raise bad_request(f"batch element {index} must be an object")
    destination = item.get("destination")
    if not isinstance(destination, str) or not destination:
        raise bad_request(f"batch element {index}: destination is required")
    raw_headers = item.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise bad_request(f"batch element {index}: headers must be an object")
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        raise bad_request(f"batch element {index}: body must be a string")
    queue = item.get("queue")
    if queue is not None:
        if not isinstance(queue, str):
            raise bad_request(f"batch element {index}: queue must be a string")
        check_name("queue name", queue)
    path, _, query = destination.partition("?")
    dest = parse_destination(path, query)
    headers = Headers((str(k), str(v)) for k, v in raw_headers.items())
    opts = _options(ctx, headers)
    return dest, (body or "").encode("utf-8"), opts, queue
