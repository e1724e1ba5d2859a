"""State lives in SQLite: a restart loses nothing and delivers pending messages once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from qstash import QStash

from django_qstash_jobs.devserver import DevServer
from django_qstash_jobs.devserver.scheduler import Scheduler

from .conftest import Destination, Reply


def test_pending_message_is_delivered_exactly_once_after_a_restart(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    first = make_server(backoff_scale=1.0)
    client = QStash(first.token, base_url=first.url, retry=False)
    res = client.message.publish_json(url=destination.url("/later"), body={"kept": True}, delay=1)
    assert not isinstance(res, list)
    client.queue.upsert("kept-queue", parallelism=3)
    schedule_id = client.schedule.create(destination=destination.url("/s"), cron="0 0 1 1 *")
    db_path = first.db_path
    first.stop()
    assert destination.received("/later") == []

    second = make_server(db_path=db_path)
    (got,) = destination.wait_for(1, "/later")
    assert got.headers["Upstash-Message-Id"] == res.message_id
    assert second.wait_idle()
    time.sleep(0.1)
    assert len(destination.received("/later")) == 1
    client = QStash(second.token, base_url=second.url, retry=False)
    assert client.queue.get("kept-queue").parallelism == 3
    assert client.schedule.get(schedule_id).cron == "0 0 1 1 *"
    second.stop()

    third = make_server(db_path=db_path)
    assert third.wait_idle()
    time.sleep(0.1)
    assert len(destination.received("/later")) == 1


def test_a_retrying_message_keeps_its_attempt_count_across_a_restart(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    destination.reply("/flaky", Reply(500), Reply(200))
    first = make_server(backoff_scale=1.0)
    client = QStash(first.token, base_url=first.url, retry=False)
    client.message.publish_json(url=destination.url("/flaky"), body={}, retry_delay="500")
    destination.wait_for(1, "/flaky")
    db_path = first.db_path
    first.stop()
    make_server(db_path=db_path, backoff_scale=1.0)
    # The retry stored before the restart is picked up from the database when it is due.
    second_attempt = destination.wait_for(2, "/flaky", timeout=5)[1]
    assert second_attempt.headers["Upstash-Retried"] == "1"


def test_a_stored_schedule_that_never_fires_does_not_stop_the_server_starting(
    make_server: Callable[..., DevServer],
    destination: Destination,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As an older version could store it: the scheduler cannot compute its next time.
    first = make_server()
    client = QStash(first.token, base_url=first.url, retry=False)
    kept = client.schedule.create(destination=destination.url("/s"), cron="0 0 1 1 *")
    assert first.engine is not None
    with first.engine.db.transaction() as conn:
        conn.execute("UPDATE schedules SET cron = '0 0 31 2 *' WHERE id = ?", (kept,))
        conn.execute(
            "INSERT INTO schedules SELECT 'other', destination, '0 0 1 1 *', options, body, "
            "created_ms, updated_ms, paused, queue, caller_ip, last_ms, next_ms, last_states, "
            "error FROM schedules WHERE id = ?",
            (kept,),
        )
    db_path = first.db_path
    first.stop()

    second = make_server(db_path=db_path)

    client = QStash(second.token, base_url=second.url, retry=False)
    assert client.schedule.get("other").cron == "0 0 1 1 *"
    assert f"Schedule {kept} is not scheduled: invalid cron expression" in caplog.text


def test_a_server_whose_start_fails_stops_without_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: object) -> None:
        raise RuntimeError("the scheduler could not start")

    monkeypatch.setattr(Scheduler, "start", fail)
    server = DevServer(port=0, db_path=tmp_path / "q.sqlite3")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="could not start"):
        server.start()
    server.stop()
    assert time.monotonic() - started < 5
    # The port and the database were released: a new server starts on the same file.
    monkeypatch.undo()
    DevServer(port=0, db_path=tmp_path / "q.sqlite3").start().stop()
