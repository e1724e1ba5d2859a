"""Bad input gets a JSON error with the right status, and the server keeps answering."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from django_qstash_jobs.devserver import DevServer

from .conftest import Destination


@pytest.fixture
def http(server: DevServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})


def _still_alive(qstash: QStash) -> None:
    assert qstash.signing_key.get().current.startswith("sig_")


def test_wrong_or_missing_token_is_401(server: DevServer, qstash: QStash) -> None:
    wrong = QStash("not-the-token", base_url=server.url, retry=False)
    with pytest.raises(QStashError, match="401"):
        wrong.signing_key.get()
    response = httpx.get(f"{server.url}/v2/keys")
    assert response.status_code == 401
    assert "error" in response.json()
    token_in_query = httpx.get(f"{server.url}/v2/keys", params={"qstash_token": server.token})
    assert token_in_query.status_code == 200
    _still_alive(qstash)


def test_unknown_path_is_404_and_wrong_method_405(http: httpx.Client, qstash: QStash) -> None:
    response = http.get("/v2/nothing-here")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert http.put("/v2/keys").status_code == 405
    assert http.get("/v2/messages/msg_missing").status_code == 404
    assert http.request("PROPFIND", "/v2/keys").status_code == 405
    _still_alive(qstash)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Upstash-Delay", "soon"),
        ("Upstash-Delay", "-5s"),
        ("Upstash-Timeout", "10 parsecs"),
        ("Upstash-Retries", "many"),
        ("Upstash-Retries", "-1"),
        ("Upstash-Not-Before", "tomorrow"),
        ("Upstash-Method", "BREW"),
        ("Upstash-Retry-Delay", "__import__('os').system('true')"),
        ("Upstash-Retry-Delay", "retried +"),
        ("Upstash-Callback", "ftp://example.com/x"),
        ("Upstash-Content-Based-Deduplication", "maybe"),
        ("Upstash-Flow-Control-Value", "parallelism=zero"),
        ("Upstash-Flow-Control-Value", "speed=9"),
    ],
)
def test_bad_headers_are_400(
    http: httpx.Client, qstash: QStash, destination: Destination, header: str, value: str
) -> None:
    headers = {header: value, "Upstash-Flow-Control-Key": "fk"}
    response = http.post(f"/v2/publish/{destination.url('/x')}", headers=headers)
    assert response.status_code == 400, response.text
    assert header.lower() in response.json()["error"].lower() or "invalid" in response.text
    _still_alive(qstash)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("Upstash-Forward-", "x", "invalid forwarded header name ''"),
        ("Upstash-Forward-X-Trace\n", "x", "invalid forwarded header name"),
        ("Upstash-Forward-X-Trace", "a\nb", "control characters"),
        ("Upstash-Forward-X-Price", "10 €", "only Latin-1 text"),
        ("Upstash-Callback-Forward-X-Trace", "a\rb", "control characters"),
        # qstash-py's callback_headers form, without Forward-: forwarded all the same.
        ("Upstash-Callback-X-Note", "line one\r\nline two", "control characters"),
        ("Upstash-Failure-Callback-X-Note", "10 €", "only Latin-1 text"),
        ("Upstash-Callback-X Note", "x", "invalid forwarded header name"),
    ],
)
def test_a_forwarded_header_no_delivery_could_carry_is_400(
    http: httpx.Client, qstash: QStash, destination: Destination, name: str, value: str, error: str
) -> None:
    # As a batch element's headers, which arrive as JSON: any text gets this far. Let through,
    # every delivery attempt would fail, and only the DLQ would say why.
    element = {"destination": destination.url("/x"), "headers": {name: value}, "body": "{}"}
    response = http.post("/v2/batch", json=[element])
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]
    _still_alive(qstash)


def test_missing_scheme_is_400_with_upstash_message(http: httpx.Client, qstash: QStash) -> None:
    response = http.post("/v2/publish/localhost:8000/hook", content=b"x")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid destination url: endpoint has invalid scheme, add http:// or https://"
    }
    with pytest.raises(QStashError, match="400"):
        qstash.message.publish_json(url="example.com/path", body={})
    _still_alive(qstash)


def test_bad_json_bodies_are_400(http: httpx.Client, qstash: QStash) -> None:
    assert http.post("/v2/batch", content=b"{not json").status_code == 400
    assert http.post("/v2/batch", content=b'{"an": "object"}').status_code == 400
    assert http.post("/v2/batch", content=b'[{"destination": 5}]').status_code == 400
    assert http.post("/v2/queues", content=b"[]").status_code == 400
    assert http.post("/v2/queues", json={"queueName": "q", "parallelism": "x"}).status_code == 400
    assert http.request("DELETE", "/v2/messages", content=b"nope").status_code == 400
    assert http.get("/v2/dlq", params={"count": "lots"}).status_code == 400
    _still_alive(qstash)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v2/batch"), ("POST", "/v2/queues"), ("DELETE", "/v2/messages")]
)
def test_json_nested_deeper_than_the_parser_goes_is_400(
    http: httpx.Client, qstash: QStash, method: str, path: str
) -> None:
    response = http.request(method, path, content=b"[" * 100_000)
    assert response.status_code == 400, response.text
    _still_alive(qstash)


def _element(destination: Destination, changes: dict[str, Any]) -> dict[str, Any]:
    """A batch element to ``destination``, with ``changes`` (headers added to its own)."""
    element: dict[str, Any] = {"destination": destination.url("/x"), "headers": {}, "body": "x"}
    element.update({key: value for key, value in changes.items() if key != "headers"})
    element["headers"].update(changes.get("headers", {}))
    return element


@pytest.mark.parametrize(
    "changes",
    [
        {"body": "\ud800"},
        {"destination": "http://127.0.0.1:9/x\ud800"},
        {"queue": "q\udfff"},
        {"headers": {"Upstash-Callback": "http://127.0.0.1:9/cb\ud800"}},
        {"headers": {"Upstash-Failure-Callback": "http://127.0.0.1:9/cb\ud800"}},
        {"headers": {"Upstash-Deduplication-Id": "id-\ud800"}},
        {"headers": {"Upstash-Label": "label-\ud800"}},
        {"headers": {"Upstash-Flow-Control-Key": "key-\ud800"}},
    ],
    ids=lambda changes: next(iter(changes.get("headers", changes))),
)
def test_text_that_is_not_utf8_in_a_json_body_is_400_and_stores_nothing(
    http: httpx.Client, qstash: QStash, destination: Destination, changes: dict[str, Any]
) -> None:
    # JSON can spell a lone surrogate; no store, header or delivery can carry it. Accepted, it
    # failed the request with a 500, or made a message that failed again on every restart.
    raw = json.dumps([_element(destination, changes)]).encode()
    response = http.post("/v2/batch", content=raw)
    assert response.status_code == 400, response.text
    assert "not valid UTF-8" in response.json()["error"]
    assert qstash.message.cancel_all() == 0
    _still_alive(qstash)


def test_a_surrogate_sent_as_utf8_bytes_or_in_a_filter_is_400(
    http: httpx.Client, qstash: QStash, destination: Destination
) -> None:
    element = json.dumps([_element(destination, {"body": "@"})]).encode()
    encoded_surrogate = element.replace(b"@", "\ud800".encode("utf-8", "surrogatepass"))
    assert http.post("/v2/batch", content=encoded_surrogate).status_code == 400
    assert http.request("DELETE", "/v2/messages", content=b'{"url": "\\ud800"}').status_code == 400
    assert http.request("DELETE", "/v2/dlq", content=b'{"url": "\\ud800"}').status_code == 400
    _still_alive(qstash)


@pytest.mark.parametrize("size", [b"-1", b"+2", b"0x2", b"0_2", b""])
def test_a_chunk_size_that_is_not_hex_digits_is_400_and_closes(
    make_server: Callable[..., DevServer], size: bytes
) -> None:
    # int(..., 16) takes a sign, "0x" and underscores; a negative size read the connection to
    # its end, past the body limit, and answered nothing while the client kept it open.
    server = make_server(max_body_bytes=1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/publish/http://127.0.0.1:9/x HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n{}\r\n0\r\n\r\n"
        )
        sock.settimeout(2.0)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Connection: close" in answer


def test_oversize_body_is_413(
    make_server: Callable[..., DevServer], destination: Destination
) -> None:
    server = make_server(max_body_bytes=1024)
    client = QStash(server.token, base_url=server.url, retry=False)
    with pytest.raises(QStashError, match="413"):
        client.message.publish(url=destination.url("/big"), body="x" * 5000)
    client.message.publish(url=destination.url("/small"), body="x" * 1000)
    destination.wait_for(1, "/small")
    _still_alive(client)


def test_garbage_on_the_socket_does_not_hurt(server: DevServer, qstash: QStash) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    for garbage in (
        b"\x00\x01\x02 nonsense\r\n\r\n",
        b"GET /v2/keys HTTP/9.9\r\n\r\n",
        b"POST /v2/batch HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(4096).startswith(b"HTTP/1.")
    _still_alive(qstash)


def test_numbers_past_what_the_store_holds_are_400(http: httpx.Client, qstash: QStash) -> None:
    # Nanoseconds sent as Upstash-Not-Before by mistake; cursors and dates of 23 digits.
    responses = [
        http.post(
            "/v2/publish/https://example.com/x",
            content=b"{}",
            headers={"Upstash-Not-Before": "1900000000000000000"},
        ),
        http.get("/v2/events", params={"cursor": "9" * 23}),
        http.get("/v2/events", params={"fromDate": "9" * 23}),
        http.post("/v2/topics/team/endpoints", json={"endpoints": [{"url": "https://x.test",
                                                                     "name": {"x": 1}}]}),
    ]  # fmt: skip
    assert [response.status_code for response in responses] == [400] * 4
    assert "out of range" in responses[0].json()["error"]
    _still_alive(qstash)


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
def test_a_publish_whose_body_is_cut_short_publishes_nothing(
    server: DevServer, qstash: QStash, destination: Destination, chunked: bool
) -> None:
    # The client went away mid-body; its SDK retries the whole message, which must then be
    # the only one.
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /v2/publish/{destination.url('/cut')} HTTP/1.1\r\n"
        f"Authorization: Bearer {server.token}\r\n"
    )
    if chunked:
        request = head + "Transfer-Encoding: chunked\r\n\r\n64\r\n" + '{"amount": 10'
    else:
        request = head + "Content-Length: 100\r\n\r\n" + '{"amount": 10'
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request.encode())
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096) == b""  # no answer: there is no one to answer
    assert server.wait_idle()
    assert qstash.message.cancel_all() == 0  # nothing was published
    assert destination.received("/cut") == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "queue name is required"),
        ({"queueName": "q" * 201}, "invalid queue name: 201 characters, at most 200 allowed"),
        ({"queueName": "bad name!"}, "invalid queue name 'bad name!': only alphanumerics"),
    ],
)
def test_a_bad_queue_name_is_named_in_the_error(
    http: httpx.Client, body: dict[str, str], error: str
) -> None:
    response = http.post("/v2/queues/", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
