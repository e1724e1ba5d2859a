"""State lives in SQLite: a restart loses nothing and delivers pending messages once."""

from __future__ import annotations

import time
from collections.abc import Callable

from qstash import QStash

from django_qstash_jobs.devserver import DevServer

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
