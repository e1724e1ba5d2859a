"""Delivery outcomes: retries, the DLQ, callbacks, 489, timeouts, signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jwt
from qstash import QStash, Receiver

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination, Received, Reply, wait_until


def _verify(receiver: Receiver, got: Received, url: str) -> None:
    receiver.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)


def test_signature_has_exactly_the_documented_claims(
    qstash: QStash, destination: Destination, server: DevServer
) -> None:
    qstash.message.publish_json(url=destination.url("/claims"), body={"x": 1})
    (got,) = destination.wait_for(1, "/claims")
    token = got.headers["Upstash-Signature"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, server.current_signing_key.encode(), algorithms=["HS256"])
    assert set(claims) == {"iss", "sub", "iat", "exp", "nbf", "jti", "body"}
    assert claims["iss"] == "Upstash"
    assert claims["sub"] == destination.url("/claims")
    assert claims["nbf"] == 0
    assert claims["exp"] == claims["iat"] + 300
    assert claims["iat"] <= time.time()
    assert claims["jti"].startswith("jwt_")
    assert claims["body"].endswith("=")  # padded base64url
    assert base64.urlsafe_b64decode(claims["body"]) == hashlib.sha256(got.body).digest()


def test_failing_destination_is_retried_then_dead_lettered_with_a_failure_callback(
    qstash: QStash, destination: Destination, receiver: Receiver
) -> None:
    destination.reply("/fail", Reply(500, {"X-Why": "down"}, b"boom"))
    url = destination.url("/fail")
    res = qstash.message.publish(
        url=url,
        body="payload",
        content_type="text/plain",
        failure_callback=destination.url("/failed"),
        failure_callback_headers={"Forward-X-Fcb": "yes"},
    )
    attempts = destination.wait_for(4, "/fail")
    assert [a.headers["Upstash-Retried"] for a in attempts] == ["0", "1", "2", "3"]
    signatures = {a.headers["Upstash-Signature"] for a in attempts}
    assert len(signatures) == 4  # a fresh JWT per attempt
    for attempt in attempts:
        _verify(receiver, attempt, url)
    (cb,) = destination.wait_for(1, "/failed")
    _verify(receiver, cb, destination.url("/failed"))
    assert cb.headers["X-Fcb"] == "yes"
    assert cb.headers["Content-Type"] == "application/json"
    payload = json.loads(cb.body)
    assert payload["status"] == 500
    assert base64.b64decode(payload["body"]) == b"boom"
    assert payload["header"]["X-Why"] == ["down"]
    assert payload["retried"] == 3 and payload["maxRetries"] == 3
    assert payload["sourceMessageId"] == res.message_id  # type: ignore[union-attr]
    assert payload["url"] == url and payload["method"] == "POST"
    assert base64.b64decode(payload["sourceBody"]) == b"payload"
    assert payload["sourceHeader"]["Content-Type"] == ["text/plain"]
    assert isinstance(payload["notBefore"], int) and isinstance(payload["createdAt"], int)
    dlq = qstash.dlq.list()
    assert [m.message_id for m in dlq.messages] == [res.message_id]  # type: ignore[union-attr]
    entry = dlq.messages[0]
    assert payload["dlqId"] == entry.dlq_id
    assert entry.response_status == 500
    assert entry.response_body == "boom"
    assert entry.response_headers is not None and entry.response_headers["X-Why"] == ["down"]
    assert entry.body == "payload"
    time.sleep(0.05)
    assert len(destination.received("/fail")) == 4
    assert len(destination.received("/failed")) == 1


def test_non_retryable_489_goes_to_the_dlq_after_one_attempt(
    qstash: QStash, destination: Destination
) -> None:
    destination.reply("/perm", Reply(489, {"Upstash-NonRetryable-Error": "true"}, b"no"))
    res = qstash.message.publish_json(
        url=destination.url("/perm"), body={}, retries=5, failure_callback=destination.url("/fcb")
    )
    destination.wait_for(1, "/fcb")
    entries = wait_until(lambda: qstash.dlq.list().messages, what="dlq entry")
    assert entries[0].message_id == res.message_id  # type: ignore[union-attr]
    assert entries[0].response_status == 489
    assert len(destination.received("/perm")) == 1


def test_plain_489_without_the_header_is_retried(qstash: QStash, destination: Destination) -> None:
    destination.reply("/489", Reply(489), Reply(200))
    qstash.message.publish_json(url=destination.url("/489"), body={}, retries=1)
    destination.wait_for(2, "/489")


def test_callback_after_every_attempt(
    qstash: QStash, destination: Destination, receiver: Receiver
) -> None:
    destination.reply("/flaky", Reply(503), Reply(200, body=b"fine"))
    qstash.message.publish_json(
        url=destination.url("/flaky"),
        body={"v": 1},
        retries=2,
        callback=destination.url("/cb"),
        callback_headers={"X-Cb": "1"},
    )
    callbacks = destination.wait_for(2, "/cb")
    statuses = sorted(json.loads(c.body)["status"] for c in callbacks)
    assert statuses == [200, 503]
    for cb in callbacks:
        _verify(receiver, cb, destination.url("/cb"))
        assert cb.headers["X-Cb"] == "1"
    success = next(json.loads(c.body) for c in callbacks if json.loads(c.body)["status"] == 200)
    assert base64.b64decode(success["body"]) == b"fine"
    assert "dlqId" not in success


def test_retry_after_and_retry_delay_expression_are_honoured(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server(backoff_scale=1.0)
    client = QStash(server.token, base_url=server.url, retry=False)
    destination.reply("/ra", Reply(429, {"Retry-After": "0"}), Reply(200))
    destination.reply("/expr", Reply(500), Reply(200))
    start = time.monotonic()
    client.message.publish_json(url=destination.url("/ra"), body={}, retries=1)
    client.message.publish_json(
        url=destination.url("/expr"), body={}, retries=1, retry_delay="100 * (retried + 1)"
    )
    destination.wait_for(2, "/ra")
    expr = destination.wait_for(2, "/expr")
    assert time.monotonic() - start < 5  # the default backoff would wait 12 s
    assert expr[1].headers["Upstash-Retried"] == "1"


def test_timeout_and_connection_errors_count_as_failures(
    qstash: QStash, destination: Destination
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/nobody"
    res = qstash.message.publish_json(url=dead, body={}, retries=1)
    entries = wait_until(lambda: qstash.dlq.list().messages, what="dlq entry")
    assert entries[0].message_id == res.message_id  # type: ignore[union-attr]
    assert entries[0].response_status == 0


def test_per_attempt_timeout(make_server: Callable[..., DevServer]) -> None:
    # A destination that accepts the connection and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
        server = make_server()
        client = QStash(server.token, base_url=server.url, retry=False)
        client.message.publish_json(url=url, body={}, retries=0, timeout="1s")
        start = time.monotonic()
        entries = wait_until(lambda: client.dlq.list().messages, timeout=10, what="timeout")
        assert time.monotonic() - start < 5
        assert entries[0].url == url


def test_rotated_keys_sign_new_deliveries_and_persist(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server()
    client = QStash(server.token, base_url=server.url, retry=False)
    before = client.signing_key.get()
    rotated = client.signing_key.rotate()
    assert rotated.current == before.next and rotated.next != before.next
    client.message.publish_json(url=destination.url("/rot"), body={})
    (got,) = destination.wait_for(1, "/rot")
    Receiver(rotated.current, rotated.next).verify(
        signature=got.headers["Upstash-Signature"],
        body=got.body.decode(),
        url=destination.url("/rot"),
    )
    db_path = server.db_path
    server.stop()
    again = make_server(db_path=db_path)
    keys = QStash(again.token, base_url=again.url, retry=False).signing_key.get()
    assert (keys.current, keys.next) == (rotated.current, rotated.next)


def _read_request(conn: socket.socket) -> bytes:
    """One whole request from ``conn`` (head and body), or what came before it closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def _stand_in(
    answer: Callable[[socket.socket, list[bytes]], None],
) -> Iterator[tuple[str, list[bytes]]]:
    """A destination of our own: ``answer`` handles each connection it accepts, and adds the
    requests it reads to a list. Yields its base URL and that list."""
    seen: list[bytes] = []

    def accept(listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                answer(conn, seen)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        threading.Thread(target=accept, args=(listener,), daemon=True).start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen


def _answer_then_hang_up(conn: socket.socket, seen: list[bytes]) -> None:
    # Answers the request on a keep-alive connection, then closes it without saying so, as a
    # destination dropping idle connections does.
    request = _read_request(conn)
    if request:
        seen.append(request)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        time.sleep(0.05)


def test_a_kept_connection_closed_by_the_destination_is_reopened(
    make_server: Callable[..., DevServer],
) -> None:
    with _stand_in(_answer_then_hang_up) as (base_url, seen):
        server = make_server(workers=1)
        client = QStash(server.token, base_url=server.url, retry=False)
        for _ in range(3):
            client.message.publish_json(url=f"{base_url}/drops", body={}, retries=0)
            time.sleep(0.2)
        wait_until(lambda: len(seen) >= 3, what="three deliveries")
        assert server.wait_idle()
        # Each attempt found its previous connection closed and succeeded on a new one.
        assert not client.dlq.list().messages
        assert all(b"Upstash-Retried: 0" in request for request in seen)


def _die_reading_the_second(conn: socket.socket, seen: list[bytes]) -> None:
    # The first request on a connection is answered and the connection kept; the second is read
    # whole, then the connection drops without an answer, as when a worker dies mid-request.
    for turn in range(2):
        request = _read_request(conn)
        if not request:
            return
        seen.append(request)
        if turn == 1:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_a_connection_lost_after_the_request_was_sent_is_a_failed_attempt(
    make_server: Callable[..., DevServer],
) -> None:
    with _stand_in(_die_reading_the_second) as (base_url, seen):
        url = f"{base_url}/dies"
        server = make_server(workers=1)
        client = QStash(server.token, base_url=server.url, retry=False)
        client.message.publish_json(url=url, body={"n": 1}, retries=3)
        wait_until(lambda: len(seen) >= 1, what="the first delivery")
        assert server.wait_idle()
        client.message.publish_json(url=url, body={"n": 2}, retries=3)
        wait_until(lambda: len(seen) >= 3, what="the second message, then its retry")
        assert server.wait_idle()
    second = [request for request in seen if request.endswith(b'{"n": 2}')]
    # The destination may have run it: resending at once, as attempt 0 again, would be a
    # duplicate QStash never makes. It is attempt 1, after the failure was recorded.
    assert [re.search(rb"Upstash-Retried: (\d+)", r).group(1) for r in second] == [b"0", b"1"]  # type: ignore[union-attr]


def test_credentials_in_the_url_become_the_one_authorization_header(
    qstash: QStash, destination: Destination
) -> None:
    url = destination.url("/private").replace("http://", "http://ada:s%40cret@")
    qstash.message.publish_json(url=url, body={}, headers={"Authorization": "Bearer forwarded"})
    (got,) = destination.wait_for(1, "/private")
    expected = "Basic " + base64.b64encode(b"ada:s@cret").decode()
    assert got.headers.get_all("Authorization") == [expected]


def _trickle_a_known_length(conn: socket.socket, seen: list[bytes]) -> None:
    # Announces 40 bytes and sends one every 0.2 s: each wait is short, the whole takes 8 s.
    request = _read_request(conn)
    if not request:
        return
    seen.append(request)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        for _ in range(40):
            time.sleep(0.2)
            conn.sendall(b"x")
    except OSError:
        return  # the attempt gave up and closed the connection


def test_a_response_trickled_under_its_content_length_times_out(
    make_server: Callable[..., DevServer],
) -> None:
    with _stand_in(_trickle_a_known_length) as (base_url, seen):
        server = make_server()
        client = QStash(server.token, base_url=server.url, retry=False)
        start = time.monotonic()
        client.message.publish_json(url=f"{base_url}/trickle", body={}, retries=0, timeout="1s")
        entries = wait_until(lambda: client.dlq.list().messages, timeout=15, what="dlq entry")
        assert time.monotonic() - start < 4
        assert entries[0].response_status == 0
        assert len(seen) == 1


def _answer_short_of_the_content_length(conn: socket.socket, seen: list[bytes]) -> None:
    request = _read_request(conn)
    if request:
        seen.append(request)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")


def test_a_response_cut_short_of_its_content_length_is_a_failed_attempt(
    make_server: Callable[..., DevServer],
) -> None:
    with _stand_in(_answer_short_of_the_content_length) as (base_url, seen):
        server = make_server()
        client = QStash(server.token, base_url=server.url, retry=False)
        client.message.publish_json(url=f"{base_url}/short", body={}, retries=0)
        entries = wait_until(lambda: client.dlq.list().messages, what="dlq entry")
        assert entries[0].response_status == 0
        assert len(seen) == 1
