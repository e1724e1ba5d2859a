"""Delivery workers: take due messages, call the destination, record the outcome."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .defaults import MAX_RESPONSE_BODY_BYTES
from .dispatcher import Job
from .durations import parse_retry_after
from .engine import Engine
from .headers import canonical
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
# requests adds these to every call; Upstash sends neither, and bodies must stay byte-exact.
_SESSION_DEFAULTS_REMOVED = ("Accept-Encoding",)


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


def _response_headers(raw: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in raw.items():
        out.setdefault(canonical(name), []).append(value)
    return out


def _read_limited(response: requests.Response, deadline: float) -> bytes:
    chunks = []
    size = 0
    for chunk in response.iter_content(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BODY_BYTES:
            break
        if time.monotonic() > deadline:
            # requests' timeout bounds each wait for bytes, not the whole answer.
            raise requests.Timeout("the response took longer than the attempt's timeout")
    return b"".join(chunks)[:MAX_RESPONSE_BODY_BYTES]


def call_destination(
    session: requests.Session, rec: MessageRecord, signing_key: str, default_timeout: float
) -> AttemptResult:
    """Make one HTTP attempt and describe its result; never raises for network trouble."""
    timeout = rec.options.timeout if rec.options.timeout else default_timeout
    deadline = time.monotonic() + timeout
    try:
        response = session.request(
            rec.options.method,
            rec.url,
            data=rec.body,
            headers=delivery_headers(rec, signing_key),
            timeout=(min(timeout, 10.0), timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        return AttemptResult(status=0, error=f"{type(exc).__name__}: {exc}")
    try:
        body = _read_limited(response, deadline)
    except requests.RequestException as exc:
        return AttemptResult(status=0, error=f"{type(exc).__name__}: {exc}")
    finally:
        response.close()
    headers = _response_headers(response.raw.headers)
    result = AttemptResult(status=response.status_code, headers=headers, body=body)
    if not result.ok:
        result.non_retryable = response.status_code == 489 and (
            response.headers.get("Upstash-NonRetryable-Error", "").strip().lower() == "true"
        )
        for name in _RETRY_AFTER_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                result.retry_after = parse_retry_after(value)
                if result.retry_after is not None:
                    break
    return result


class DeliveryPool:
    """A fixed set of worker threads, each with its own pooled ``requests.Session``."""

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
        session = requests.Session()
        # No proxy/netrc lookups from the environment: they cost more than the rest of an
        # attempt, and deliveries of a local server go to local URLs.
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        for name in _SESSION_DEFAULTS_REMOVED:
            session.headers.pop(name, None)
        dispatcher = self.engine.dispatcher
        try:
            while True:
                job = dispatcher.take()
                if job is None:
                    return
                self._attempt(session, job)
        finally:
            session.close()

    def _attempt(self, session: requests.Session, job: Job) -> None:
        try:
            with self.engine.db.read() as conn:
                rec = get_message(conn, job.id)
            if rec is None:
                self.engine.dispatcher.finish(job, None)
                return
            key = self.engine.keys[0]
            result = call_destination(session, rec, key, self.engine.config.delivery_timeout)
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
