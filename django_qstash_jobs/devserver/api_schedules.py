"""Schedule endpoints, including the dev-only ``trigger``."""

from __future__ import annotations

from urllib.parse import unquote

from . import ids
from .context import Context
from .cron import parse_cron
from .destinations import check_name, read_publish
from .dispatcher import now_ms
from .errors import bad_request, not_found
from .httpd import Request, Response, json_response
from .options import parse_options
from .records import ScheduleRecord
from .router import Router
from .serialize import schedule_json
from .store_config import delete_schedule, get_schedule, list_schedules, put_schedule

# Schedule ids never contain ':' (URLs always do), which keeps these apart from creation.
_ID = r"(?P<id>[^/:]+)"


def register(router: Router, ctx: Context) -> None:
    """Add the routes of this module."""
    engine = ctx.engine
    scheduler = ctx.scheduler

    def create(request: Request, args: dict[str, str]) -> Response:
        dest, headers = read_publish(request, args["dest"])
        cron = headers.get("Upstash-Cron")
        if not cron or not cron.strip():
            raise bad_request("Upstash-Cron header is required")
        try:
            parse_cron(cron)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        schedule_id = headers.get("Upstash-Schedule-Id")
        schedule_id = check_name("schedule id", schedule_id) if schedule_id else ids.schedule_id()
        queue = headers.get("Upstash-Queue-Name")
        if queue:
            check_name("queue name", queue)
        opts = parse_options(headers, engine.config.default_retries)
        now = now_ms()
        with engine.db.transaction() as conn:
            existing = get_schedule(conn, schedule_id)
            put_schedule(
                conn,
                ScheduleRecord(
                    id=schedule_id,
                    destination=dest.text,
                    cron=cron.strip(),
                    options=opts,
                    body=request.body,
                    created_ms=existing.created_ms if existing else now,
                    updated_ms=now,
                    queue=queue or None,
                    caller_ip=request.client_ip,
                    last_ms=existing.last_ms if existing else None,
                    last_states=existing.last_states if existing else {},
                ),
            )
        scheduler.refresh(schedule_id)
        return json_response({"scheduleId": schedule_id})

    def list_all(request: Request, args: dict[str, str]) -> Response:
        with engine.db.read() as conn:
            schedules = list_schedules(conn)
        return json_response([schedule_json(s) for s in schedules])

    def get(request: Request, args: dict[str, str]) -> Response:
        schedule_id = unquote(args["id"])
        with engine.db.read() as conn:
            schedule = get_schedule(conn, schedule_id)
        if schedule is None:
            raise not_found(f"schedule {schedule_id} not found")
        return json_response(schedule_json(schedule))

    def delete(request: Request, args: dict[str, str]) -> Response:
        schedule_id = unquote(args["id"])
        with engine.db.transaction() as conn:
            delete_schedule(conn, schedule_id)
        scheduler.refresh(schedule_id)
        return Response(200)

    def pause_or_resume(request: Request, args: dict[str, str]) -> Response:
        schedule_id = unquote(args["id"])
        with engine.db.transaction() as conn:
            schedule = get_schedule(conn, schedule_id)
            if schedule is None:
                raise not_found(f"schedule {schedule_id} not found")
            schedule.paused = args["action"] == "pause"
            schedule.updated_ms = now_ms()
            put_schedule(conn, schedule)
        return Response(200)

    def trigger(request: Request, args: dict[str, str]) -> Response:
        message_ids = scheduler.fire(unquote(args["id"]), manual=True)
        return json_response({"messageId": message_ids[0], "messageIds": message_ids})

    router.add("POST", rf"/v2/schedules/{_ID}/trigger", trigger)
    router.add("PATCH POST", rf"/v2/schedules/{_ID}/(?P<action>pause|resume)", pause_or_resume)
    router.add("POST", r"/v2/schedules/(?P<dest>.+)", create)
    router.add("GET", r"/v2/schedules/?", list_all)
    router.add("GET", r"/v2/schedules/(?P<id>[^/]+)", get)
    router.add("DELETE", r"/v2/schedules/(?P<id>[^/]+)", delete)
