"""Fixtures: the dev server in-process on a free port, an SDK client, a recording destination."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from qstash import QStash, Receiver

from django_qstash_jobs.devserver import DevServer

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@dataclass
class Received:
    """One request the destination got."""

    method: str
    target: str
    headers: Message
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Destination:
    """A real HTTP endpoint that records requests and answers with configured replies."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: dict[str, list[Reply]] = {}
        self._held: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes; without this each reply waits ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(self.command, self.path, self.headers, body)
                with outer._cond:
                    outer.requests.append(received)
                    outer._cond.notify_all()
                    held = outer._held.get(received.path)
                if held is not None:
                    held.wait(10)
                reply = outer._reply_for(received.path)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    def reply(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with ``replies`` in turn; the last one repeats."""
        with self._cond:
            self._replies[path] = list(replies)

    def hold(self, path: str) -> threading.Event:
        """Keep requests to ``path`` waiting (recorded, unanswered) until the event is set."""
        event = threading.Event()
        with self._cond:
            self._held[path] = event
        return event

    def _reply_for(self, path: str) -> Reply:
        with self._cond:
            replies = self._replies.get(path)
            if not replies:
                return Reply()
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def received(self, path: str | None = None) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Received]:
        """Wait until ``count`` requests (to ``path``) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests if path is None or r.path == path]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} requests to {path or 'any path'}, got {len(found)}"
                    )
                self._cond.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def destination() -> Iterator[Destination]:
    dest = Destination()
    yield dest
    dest.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., DevServer]]:
    """Start dev servers (stopped at the end); defaults: free port, tmp db, no backoff."""
    started: list[DevServer] = []

    def make(**kwargs: Any) -> DevServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("db_path", tmp_path / "qstash.sqlite3")
        kwargs.setdefault("backoff_scale", 0.0)
        kwargs.setdefault("workers", 4)
        server = DevServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., DevServer]) -> DevServer:
    return make_server()


@pytest.fixture
def qstash(server: DevServer) -> QStash:
    return QStash(server.token, base_url=server.url, retry=False)


@pytest.fixture
def receiver(server: DevServer) -> Receiver:
    return Receiver(
        current_signing_key=server.current_signing_key, next_signing_key=server.next_signing_key
    )
