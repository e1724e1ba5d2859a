"""HTTP/1.1 keep-alive plumbing on the standard library's threading server.

Every response leaves in one ``send`` with TCP_NODELAY set: written as two small segments,
headers then body, a keep-alive client waits for a delayed ACK (about 40 ms) on every call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from .errors import ApiError
from .headers import Headers

log = logging.getLogger("django_qstash_jobs.devserver")

# A body over the limit is read and thrown away (so the client gets its 413 instead of a
# broken pipe) unless it is larger than this; then the connection is closed.
_DISCARD_LIMIT = 256 * 1024 * 1024

# A chunk size is hex digits only: int(..., 16) also takes a sign, "0x" and underscores, and a
# negative size would read to the end of the connection, past the body limit.
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")


class _BodyCutShort(Exception):
    """The connection ended before the request's body did."""


@dataclass
class Request:
    """One parsed request; ``path`` and ``query`` are raw (not percent-decoded)."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    client_ip: str
    params: list[tuple[str, str]] = field(default_factory=list)

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def param_list(self, name: str) -> list[str]:
        """Every value of a query parameter, repeated or comma-separated."""
        out: list[str] = []
        for key, value in self.params:
            if key == name:
                out.extend(part for part in value.split(",") if part)
        return out

    def json(self) -> Any:
        """The body parsed as JSON, or a 400."""
        try:
            data = json.loads(self.body)
            _check_encodable(self.body, data)
        except UnicodeEncodeError:
            raise ApiError(400, "request body holds text that is not valid UTF-8") from None
        except (ValueError, RecursionError):
            # RecursionError: nested deeper than the parser goes, which no API call needs.
            raise ApiError(400, "request body is not valid JSON") from None
        return data


def _check_encodable(raw: bytes, data: Any) -> None:
    """Raise UnicodeEncodeError unless every string parsed from ``raw`` can be UTF-8 encoded.

    A JSON escape can spell a lone surrogate ("\\ud800"), which no store, header or delivery
    can carry: refused with the request, it never becomes a message that fails forever.
    """
    if raw.isascii() and b"\\u" not in raw:
        return  # ASCII text without escapes parses to ASCII strings: nothing to look for
    json.dumps(data, ensure_ascii=False).encode("utf-8")


@dataclass
class Response:
    """A response body with its status and content type."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def error_response(status: int, message: str) -> Response:
    """The ``{"error": ...}`` body every failure uses."""
    return json_response({"error": message}, status)


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qstash-dev"
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 300
    server: DevHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Errors found by the base class while parsing (bad request line, huge headers...).
        self.close_connection = True
        try:
            reason = message or HTTPStatus(code).phrase
        except ValueError:
            reason = message or "error"
        self._write(error_response(code, reason))

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            raw_path, _, query = self.path.partition("?")
            if raw_path.startswith(("http://", "https://")):
                # Absolute-form request target (through a proxy): keep only the path.
                raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
            request = Request(
                method=self.command,
                path=raw_path,
                query=query,
                headers=Headers(self.headers.items()),
                body=body,
                client_ip=self.client_address[0] if self.client_address else "",
                params=parse_qsl(query, keep_blank_values=True),
            )
            response = self.server.app(request)
        except _BodyCutShort:
            # The client went away mid-body: nothing to answer, and a message made of part of
            # its body must not be published (its client retries the whole of it).
            self.close_connection = True
            return
        except ApiError as exc:
            response = error_response(exc.status, exc.message)
        except Exception:
            log.exception("unexpected error handling %s %s", self.command, self.path)
            response = error_response(500, "internal server error")
        if self.server.verbose:
            log.info("%s %s -> %s", self.command, self.path, response.status)
        self._write(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def __getattr__(self, name: str) -> Any:
        # Any other method reaches the router too, which answers 405 (or 404) in JSON.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "invalid Content-Length") from None
        if length > limit:
            self._discard(length)
            raise ApiError(413, f"request body too large: limit is {limit} bytes")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise _BodyCutShort
        return body

    def _discard(self, length: int) -> None:
        if length > _DISCARD_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = self._chunk_size(self.rfile.readline(1024))
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > limit:
                self.close_connection = True
                raise ApiError(413, f"request body too large: limit is {limit} bytes")
            part = self.rfile.read(size)
            if len(part) < size:
                raise _BodyCutShort
            parts.append(part)
            self.rfile.readline(1024)
        return b"".join(parts)

    def _chunk_size(self, line: bytes) -> int:
        digits = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(digits):
            self.close_connection = True
            raise ApiError(400, "invalid chunked body")
        return int(digits, 16)

    def _write(self, response: Response) -> None:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        body = b"" if self.command == "HEAD" else response.body
        head = [f"HTTP/1.1 {response.status} {phrase}", f"Date: {self.date_time_string()}"]
        if response.content_type and response.body:
            head.append(f"Content-Type: {response.content_type}")
        head.append(f"Content-Length: {len(response.body)}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


class DevHTTPServer(ThreadingHTTPServer):
    """The listening server: one daemon thread per connection, open sockets tracked."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], app: App, max_body_bytes: int, verbose: bool = False
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket) -> None:
        """Remember an open client connection."""
        with self._connections_lock:
            self._connections.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        """Forget a closed client connection."""
        with self._connections_lock:
            self._connections.discard(sock)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection so its thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client resets and the like are routine for a dev server; real bugs are logged.
        log.debug("connection error from %s", client_address, exc_info=True)
