"""Message get, cancel, cancel many, cancel all."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination


@pytest.fixture
def slow(make_server: Callable[..., DevServer]) -> DevServer:
    """A server whose delays are real, so messages stay pending."""
    return make_server(backoff_scale=1.0)


@pytest.fixture
def pending(slow: DevServer) -> QStash:
    return QStash(slow.token, base_url=slow.url, retry=False)


def _publish(client: QStash, url: str, **kwargs: object) -> str:
    res = client.message.publish_json(url=url, body={"k": "v"}, delay="1h", **kwargs)  # type: ignore[arg-type]
    assert not isinstance(res, list)
    return res.message_id


def test_get_returns_the_message_object(pending: QStash, destination: Destination) -> None:
    url = destination.url("/m?x=1")
    before_ms = int(time.time() * 1000)
    message_id = _publish(
        pending,
        url,
        headers={"X-H": "1"},
        retries=7,
        callback=destination.url("/cb"),
        failure_callback=destination.url("/fcb"),
        retry_delay="1000 * retried",
        label="lbl",
        flow_control={"key": "fk", "parallelism": 2},
    )
    message = pending.message.get(message_id)
    assert message.message_id == message_id
    assert message.url == url
    assert message.method == "POST"
    assert message.max_retries == 7
    assert message.body == '{"k": "v"}'
    assert message.headers == {"Content-Type": ["application/json"], "X-H": ["1"]}
    assert message.callback == destination.url("/cb")
    assert message.failure_callback == destination.url("/fcb")
    assert message.retry_delay_expression == "1000 * retried"
    assert message.label == "lbl"
    assert message.caller_ip == "127.0.0.1"
    assert message.flow_control is not None and message.flow_control.key == "fk"
    assert message.flow_control.parallelism == 2 and message.flow_control.rate is None
    assert before_ms <= message.created_at <= before_ms + 5000
    assert message.not_before >= message.created_at + 3_599_000


def test_cancelled_delayed_message_is_never_delivered(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    # 40 s -> 1 s: time enough to cancel on a loaded machine (50 ms once was not).
    server = make_server(backoff_scale=0.025)
    client = QStash(server.token, base_url=server.url, retry=False)
    res = client.message.publish_json(url=destination.url("/never"), body={}, delay="40s")
    control = client.message.publish_json(url=destination.url("/control"), body={}, delay="60s")
    assert not isinstance(res, list) and not isinstance(control, list)
    client.message.cancel(res.message_id)
    destination.wait_for(1, "/control")
    assert destination.received("/never") == []
    with pytest.raises(QStashError, match="404"):
        client.message.get(res.message_id)
    with pytest.raises(QStashError, match="404"):
        client.message.cancel(res.message_id)
    events = client.log.list(filter={"message_id": res.message_id}).logs
    assert events[0].state.value == "CANCELED"


def test_cancel_many_and_cancel_all(pending: QStash, destination: Destination) -> None:
    ids = [_publish(pending, destination.url(f"/c{i}")) for i in range(5)]
    assert pending.message.cancel_many(ids[:2]) == 2
    assert pending.message.cancel_many([]) == 0
    assert pending.message.cancel_many(["msg_unknown"]) == 0
    assert pending.message.cancel_all() == 3
    assert pending.message.cancel_all() == 0


def test_bulk_cancel_query_form_and_filters(slow: DevServer, destination: Destination) -> None:
    client = QStash(slow.token, base_url=slow.url, retry=False)
    a = _publish(client, destination.url("/a"))
    b = _publish(client, destination.url("/b"))
    c = _publish(client, destination.url("/c"))
    auth = {"Authorization": f"Bearer {slow.token}"}
    response = httpx.delete(f"{slow.url}/v2/messages", params={"messageIds": a}, headers=auth)
    assert response.json() == {"cancelled": 1}
    response = httpx.request(
        "DELETE", f"{slow.url}/v2/messages", json={"url": destination.url("/b")}, headers=auth
    )
    assert response.json() == {"cancelled": 1}
    client.message.get(c)
    with pytest.raises(QStashError):
        client.message.get(b)
