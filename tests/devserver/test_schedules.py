"""Schedules: create (upsert), get, list, pause, resume, delete, and the dev-only trigger."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from qstash import QStash, Receiver
from qstash.errors import QStashError
from qstash.schedule import Schedule, ScheduleState

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination, wait_until


def _trigger(server: DevServer, schedule_id: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v2/schedules/{schedule_id}/trigger",
        headers={"Authorization": f"Bearer {server.token}"},
    )


def test_create_get_list_and_upsert(qstash: QStash, destination: Destination) -> None:
    schedule_id = qstash.schedule.create_json(
        destination=destination.url("/s"),
        cron="CRON_TZ=Europe/Istanbul */5 * * * *",
        body={"job": 1},
        headers={"X-S": "1"},
        retries=2,
        delay="30s",
        timeout="10s",
        callback=destination.url("/cb"),
    )
    assert schedule_id.startswith("scd_")
    schedule = qstash.schedule.get(schedule_id)
    assert schedule.destination == destination.url("/s")
    assert schedule.cron == "CRON_TZ=Europe/Istanbul */5 * * * *"
    assert schedule.retries == 2 and schedule.delay == 30 and schedule.timeout == 10
    assert schedule.body == '{"job": 1}'
    assert schedule.headers == {"Content-Type": ["application/json"], "X-S": ["1"]}
    assert schedule.paused is False
    assert schedule.next_schedule_time is not None and schedule.next_schedule_time % 60_000 == 0
    assert schedule.callback == destination.url("/cb")

    same = qstash.schedule.create(
        destination=destination.url("/other"),
        cron="0 2 * * 7",
        schedule_id=schedule_id,
        body="raw",
        queue="sq",
    )
    assert same == schedule_id
    updated = qstash.schedule.get(schedule_id)
    assert updated.destination == destination.url("/other")
    assert updated.cron == "0 2 * * 7"
    assert updated.queue == "sq"
    assert updated.created_at == schedule.created_at
    named = qstash.schedule.create(
        destination=destination.url("/n"), cron="* * * * *", schedule_id="nightly-cleanup"
    )
    assert named == "nightly-cleanup"
    assert sorted(s.schedule_id for s in qstash.schedule.list()) == sorted(
        [schedule_id, "nightly-cleanup"]
    )


def test_pause_resume_delete(qstash: QStash, destination: Destination, server: DevServer) -> None:
    schedule_id = qstash.schedule.create(destination=destination.url("/p"), cron="0 0 1 1 *")
    qstash.schedule.pause(schedule_id)
    assert qstash.schedule.get(schedule_id).paused is True
    qstash.schedule.resume(schedule_id)
    assert qstash.schedule.get(schedule_id).paused is False
    # POST is accepted too (the OpenAPI document's method).
    response = httpx.post(
        f"{server.url}/v2/schedules/{schedule_id}/pause",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 200
    assert qstash.schedule.get(schedule_id).paused is True
    qstash.schedule.delete(schedule_id)
    with pytest.raises(QStashError, match="404"):
        qstash.schedule.get(schedule_id)
    assert qstash.schedule.list() == []


def test_trigger_delivers_with_the_schedule_id(
    server: DevServer, qstash: QStash, destination: Destination, receiver: Receiver
) -> None:
    schedule_id = qstash.schedule.create_json(
        destination=destination.url("/tick?src=cron"),
        cron="0 0 1 1 *",
        body={"tick": True},
        headers={"X-T": "t"},
    )
    response = _trigger(server, schedule_id)
    assert response.status_code == 200
    message_id = response.json()["messageId"]
    (got,) = destination.wait_for(1, "/tick")
    assert got.headers["Upstash-Schedule-Id"] == schedule_id
    assert got.headers["Upstash-Message-Id"] == message_id
    assert got.headers["X-T"] == "t"
    assert json.loads(got.body) == {"tick": True}
    receiver.verify(
        signature=got.headers["Upstash-Signature"],
        body=got.body.decode(),
        url=destination.url("/tick?src=cron"),
    )

    def settled() -> Schedule | None:
        schedule = qstash.schedule.get(schedule_id)
        states = schedule.last_schedule_states or {}
        return schedule if states.get(message_id) is ScheduleState.SUCCESS else None

    schedule = wait_until(settled, what="schedule state SUCCESS")
    assert schedule is not None
    assert schedule.last_schedule_time is not None
    assert _trigger(server, "unknown").status_code == 404


def test_bad_cron_and_bad_schedule_id_are_400(qstash: QStash, destination: Destination) -> None:
    # February 30th is valid field by field, yet never comes; America is a region, not a zone.
    for cron in (
        "61 * * * *",
        "* * *",
        "CRON_TZ=Mars/Base * * * * *",
        "CRON_TZ=America 0 2 * * *",
        "not a cron",
        "0 0 30 2 *",
    ):
        with pytest.raises(QStashError, match="400"):
            qstash.schedule.create(destination=destination.url("/x"), cron=cron)
    with pytest.raises(QStashError, match="400"):
        qstash.schedule.create(
            destination=destination.url("/x"), cron="* * * * *", schedule_id="no spaces/allowed"
        )
    assert qstash.schedule.list() == []


def test_a_due_schedule_fires_by_itself_and_skips_while_paused(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    schedule_id = qstash.schedule.create_json(
        destination=destination.url("/cron"),
        cron="* * * * *",
        body={"timed": 1},
        queue="cronq",
    )
    now_ms = int(time.time() * 1000)
    qstash.schedule.pause(schedule_id)
    server.scheduler.refresh(schedule_id, at_ms=now_ms)
    time.sleep(0.1)
    assert destination.received("/cron") == []
    qstash.schedule.resume(schedule_id)
    server.scheduler.refresh(schedule_id, at_ms=now_ms)
    (got,) = destination.wait_for(1, "/cron")
    assert got.headers["Upstash-Schedule-Id"] == schedule_id
    schedule = qstash.schedule.get(schedule_id)
    # After firing, the next time comes from the cron again: the start of a coming minute.
    assert schedule.next_schedule_time is not None
    assert schedule.next_schedule_time > now_ms and schedule.next_schedule_time % 60_000 == 0
    assert schedule.last_schedule_time is not None


def _queued_firings(server: DevServer, schedule_id: str) -> list[int]:
    """When the cron thread will fire the schedule next (entries still current)."""
    scheduler = server.scheduler
    with scheduler._cond:
        version = scheduler._versions.get(schedule_id)
        return [at for at, sid, v in scheduler._heap if sid == schedule_id and v == version]


def test_a_schedule_changed_while_it_fires_stays_queued_once(
    server: DevServer, qstash: QStash, destination: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule_id = qstash.schedule.create_json(
        destination=destination.url("/cron"), cron="* * * * *", body={}
    )
    scheduler = server.scheduler
    fire = scheduler.fire

    def fire_then_upserted(sid: str, manual: bool) -> list[str]:
        ids = fire(sid, manual)
        scheduler.refresh(sid)  # the same schedule posted again while this firing finishes
        return ids

    monkeypatch.setattr(scheduler, "fire", fire_then_upserted)
    scheduler.refresh(schedule_id, at_ms=int(time.time() * 1000))
    destination.wait_for(1, "/cron")
    wait_until(lambda: _queued_firings(server, schedule_id))
    time.sleep(0.2)  # the firing thread has finished by now
    assert len(_queued_firings(server, schedule_id)) == 1


def test_a_firing_that_fails_unexpectedly_waits_for_the_next_cron_time(
    server: DevServer, qstash: QStash, destination: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once a year: a cron time every minute could come round during the wait below, and fire
    # rightly (it did, in a run that started at second 59.8).
    schedule_id = qstash.schedule.create_json(
        destination=destination.url("/cron"), cron="0 0 1 1 *", body={}
    )
    calls: list[str] = []

    def broken(sid: str, manual: bool) -> list[str]:
        calls.append(sid)
        raise RuntimeError("a bug in the firing")

    monkeypatch.setattr(server.scheduler, "fire", broken)
    now = int(time.time() * 1000)
    server.scheduler.refresh(schedule_id, at_ms=now)
    wait_until(lambda: calls)
    time.sleep(0.3)
    assert calls == [schedule_id]  # not fired again and again in a loop
    (next_at,) = _queued_firings(server, schedule_id)
    assert next_at > now and next_at % 60_000 == 0
