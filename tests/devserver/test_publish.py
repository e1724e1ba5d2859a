"""Publishing through the official SDK: publish, publish_json, enqueue, batch, URL groups."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from qstash import AsyncQStash, QStash, Receiver
from qstash.errors import QStashError
from qstash.message import BatchResponse, PublishResponse, PublishUrlGroupResponse

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination, Reply


def test_publish_delivers_the_body_byte_for_byte_with_its_content_type(
    qstash: QStash, destination: Destination, receiver: Receiver
) -> None:
    body = "plain text, with ünïcode\n"
    res = qstash.message.publish(
        url=destination.url("/raw"),
        body=body,
        content_type="text/plain; charset=utf-8",
        method="PUT",
    )
    assert isinstance(res, PublishResponse)
    assert res.message_id.startswith("msg_")
    assert res.deduplicated is False
    (got,) = destination.wait_for(1, "/raw")
    assert got.method == "PUT"
    assert got.body == body.encode("utf-8")
    assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert got.headers["Upstash-Message-Id"] == res.message_id
    assert got.headers["Upstash-Retried"] == "0"
    assert got.headers["User-Agent"] == "Upstash-QStash"
    assert got.headers["Upstash-Caller-Ip"] == "127.0.0.1"
    receiver.verify(
        signature=got.headers["Upstash-Signature"],
        body=got.body.decode(),
        url=destination.url("/raw"),
    )


def test_publish_json_forwards_headers_and_keeps_the_destination_query(
    qstash: QStash, destination: Destination, receiver: Receiver
) -> None:
    url = destination.url("/hook?a=1&b=two%20words")
    qstash.message.publish_json(
        url=url,
        body={"k": [1, 2]},
        headers={"X-Custom": "v", "Upstash-Forward-Already": "w"},
        retries=2,
        timeout="5s",
    )
    (got,) = destination.wait_for(1, "/hook")
    assert got.target == "/hook?a=1&b=two%20words"
    assert json.loads(got.body) == {"k": [1, 2]}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Custom"] == "v"
    assert got.headers["Already"] == "w"
    assert not any(name.lower().startswith("upstash-forward") for name in got.headers)
    receiver.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)


def test_message_without_content_type_arrives_without_one(
    qstash: QStash, destination: Destination
) -> None:
    qstash.message.publish(url=destination.url("/bare"), body="x")
    (got,) = destination.wait_for(1, "/bare")
    assert "Content-Type" not in got.headers


def test_delay_and_not_before_are_waited_for(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server(backoff_scale=0.002)  # 60 s -> 120 ms
    client = QStash(server.token, base_url=server.url, retry=False)
    start = time.monotonic()
    client.message.publish_json(url=destination.url("/delayed"), body={}, delay=60)
    # Not-before wins over delay: 30 s away -> 60 ms.
    client.message.publish_json(
        url=destination.url("/nb"), body={}, delay="1h", not_before=int(time.time()) + 30
    )
    destination.wait_for(1, "/nb")
    destination.wait_for(1, "/delayed")
    elapsed = time.monotonic() - start
    assert 0.1 <= elapsed < 5


def test_dedup_id_returns_the_first_message_and_delivers_once(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    first = qstash.message.publish_json(
        url=destination.url("/once"), body={"n": 1}, deduplication_id="order-42"
    )
    second = qstash.message.publish_json(
        url=destination.url("/once"), body={"n": 2}, deduplication_id="order-42"
    )
    assert isinstance(first, PublishResponse) and isinstance(second, PublishResponse)
    assert second.message_id == first.message_id
    assert second.deduplicated is True and first.deduplicated is False
    destination.wait_for(1, "/once")
    assert server.wait_idle()
    assert len(destination.received("/once")) == 1


def test_content_based_dedup_accepts_pythons_true(qstash: QStash, destination: Destination) -> None:
    url = destination.url("/content")
    a = qstash.message.publish_json(url=url, body={"same": 1}, content_based_deduplication=True)
    b = qstash.message.publish_json(url=url, body={"same": 1}, content_based_deduplication=True)
    c = qstash.message.publish_json(url=url, body={"other": 1}, content_based_deduplication=True)
    assert isinstance(a, PublishResponse) and isinstance(b, PublishResponse)
    assert isinstance(c, PublishResponse)
    assert b.message_id == a.message_id and b.deduplicated
    assert c.message_id != a.message_id and not c.deduplicated


def test_enqueue_json_goes_through_a_queue_in_order(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    qstash.queue.upsert("serial", parallelism=1)
    ids = [
        qstash.message.enqueue_json(queue="serial", url=destination.url("/q"), body={"i": i})
        for i in range(5)
    ]
    got = destination.wait_for(5, "/q")
    assert [json.loads(r.body)["i"] for r in got] == list(range(5))
    assert [r.headers["Upstash-Message-Id"] for r in got] == [
        i.message_id for i in ids if not isinstance(i, list)
    ]


def test_queue_with_parallelism_one_waits_for_the_current_message(
    qstash: QStash, destination: Destination, server: DevServer
) -> None:
    # The first message fails twice before it succeeds; the second must not overtake it.
    destination.reply("/fifo", Reply(500), Reply(500), Reply(200))
    qstash.message.enqueue_json(
        queue="strict", url=destination.url("/fifo"), body="first", retries=3
    )
    qstash.message.enqueue_json(queue="strict", url=destination.url("/fifo"), body="second")
    got = destination.wait_for(4, "/fifo")
    assert [json.loads(r.body) for r in got] == ["first", "first", "first", "second"]
    assert qstash.queue.get("strict").parallelism == 1


def test_batch_json_mixes_urls_queues_and_url_groups(
    qstash: QStash, destination: Destination
) -> None:
    qstash.url_group.upsert_endpoints(
        "fanout", [{"url": destination.url("/g1"), "name": "one"}, {"url": destination.url("/g2")}]
    )
    res = qstash.message.batch_json(
        [
            {"url": destination.url("/b1"), "body": {"n": 1}, "headers": {"X-B": "1"}},
            {"url": destination.url("/b2"), "body": {"n": 2}, "queue": "batchq", "delay": "1s"},
            {"url_group": "fanout", "body": {"n": 3}},
        ]
    )
    assert isinstance(res[0], BatchResponse)
    assert isinstance(res[1], BatchResponse)
    assert isinstance(res[2], list) and len(res[2]) == 2
    assert {r.url for r in res[2]} == {destination.url("/g1"), destination.url("/g2")}
    (b1,) = destination.wait_for(1, "/b1")
    assert b1.headers["X-B"] == "1"
    (g1,) = destination.wait_for(1, "/g1")
    assert g1.headers["Upstash-Topic-Name"] == "fanout"
    destination.wait_for(1, "/g2")
    destination.wait_for(1, "/b2")


def test_batch_with_one_bad_element_is_rejected_whole(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    with pytest.raises(QStashError, match="400"):
        qstash.message.batch_json(
            [
                {"url": destination.url("/ok"), "body": 1},
                {"url": destination.url("/bad"), "body": 2, "delay": "soon"},
            ]
        )
    assert server.wait_idle()
    assert destination.received() == []


def test_publish_to_url_group_returns_one_message_per_endpoint(
    qstash: QStash, destination: Destination
) -> None:
    qstash.url_group.upsert_endpoints("grp", [{"url": destination.url("/e1")}])
    qstash.url_group.upsert_endpoints("grp", [{"url": destination.url("/e2"), "name": "two"}])
    res = qstash.message.publish_json(url_group="grp", body={"fan": "out"})
    assert isinstance(res, list)
    assert all(isinstance(r, PublishUrlGroupResponse) for r in res)
    assert sorted(r.url for r in res) == [destination.url("/e1"), destination.url("/e2")]
    destination.wait_for(1, "/e1")
    destination.wait_for(1, "/e2")


def test_async_client_publishes_enqueues_and_reads(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server(backoff_scale=1.0)

    async def scenario() -> tuple[str, str, int]:
        client = AsyncQStash(server.token, base_url=server.url, retry=False)
        res = await client.message.publish_json(
            url=destination.url("/async"), body={"a": 1}, delay="1h"
        )
        assert isinstance(res, PublishResponse)
        message = await client.message.get(res.message_id)
        await client.message.cancel(res.message_id)
        enq = await client.message.enqueue_json(
            queue="aq", url=destination.url("/async-q"), body={"b": 2}
        )
        keys = await client.signing_key.get()
        queues = await client.queue.list()
        assert not isinstance(enq, list)
        return message.url, keys.current, len(queues)

    url, current, queue_count = asyncio.run(scenario())
    assert url == destination.url("/async")
    assert current == server.current_signing_key
    assert queue_count == 1
    destination.wait_for(1, "/async-q")


def test_chunked_request_body_and_config_in_the_query_string(
    server: DevServer, destination: Destination
) -> None:
    url = destination.url("/chunked?keep=me")
    response = httpx.post(
        f"{server.url}/v2/publish/{url}&upstash-retries=0&qstash_token={server.token}",
        content=iter([b"ab", b"cd"]),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    (got,) = destination.wait_for(1, "/chunked")
    assert got.body == b"abcd"
    assert got.target == "/chunked?keep=me"
    qstash = QStash(server.token, base_url=server.url, retry=False)
    created = qstash.log.list(filter={"message_id": response.json()["messageId"]}).logs[-1]
    assert created.max_retries == 0
