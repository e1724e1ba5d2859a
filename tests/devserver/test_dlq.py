"""The dead-letter queue: list with filters and cursor, get, delete, delete many, retry."""

from __future__ import annotations

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination, Reply, wait_until


def _dead(qstash: QStash, destination: Destination, count: int, path: str = "/dead") -> list[str]:
    destination.reply(path, Reply(404, body=b"404 Not Found"))
    before = len(_all(qstash))
    ids = []
    for i in range(count):
        res = qstash.message.publish_json(
            url=destination.url(path), body={"i": i}, retries=0, label=f"l{i % 2}"
        )
        assert not isinstance(res, list)
        ids.append(res.message_id)
    wait_until(lambda: len(_all(qstash)) >= before + count, what=f"{count} DLQ entries")
    return ids


def _all(qstash: QStash) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = qstash.dlq.list(cursor=cursor, count=100)
        out.extend(m.dlq_id for m in page.messages)
        cursor = page.cursor
        if cursor is None:
            return out


def test_list_pages_with_a_cursor_that_is_omitted_at_the_end(
    qstash: QStash, destination: Destination
) -> None:
    ids = _dead(qstash, destination, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = qstash.dlq.list(cursor=cursor, count=3)
        pages += 1
        seen.extend(m.message_id for m in page.messages)
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    first = qstash.dlq.list(count=100).messages[0]
    assert first.response_status == 404 and first.response_body == "404 Not Found"
    assert first.max_retries == 0


def test_list_filters(qstash: QStash, destination: Destination) -> None:
    ids = _dead(qstash, destination, 4)
    _dead(qstash, destination, 1, path="/elsewhere")
    only = qstash.dlq.list(filter={"message_id": ids[2]}).messages
    assert [m.message_id for m in only] == [ids[2]]
    by_url = qstash.dlq.list(filter={"url": destination.url("/elsewhere")}).messages
    assert len(by_url) == 1
    by_status = qstash.dlq.list(filter={"response_status": 404}).messages
    assert len(by_status) == 5
    assert qstash.dlq.list(filter={"response_status": 500}).messages == []
    assert len(qstash.dlq.list(filter={"label": "l1"}).messages) == 2
    assert len(qstash.dlq.list(filter={"caller_ip": "127.0.0.1"}).messages) == 5
    assert qstash.dlq.list(filter={"from_time": 1, "to_time": 2}).messages == []


def test_get_delete_and_delete_many(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    _dead(qstash, destination, 5)
    dlq_ids = _all(qstash)
    entry = qstash.dlq.get(dlq_ids[0])
    assert entry.dlq_id == dlq_ids[0] and entry.response_status == 404
    qstash.dlq.delete(dlq_ids[0])
    with pytest.raises(QStashError, match="404"):
        qstash.dlq.get(dlq_ids[0])
    with pytest.raises(QStashError, match="404"):
        qstash.dlq.delete(dlq_ids[0])
    assert qstash.dlq.delete_many(dlq_ids[1:3]) == 2
    response = httpx.delete(
        f"{server.url}/v2/dlq",
        params={"dlqIds": dlq_ids[3]},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.json() == {"deleted": 1}
    assert _all(qstash) == [dlq_ids[4]]


def test_retry_from_the_dlq_delivers_again(
    server: DevServer, qstash: QStash, destination: Destination
) -> None:
    _dead(qstash, destination, 1, path="/again")
    (dlq_id,) = _all(qstash)
    destination.reply("/again", Reply(200))
    response = httpx.post(
        f"{server.url}/v2/dlq/retry/{dlq_id}", headers={"Authorization": f"Bearer {server.token}"}
    )
    assert response.status_code == 201
    new_id = response.json()["messageId"]
    got = destination.wait_for(2, "/again")
    assert got[1].headers["Upstash-Message-Id"] == new_id
    assert _all(qstash) == []
