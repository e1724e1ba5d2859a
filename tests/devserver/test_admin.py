"""Queues, URL groups, signing keys and logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError
from qstash.log import LogState

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination, Reply, wait_until


def test_queue_crud_pause_and_resume(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server()
    client = QStash(server.token, base_url=server.url, retry=False)
    client.queue.upsert("q1", parallelism=2)
    queue = client.queue.get("q1")
    assert (queue.name, queue.parallelism, queue.paused, queue.lag) == ("q1", 2, False, 0)
    assert queue.created_at <= queue.updated_at
    client.queue.pause("q1")
    client.message.enqueue_json(queue="q1", url=destination.url("/held"), body={})
    time.sleep(0.1)
    assert destination.received("/held") == []
    held = client.queue.get("q1")
    assert held.paused is True and held.lag == 1
    client.queue.resume("q1")
    destination.wait_for(1, "/held")
    wait_until(lambda: client.queue.get("q1").lag == 0, what="queue drained")
    client.queue.upsert("q2")
    assert [q.name for q in client.queue.list()] == ["q1", "q2"]
    client.queue.delete("q2")
    with pytest.raises(QStashError, match="404"):
        client.queue.get("q2")
    with pytest.raises(QStashError, match="400"):
        client.queue.upsert("bad name!")


def test_a_pause_made_while_a_message_is_enqueued_holds(
    make_server: Callable[..., DevServer],
    destination: Destination,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_server()
    client = QStash(server.token, base_url=server.url, retry=False)
    client.queue.upsert("q1")
    engine_commit = server.engine.commit

    def paused_meanwhile(published: list[Any]) -> None:
        # The pause lands after the publish's transaction, before its messages are handed on.
        client.queue.pause("q1")
        engine_commit(published)

    monkeypatch.setattr(server.engine, "commit", paused_meanwhile)
    client.message.enqueue_json(queue="q1", url=destination.url("/held"), body={})
    time.sleep(0.2)
    assert destination.received("/held") == []
    assert client.queue.get("q1").paused is True
    monkeypatch.undo()
    client.queue.resume("q1")
    destination.wait_for(1, "/held")


def test_a_queue_deleted_while_delivering_comes_back_with_new_settings(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server()
    client = QStash(server.token, base_url=server.url, retry=False)
    client.queue.upsert("q1", parallelism=2)
    release = destination.hold("/slow")
    client.message.enqueue_json(queue="q1", url=destination.url("/slow"), body={})
    destination.wait_for(1, "/slow")  # in flight
    client.queue.pause("q1")
    client.queue.delete("q1")

    client.message.enqueue_json(queue="q1", url=destination.url("/after"), body={})

    queue = client.queue.get("q1")
    assert (queue.paused, queue.parallelism) == (False, 1)
    release.set()
    destination.wait_for(1, "/after")  # not held by the deleted queue's pause


def test_url_groups(qstash: QStash, destination: Destination) -> None:
    qstash.url_group.upsert_endpoints(
        "team", [{"url": destination.url("/a"), "name": "a"}, {"url": destination.url("/b")}]
    )
    group = qstash.url_group.get("team")
    assert group.name == "team"
    assert [(e.url, e.name) for e in group.endpoints] == [
        (destination.url("/a"), "a"),
        (destination.url("/b"), None),
    ]
    qstash.url_group.remove_endpoints("team", [{"name": "a"}])
    assert [e.url for e in qstash.url_group.get("team").endpoints] == [destination.url("/b")]
    assert [g.name for g in qstash.url_group.list()] == ["team"]
    qstash.url_group.delete("team")
    qstash.url_group.delete("never-existed")
    with pytest.raises(QStashError, match="404"):
        qstash.url_group.get("team")
    with pytest.raises(QStashError, match="404"):
        qstash.message.publish_json(url_group="team", body={})


def test_signing_keys_default_to_upstash_dev_keys(qstash: QStash) -> None:
    keys = qstash.signing_key.get()
    assert keys.current == "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
    assert keys.next == "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


def test_logs_follow_a_message_and_page(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    destination.reply("/logged", Reply(500), Reply(200))
    res = qstash.message.publish_json(
        url=destination.url("/logged"), body={}, retries=1, retry_delay="0"
    )
    assert not isinstance(res, list)
    destination.wait_for(2, "/logged")

    def states() -> list[str]:
        logs = qstash.log.list(filter={"message_id": res.message_id}).logs
        return [log.state.value for log in reversed(logs)]

    assert wait_until(lambda: states() == ["CREATED", "ERROR", "RETRY", "DELIVERED"] and True)
    logs = qstash.log.list(filter={"message_id": res.message_id}).logs
    assert all(log.url == destination.url("/logged") for log in logs)
    created = logs[-1]
    assert created.max_retries == 1 and created.retry_delay_expression == "0"
    error = next(log for log in logs if log.state is LogState.ERROR)
    assert error.response_status == 500
    in_progress = qstash.log.list(
        filter={"message_ids": [res.message_id], "state": LogState.IN_PROGRESS}
    ).logs
    assert {log.state for log in in_progress} == {LogState.ERROR, LogState.RETRY}
    page = qstash.log.list(count=2)
    assert len(page.logs) == 2 and page.cursor is not None
    rest = qstash.log.list(cursor=page.cursor, count=1000)
    assert rest.cursor is None
    aliased = httpx.get(
        f"{server.url}/v2/logs", headers={"Authorization": f"Bearer {server.token}"}
    )
    assert len(aliased.json()["logs"]) == 4


def test_flow_control_through_the_sdk(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server(backoff_scale=1.0)
    client = QStash(server.token, base_url=server.url, retry=False)
    release = destination.hold("/fc")
    for i in range(3):
        client.message.publish_json(
            url=destination.url("/fc"),
            body={"i": i},
            flow_control={"key": "tenant-1", "parallelism": 1, "rate": 10, "period": 1},
        )
    destination.wait_for(1, "/fc")
    wait_until(lambda: client.flow_control.get("tenant-1").wait_list_size == 2, what="two waiting")
    info = client.flow_control.get("tenant-1")
    assert info.parallelism_max == 1 and info.parallelism_count == 1 and info.rate_max == 10
    time.sleep(0.05)
    assert len(destination.received("/fc")) == 1  # the others wait for the slot
    client.flow_control.pause("tenant-1")
    assert client.flow_control.get("tenant-1").is_paused
    client.flow_control.resume("tenant-1")
    release.set()
    destination.wait_for(3, "/fc")
    with pytest.raises(QStashError, match="404"):
        client.flow_control.get("nobody")
