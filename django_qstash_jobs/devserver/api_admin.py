"""Queues, URL groups, signing keys, logs and flow control."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .context import Context, cursor_param, filters, newest_first, page_size, query_filters
from .db import Where
from .destinations import check_name
from .dispatcher import now_ms
from .errors import bad_request, not_found
from .httpd import Request, Response, json_response
from .options import check_url
from .records import QueueRecord, TopicRecord
from .router import Router
from .serialize import queue_json, topic_json
from .store_config import (
    delete_queue,
    delete_topic,
    get_queue,
    get_topic,
    list_queues,
    list_topics,
    put_queue,
    put_topic,
)
from .store_messages import list_events, queue_lag

_EVENT_FILTERS = {
    "messageId": "message_id",
    "messageIds": "message_id",
    "state": "state",
    "url": "url",
    "topicName": "topic",
    "queueName": "queue",
    "scheduleId": "schedule_id",
    "label": "label",
}
_IN_PROGRESS = ["ACTIVE", "RETRY", "ERROR"]
MAX_PARALLELISM = 1000


def _endpoints(request: Request, require_url: bool) -> list[dict[str, Any]]:
    data = request.json()
    endpoints = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, list):
        raise bad_request("body must be an object with an endpoints array")
    out = []
    for endpoint in endpoints:
        if not isinstance(endpoint, dict):
            raise bad_request("each endpoint must be an object")
        url, name = endpoint.get("url"), endpoint.get("name")
        if name is not None and not isinstance(name, str):
            raise bad_request("endpoint name must be a string")
        if url is not None:
            url = check_url("endpoint url", str(url))
        elif require_url or name is None:
            raise bad_request("endpoint url is required")
        out.append({k: v for k, v in (("url", url), ("name", name)) if v is not None})
    return out


def register(router: Router, ctx: Context) -> None:
    """Add the routes of this module."""
    engine = ctx.engine
    dispatcher = engine.dispatcher

    # -- queues ---------------------------------------------------------------------------

    def queue_upsert(request: Request, args: dict[str, str]) -> Response:
        data = request.json()
        if not isinstance(data, dict):
            raise bad_request("body must be a JSON object")
        name = check_name("queue name", str(data.get("queueName") or ""))
        parallelism = data.get("parallelism", 1)
        if isinstance(parallelism, bool) or not isinstance(parallelism, int):
            raise bad_request("parallelism must be an integer")
        if not 1 <= parallelism <= MAX_PARALLELISM:
            raise bad_request(f"parallelism must be between 1 and {MAX_PARALLELISM}")
        paused = bool(data.get("paused", False))
        now = now_ms()
        with engine.db.transaction() as conn:
            old = get_queue(conn, name)
            created = old.created_ms if old else now
            put_queue(conn, QueueRecord(name, parallelism, paused, created, now))
            # Under the database lock, so that two changes reach the gate in the order stored.
            dispatcher.configure_queue(name, parallelism, paused)
        return Response(200)

    def queue_list(request: Request, args: dict[str, str]) -> Response:
        with engine.db.read() as conn:
            queues = [queue_json(q, queue_lag(conn, q.name)) for q in list_queues(conn)]
        return json_response(queues)

    def queue_get(request: Request, args: dict[str, str]) -> Response:
        name = unquote(args["name"])
        with engine.db.read() as conn:
            queue = get_queue(conn, name)
            if queue is None:
                raise not_found(f"queue {name} not found")
            return json_response(queue_json(queue, queue_lag(conn, name)))

    def queue_delete(request: Request, args: dict[str, str]) -> Response:
        name = unquote(args["name"])
        engine.cancel(Where().any_of("queue", [name]))
        with engine.db.transaction() as conn:
            delete_queue(conn, name)
        dispatcher.forget_queue(name)
        return Response(200)

    def queue_pause_or_resume(request: Request, args: dict[str, str]) -> Response:
        name = unquote(args["name"])
        with engine.db.transaction() as conn:
            queue = get_queue(conn, name)
            if queue is None:
                raise not_found(f"queue {name} not found")
            queue.paused = args["action"] == "pause"
            queue.updated_ms = now_ms()
            put_queue(conn, queue)
            dispatcher.configure_queue(name, queue.parallelism, queue.paused)
        return Response(200)

    # -- URL groups -----------------------------------------------------------------------

    def topic_add(request: Request, args: dict[str, str]) -> Response:
        name = check_name("url group name", unquote(args["name"]))
        new = _endpoints(request, require_url=True)
        now = now_ms()
        with engine.db.transaction() as conn:
            topic = get_topic(conn, name) or TopicRecord(name, now, now, [])
            for endpoint in new:
                topic.endpoints = [
                    e
                    for e in topic.endpoints
                    if e["url"] != endpoint["url"]
                    and (endpoint.get("name") is None or e.get("name") != endpoint.get("name"))
                ] + [endpoint]
            topic.updated_ms = now
            put_topic(conn, topic)
        return Response(200)

    def topic_remove(request: Request, args: dict[str, str]) -> Response:
        name = unquote(args["name"])
        gone = _endpoints(request, require_url=False)
        with engine.db.transaction() as conn:
            topic = get_topic(conn, name)
            if topic is None:
                raise not_found(f"url group {name} not found")
            for endpoint in gone:
                topic.endpoints = [
                    e
                    for e in topic.endpoints
                    if not (
                        ("url" in endpoint and e["url"] == endpoint["url"])
                        or ("name" in endpoint and e.get("name") == endpoint["name"])
                    )
                ]
            topic.updated_ms = now_ms()
            if topic.endpoints:
                put_topic(conn, topic)
            else:
                delete_topic(conn, name)
        return Response(200)

    def topic_list(request: Request, args: dict[str, str]) -> Response:
        with engine.db.read() as conn:
            return json_response([topic_json(t) for t in list_topics(conn)])

    def topic_get(request: Request, args: dict[str, str]) -> Response:
        name = unquote(args["name"])
        with engine.db.read() as conn:
            topic = get_topic(conn, name)
        if topic is None:
            raise not_found(f"url group {name} not found")
        return json_response(topic_json(topic))

    def topic_delete(request: Request, args: dict[str, str]) -> Response:
        with engine.db.transaction() as conn:
            delete_topic(conn, unquote(args["name"]))
        return Response(200)

    # -- signing keys and logs ------------------------------------------------------------

    def keys_get(request: Request, args: dict[str, str]) -> Response:
        current, nxt = engine.keys
        return json_response({"current": current, "next": nxt})

    def keys_rotate(request: Request, args: dict[str, str]) -> Response:
        current, nxt = engine.rotate_keys()
        return json_response({"current": current, "next": nxt})

    def events(request: Request, args: dict[str, str]) -> Response:
        found = query_filters(request, [*_EVENT_FILTERS, "fromDate", "toDate"])
        if "IN_PROGRESS" in found.get("state", []):
            found["state"] = [s for s in found["state"] if s != "IN_PROGRESS"] + _IN_PROGRESS
        where = filters(Where(), found, _EVENT_FILTERS, "time_ms")
        count = page_size(request, 100, 1000)
        with engine.db.read() as conn:
            rows, cursor = list_events(
                conn, where, cursor_param(request), count, newest_first(request, True)
            )
        key = "logs" if request.path.rstrip("/").endswith("logs") else "events"
        data: dict[str, Any] = {key: rows}
        if cursor is not None:
            data["cursor"] = str(cursor)
        return json_response(data)

    # -- flow control ---------------------------------------------------------------------

    def flow_list(request: Request, args: dict[str, str]) -> Response:
        search = request.param("search") or ""
        return json_response(
            [info for info in dispatcher.flow_info() if search in info["flowControlKey"]]
        )

    def flow_get(request: Request, args: dict[str, str]) -> Response:
        key = unquote(args["key"])
        found = dispatcher.flow_info(key)
        if not found:
            raise not_found(f"flow control key {key} not found")
        return json_response(found[0])

    def flow_action(request: Request, args: dict[str, str]) -> Response:
        key, action = unquote(args["key"]), args["action"]
        changes: dict[str, Any] = {}
        if action in ("pause", "resume"):
            changes["paused"] = action == "pause"
        elif action == "resetRate":
            changes["window_count"] = 0
        elif action == "pin":
            for name, attr in (("parallelism", "parallelism"), ("rate", "rate")):
                if request.param(name) is not None:
                    changes[attr] = _positive(request.param(name), name)
                    changes[f"pinned_{attr}"] = True
            if request.param("period") is not None:
                changes["period_ms"] = _positive(request.param("period"), "period") * 1000
        else:
            for name in ("parallelism", "rate"):
                if (request.param(name) or "").lower() == "true":
                    changes[f"pinned_{name}"] = False
        if not dispatcher.update_flow(key, **changes):
            raise not_found(f"flow control key {key} not found")
        return Response(200)

    def global_parallelism(request: Request, args: dict[str, str]) -> Response:
        running = dispatcher.in_flight()
        return json_response({"parallelismMax": 0, "parallelismCount": running})

    router.add("POST", r"/v2/queues/?", queue_upsert)
    router.add("GET", r"/v2/queues/?", queue_list)
    router.add("GET", r"/v2/queues/(?P<name>[^/]+)", queue_get)
    router.add("DELETE", r"/v2/queues/(?P<name>[^/]+)", queue_delete)
    router.add(
        "POST", r"/v2/queues/(?P<name>[^/]+)/(?P<action>pause|resume)", queue_pause_or_resume
    )
    router.add("POST", r"/v2/topics/(?P<name>[^/]+)/endpoints", topic_add)
    router.add("DELETE", r"/v2/topics/(?P<name>[^/]+)/endpoints", topic_remove)
    router.add("GET", r"/v2/topics/?", topic_list)
    router.add("GET", r"/v2/topics/(?P<name>[^/]+)", topic_get)
    router.add("DELETE", r"/v2/topics/(?P<name>[^/]+)", topic_delete)
    router.add("GET", r"/v2/keys/?", keys_get)
    router.add("POST", r"/v2/keys/rotate/?", keys_rotate)
    router.add("GET", r"/v2/(?:events|logs)/?", events)
    router.add("GET", r"/v2/flowControl/?", flow_list)
    router.add("GET", r"/v2/flowControl/(?P<key>[^/]+)", flow_get)
    router.add(
        "POST",
        r"/v2/flowControl/(?P<key>[^/]+)/"
        r"(?P<action>pause|resume|pin|unpin|resetRate)",
        flow_action,
    )
    router.add("GET", r"/v2/globalParallelism/?", global_parallelism)


def _positive(value: str | None, name: str) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise bad_request(f"invalid {name}: {value!r}") from None
    if number < 1:
        raise bad_request(f"invalid {name}: must be positive")
    return number
