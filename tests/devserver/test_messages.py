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


@pytest.mark.parametrize("form", ["query", "body"])
@pytest.mark.parametrize(
    ("name", "value", "remaining"),
    [("host", "127.0.0.1", {"other-host"}), ("path", "/gone", {"other-path"})],
)
def test_bulk_cancel_by_host_or_path_cancels_only_the_matching_messages(
    pending: QStash,
    slow: DevServer,
    destination: Destination,
    form: str,
    name: str,
    value: str,
    remaining: set[str],
) -> None:
    urls = {
        "other-host": "http://example.org/gone",
        "other-path": destination.url("/kept"),
        "both": destination.url("/gone"),
    }
    ids = {key: _publish(pending, url) for key, url in urls.items()}
    auth = {"Authorization": f"Bearer {slow.token}"}
    if form == "query":
        response = httpx.delete(f"{slow.url}/v2/messages", params={name: value}, headers=auth)
    else:
        response = httpx.request(
            "DELETE", f"{slow.url}/v2/messages", json={name: [value]}, headers=auth
        )
    assert response.json() == {"cancelled": 2}
    still_pending = {key for key, message_id in ids.items() if _is_pending(pending, message_id)}
    assert still_pending == remaining


def _is_pending(client: QStash, message_id: str) -> bool:
    try:
        client.message.get(message_id)
    except QStashError:
        return False
    return True


def test_bulk_cancel_by_host_ignores_case_and_port(
    pending: QStash, slow: DevServer, destination: Destination
) -> None:
    _publish(pending, destination.url("/a"))
    _publish(pending, "http://LOCALHOST:8000/b")
    response = httpx.delete(
        f"{slow.url}/v2/messages",
        params={"host": "LocalHost"},
        headers={"Authorization": f"Bearer {slow.token}"},
    )
    assert response.json() == {"cancelled": 1}


@pytest.mark.parametrize(
    ("params", "body", "error"),
    [
        ({"urlPrefix": "http://x"}, None, "unknown filter 'urlPrefix'"),
        (None, {"hostname": "x"}, "unknown filter 'hostname'"),
        ({"count": "-1"}, None, "invalid count"),
        (None, {"count": -1}, "invalid count"),
    ],
)
def test_bulk_cancel_with_an_unknown_filter_or_a_negative_count_is_400(
    pending: QStash,
    slow: DevServer,
    destination: Destination,
    params: dict[str, str] | None,
    body: dict[str, object] | None,
    error: str,
) -> None:
    # An unknown filter read as no filter, or a negative count as no limit, would cancel all.
    message_id = _publish(pending, destination.url("/stays"))
    response = httpx.request(
        "DELETE",
        f"{slow.url}/v2/messages",
        params=params,
        json=body,
        headers={"Authorization": f"Bearer {slow.token}"},
    )
    assert response.status_code == 400
    assert error in response.json()["error"]
    pending.message.get(message_id)
