"""Delivery workers: take due messages, call the destination, record the outcome."""

from __future__ import annotations

import base64
import http.client
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from requests.utils import requote_uri

from .defaults import MAX_RESPONSE_BODY_BYTES
from .dispatcher import Job
from .durations import parse_retry_after
from .engine import Engine
from .headers import add_value
from .outcomes import AttemptResult, record_attempt
from .records import MessageRecord
from .signing import sign
from .store_messages import get_message

log = logging.getLogger("django_qstash_jobs.devserver")

_RETRY_AFTER_HEADERS = (
    "Retry-After",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-Requests",
    "X-RateLimit-Reset-Tokens",
)
# Idle keep-alive connections a worker keeps, one per destination scheme, host and port.
_MAX_IDLE_CONNECTIONS = 16
# Errors writing a request on a reused keep-alive connection that the destination had closed
# in the meantime: nothing reached it, so the request is written once more on a fresh one.
# Once the request is written, a lost connection is a failed attempt: the destination may have
# run it (a worker killed mid-request), and sending it again at once would deliver it twice.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
# Methods whose requests carry no ``Content-Length`` when they have no body (as requests did).
_NO_BODY_METHODS = frozenset(("GET", "HEAD"))


def delivery_headers(rec: MessageRecord, signing_key: str) -> dict[str, str]:
    """Headers of one attempt: forwarded ones, then QStash's own (which win)."""
    headers = {name: ", ".join(values) for name, values in rec.options.headers.items()}
    headers["User-Agent"] = "Upstash-QStash"
    headers["Upstash-Message-Id"] = rec.id
    headers["Upstash-Retried"] = str(rec.retried)
    headers["Upstash-Signature"] = sign(signing_key, rec.url, rec.body)
    if rec.schedule_id is not None:
        headers["Upstash-Schedule-Id"] = rec.schedule_id
    if rec.topic is not None:
        headers["Upstash-Topic-Name"] = rec.topic
    if rec.caller_ip:
        headers["Upstash-Caller-Ip"] = rec.caller_ip
    return headers


@dataclass(frozen=True)
class _Target:
    """Where a URL's requests go: connection key, request target and URL credentials."""

    scheme: str
    host: str
    port: int
    path: str
    authorization: str | None


@lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    """Split a destination URL once; requests quoted and authenticated it the same way."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    path = requote_uri(parts.path or "/")
    if parts.query:
        path += "?" + requote_uri(parts.query)
    authorization = None
    if parts.username is not None or parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        token = base64.b64encode(credentials.encode("latin-1")).decode("ascii")
        authorization = f"Basic {token}"
    return _Target(scheme, host, port, path, authorization)


class _Failure(Exception):
    """An attempt that got no usable answer; ``kind`` names it as requests' errors did."""

    def __init__(self, kind: str, detail: object) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Connections:
    """One worker's keep-alive connections, by destination scheme, host and port.

    ``http.client`` on a kept connection costs a fraction of a ``requests`` call, whose
    per-request preparation (cookies, settings merging, URL parsing, urllib3's pool) took
    most of the server's CPU per delivery.
    """

    def __init__(self, ssl_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self._idle: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._ssl_factory = ssl_context or _default_ssl_context
        self._ssl: ssl.SSLContext | None = None

    def take(self, target: _Target) -> tuple[http.client.HTTPConnection, bool]:
        """Return a connection to ``target`` and whether it was used before."""
        conn = self._idle.pop((target.scheme, target.host, target.port), None)
        if conn is not None and not _dropped(conn):
            return conn, True
        if conn is not None:
            conn.close()
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = self._ssl_factory()
            conn = http.client.HTTPSConnection(target.host, target.port, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(target.host, target.port)
        return conn, False

    def give_back(self, target: _Target, conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose last response was read to the end."""
        if conn.sock is None:
            return
        key = (target.scheme, target.host, target.port)
        previous = self._idle.pop(key, None)
        if previous is not None:
            previous.close()
        if len(self._idle) >= _MAX_IDLE_CONNECTIONS:
            oldest = next(iter(self._idle))
            self._idle.pop(oldest).close()
        self._idle[key] = conn

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle.values():
            conn.close()
        self._idle.clear()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the other end (as urllib3 checks before reuse).

    An idle connection has nothing to read: readable means the destination closed it, or sent
    something no request asked for. Either way it is not to be used.
    """
    if conn.sock is None:
        return True
    try:
        readable, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _default_ssl_context() -> ssl.SSLContext:
    # The CA bundle requests used (certifi's), so that https destinations verify as before.
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _read_limited(response: http.client.HTTPResponse, deadline: float) -> tuple[bytes, bool]:
    """Read at most MAX_RESPONSE_BODY_BYTES; return the body and whether it was read whole.

    Read piece by piece whatever the Content-Length, so that the deadline holds for a
    destination that trickles its answer: the socket timeout bounds each wait, not the sum.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read1(65536)
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BODY_BYTES:
            return b"".join(chunks)[:MAX_RESPONSE_BODY_BYTES], False
        if not chunk or response.length == 0:
            break
        if time.monotonic() > deadline:
            raise _Failure("Timeout", "the response took longer than the attempt's timeout")
    if response.length:
        # The connection ended before the Content-Length did (read() says the same).
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    # Before Python 3.12, a response read to its Content-Length with read1() stays open, and its
    # connection refuses the next request (ResponseNotReady); read() of what is left closes it.
    response.read()
    return b"".join(chunks), True


def _write(
    conn: http.client.HTTPConnection,
    method: str,
    target: _Target,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
) -> None:
    """Write one request on ``conn``, connecting it if needed."""
    if conn.sock is None:
        conn.timeout = min(timeout, 10.0)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise _Failure("ConnectTimeout", f"{target.host}:{target.port}: {exc}") from exc
        except ssl.SSLError as exc:
            conn.close()
            raise _Failure("SSLError", exc) from exc
        except OSError as exc:
            conn.close()
            raise _Failure("ConnectionError", f"{target.host}:{target.port}: {exc}") from exc
    assert conn.sock is not None
    conn.sock.settimeout(timeout)
    names = {name.lower() for name in headers}
    conn.putrequest(
        method,
        target.path,
        skip_host="host" in names,
        skip_accept_encoding="accept-encoding" in names,
    )
    for name, value in headers.items():
        conn.putheader(name, value)
    if "accept" not in names:
        conn.putheader("Accept", "*/*")
    if "connection" not in names:
        conn.putheader("Connection", "keep-alive")
    if "content-length" not in names and (body or method not in _NO_BODY_METHODS):
        conn.putheader("Content-Length", str(len(body)))
    # Headers and body leave in one write.
    conn.endheaders(body or None)


def call_destination(
    connections: Connections, rec: MessageRecord, signing_key: str, default_timeout: float
) -> AttemptResult:
    """Make one HTTP attempt and describe its result; never raises for network trouble."""
    timeout = rec.options.timeout if rec.options.timeout else default_timeout
    deadline = time.monotonic() + timeout
    method = rec.options.method
    try:
        target = _target(rec.url)
        headers = delivery_headers(rec, signing_key)
        if target.authorization is not None:
            # Credentials in the URL win over a forwarded Authorization header (names are
            # canonical, so this replaces it).
            headers["Authorization"] = target.authorization
    except ValueError as exc:
        return AttemptResult(status=0, error=f"InvalidURL: {exc}")
    conn, reused = connections.take(target)
    try:
        try:
            _write(conn, method, target, headers, rec.body, timeout)
        except _STALE_CONNECTION_ERRORS:
            if not reused:
                raise
            # The destination closed the idle connection; nothing reached it, so try anew.
            conn.close()
            _write(conn, method, target, headers, rec.body, timeout)
        response = conn.getresponse()
        body, whole = _read_limited(response, deadline)
    except _Failure as exc:
        conn.close()
        return AttemptResult(status=0, error=str(exc))
    except TimeoutError as exc:
        conn.close()
        return AttemptResult(status=0, error=f"ReadTimeout: {target.host}:{target.port}: {exc}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        conn.close()
        return AttemptResult(status=0, error=f"ConnectionError: {type(exc).__name__}: {exc}")
    if whole and not response.will_close:
        connections.give_back(target, conn)
    else:
        conn.close()
    return _result(response, body)


def _result(response: http.client.HTTPResponse, body: bytes) -> AttemptResult:
    out: dict[str, list[str]] = {}
    for name, value in response.msg.items():
        add_value(out, name, value)
    result = AttemptResult(status=response.status, headers=out, body=body)
    if not result.ok:
        result.non_retryable = response.status == 489 and (
            _header(response, "Upstash-NonRetryable-Error").strip().lower() == "true"
        )
        for name in _RETRY_AFTER_HEADERS:
            values = response.msg.get_all(name)
            if values is not None:
                result.retry_after = parse_retry_after(", ".join(values))
                if result.retry_after is not None:
                    break
    return result


def _header(response: http.client.HTTPResponse, name: str) -> str:
    # Repeated headers are joined, as requests' case-insensitive view of them did.
    values = response.msg.get_all(name)
    return ", ".join(values) if values else ""


class DeliveryPool:
    """A fixed set of worker threads, each with its own keep-alive connections."""

    def __init__(self, engine: Engine, workers: int, verbose: bool = False) -> None:
        self.engine = engine
        self.workers = max(1, workers)
        self.verbose = verbose
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        """Start the worker threads."""
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._run, name=f"qstash-dev-delivery-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; wait a little for attempts in progress."""
        self._stopping = True
        self.engine.dispatcher.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _run(self) -> None:
        # No proxy or netrc lookups from the environment: deliveries go to local URLs.
        connections = Connections()
        dispatcher = self.engine.dispatcher
        try:
            while True:
                job = dispatcher.take()
                if job is None:
                    return
                self._attempt(connections, job)
        finally:
            connections.close()

    def _attempt(self, connections: Connections, job: Job) -> None:
        try:
            with self.engine.db.read() as conn:
                rec = get_message(conn, job.id)
            if rec is None:
                self.engine.dispatcher.finish(job, None)
                return
            key = self.engine.keys[0]
            result = call_destination(connections, rec, key, self.engine.config.delivery_timeout)
            if self.verbose:
                log.info(
                    "deliver %s %s -> %s (retried=%s)",
                    rec.options.method,
                    rec.url,
                    result.status or result.error,
                    rec.retried,
                )
            record_attempt(self.engine, job, rec, result)
        except Exception:
            if self._stopping:
                return  # the database is closing; the message stays stored for next time
            # A bug must not kill the worker; the message stays stored and is retried after a
            # restart (its in-memory job is released so the queue it holds moves on).
            log.exception("delivery of %s failed unexpectedly", job.id)
            self.engine.dispatcher.finish(job, None)
