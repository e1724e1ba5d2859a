"""Core operations shared by the HTTP API, the cron scheduler and the delivery workers."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from . import ids
from .db import Database, Where
from .defaults import (
    DEDUP_WINDOW_MS,
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_DELIVERY_TIMEOUT_SECONDS,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_RETRIES,
    MAX_EVENT_BODY_BYTES,
)
from .destinations import Destination, unknown_group_error
from .dispatcher import Dispatcher, Job, now_ms
from .errors import not_found
from .headers import Headers
from .options import PublishOptions, apply_overrides
from .records import MessageRecord, QueueRecord
from .store_config import get_meta, get_queue, get_topic, list_queues, put_queue, set_meta
from .store_dlq import delete_dlq, get_dlq
from .store_messages import (
    add_event,
    all_messages,
    delete_message,
    find_messages,
    get_dedup,
    get_message,
    insert_message,
    put_dedup,
)


@dataclass
class EngineConfig:
    """Tunables of the server's behaviour (not of its HTTP side)."""

    backoff_scale: float = 1.0
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT_SECONDS
    default_retries: int = DEFAULT_RETRIES
    current_signing_key: str = DEFAULT_CURRENT_SIGNING_KEY
    next_signing_key: str = DEFAULT_NEXT_SIGNING_KEY


@dataclass
class Published:
    """What one publish created: the response to send and the new messages."""

    response: Any
    records: list[MessageRecord]
    deduplicated: bool = False


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def creation_event(rec: MessageRecord) -> dict[str, Any]:
    """The extra fields of a CREATED event."""
    opts = rec.options
    data: dict[str, Any] = {
        "header": opts.headers,
        "method": opts.method,
        "maxRetries": opts.retries,
        "nextDeliveryTime": rec.due_ms,
    }
    if len(rec.body) <= MAX_EVENT_BODY_BYTES:
        data["body"] = b64(rec.body)
    optional = {
        "endpointName": rec.endpoint,
        "callback": opts.callback,
        "failureCallback": opts.failure_callback,
        "callbackHeaders": opts.callback_config.headers or None,
        "failureCallbackHeaders": opts.failure_callback_config.headers or None,
        "timeout": int(opts.timeout * 1000) if opts.timeout is not None else None,
        "retryDelayExpr": opts.retry_delay,
        "retryDelayExpression": opts.retry_delay,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    if opts.flow_control is not None:
        data["flowControlKey"] = opts.flow_control.key
    return data


def store_new(conn: sqlite3.Connection, rec: MessageRecord, now: int) -> None:
    """Store a message that was just created, and log its CREATED event."""
    insert_message(conn, rec)
    add_event(conn, now, "CREATED", rec, creation_event(rec))


class Engine:
    """Publishing, cancelling and re-publishing messages, on top of the store and dispatcher."""

    def __init__(self, db: Database, dispatcher: Dispatcher, config: EngineConfig) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.config = config
        self._keys_lock = threading.Lock()
        self._keys = self._load_keys()

    # -- signing keys ---------------------------------------------------------------------

    def _load_keys(self) -> tuple[str, str]:
        seed = [self.config.current_signing_key, self.config.next_signing_key]
        with self.db.transaction() as conn:
            stored = get_meta(conn, "signing_keys")
            data = json.loads(stored) if stored else None
            # Rotation survives restarts; configuring different keys starts over from them.
            if not data or data.get("seed") != seed:
                data = {"seed": seed, "current": seed[0], "next": seed[1]}
                set_meta(conn, "signing_keys", json.dumps(data))
        return str(data["current"]), str(data["next"])

    @property
    def keys(self) -> tuple[str, str]:
        """The (current, next) signing keys."""
        with self._keys_lock:
            return self._keys

    def rotate_keys(self) -> tuple[str, str]:
        """Make the next key current and draw a new next key."""
        with self._keys_lock, self.db.transaction() as conn:
            current, nxt = self._keys[1], ids.signing_key()
            seed = [self.config.current_signing_key, self.config.next_signing_key]
            value = {"seed": seed, "current": current, "next": nxt}
            set_meta(conn, "signing_keys", json.dumps(value))
            self._keys = (current, nxt)
            return self._keys

    # -- start-up -------------------------------------------------------------------------

    def restore(self) -> int:
        """Hand every stored message to the dispatcher; return how many there were."""
        with self.db.read() as conn:
            queues = list_queues(conn)
            messages = all_messages(conn)
        for queue in queues:
            self.dispatcher.configure_queue(queue.name, queue.parallelism, queue.paused)
        for rec in messages:
            self.track(rec)
        return len(messages)

    def track(self, rec: MessageRecord) -> None:
        """Give a stored message to the dispatcher."""
        job = Job(id=rec.id, seq=rec.seq, due_ms=rec.due_ms, queue=rec.queue, flow=rec.flow_key)
        self.dispatcher.add(job, rec.options.flow_control)

    def commit(self, published: list[Published]) -> None:
        """Make freshly stored messages deliverable (after their transaction committed).

        A queue's gate is not configured here: a new queue's defaults are the dispatcher's, and
        re-applying settings read before the commit could undo a pause made since.
        """
        for item in published:
            for rec in item.records:
                self.track(rec)

    # -- publishing -----------------------------------------------------------------------

    def publish(
        self,
        dest: Destination,
        body: bytes,
        opts: PublishOptions,
        *,
        queue: str | None = None,
        caller_ip: str | None = None,
    ) -> Published:
        """Store and schedule a message (one per endpoint for a URL group)."""
        with self.db.transaction() as conn:
            item = self.publish_in(conn, dest, body, opts, queue=queue, caller_ip=caller_ip)
        self.commit([item])
        return item

    def publish_in(
        self,
        conn: sqlite3.Connection,
        dest: Destination,
        body: bytes,
        opts: PublishOptions,
        *,
        queue: str | None = None,
        caller_ip: str | None = None,
        schedule_id: str | None = None,
    ) -> Published:
        """Publish inside the caller's transaction; call ``commit`` once it is committed."""
        now = now_ms()
        targets = self._targets(conn, dest)
        key = self._dedup_key(dest, body, opts, queue)
        if key is not None:
            existing = get_dedup(conn, key, now)
            if existing is not None:
                return Published(_mark_deduplicated(existing), [], deduplicated=True)
        if queue is not None:
            self._ensure_queue(conn, queue, now)
        not_before_ms, due_ms = self.first_due(opts, now)
        records = []
        for url, topic, endpoint in targets:
            rec = MessageRecord(
                id=ids.message_id(),
                url=url,
                body=body,
                options=opts,
                created_ms=now,
                not_before_ms=not_before_ms,
                due_ms=due_ms,
                topic=topic,
                endpoint=endpoint,
                queue=queue,
                schedule_id=schedule_id,
                caller_ip=caller_ip,
            )
            store_new(conn, rec, now)
            records.append(rec)
        response: Any
        if dest.url is not None:
            response = {"messageId": records[0].id, "url": records[0].url}
        else:
            response = [{"messageId": rec.id, "url": rec.url} for rec in records]
        if key is not None:
            put_dedup(conn, key, response, now + DEDUP_WINDOW_MS)
        return Published(response, records)

    def first_due(self, opts: PublishOptions, now: int) -> tuple[int, int]:
        """Return (reported not-before, actual due time): waits scale, reported times don't."""
        if opts.not_before is not None:
            reported = opts.not_before * 1000
            wait = max(0, reported - now)
        else:
            wait = int(opts.delay * 1000)
            reported = now + wait
        return reported, now + int(wait * self.config.backoff_scale)

    def _targets(
        self, conn: sqlite3.Connection, dest: Destination
    ) -> list[tuple[str, str | None, str | None]]:
        if dest.url is not None:
            return [(dest.url, None, None)]
        topic = get_topic(conn, str(dest.group))
        if topic is None or not topic.endpoints:
            raise unknown_group_error(str(dest.group))
        return [(e["url"], topic.name, e.get("name")) for e in topic.endpoints]

    @staticmethod
    def _dedup_key(
        dest: Destination, body: bytes, opts: PublishOptions, queue: str | None
    ) -> str | None:
        if opts.deduplication_id is not None:
            return "id:" + opts.deduplication_id
        if not opts.content_based_deduplication:
            return None
        digest = hashlib.sha256()
        parts = [dest.text, queue or "", json.dumps(sorted(opts.headers.items()))]
        for part in parts:
            digest.update(part.encode("utf-8") + b"\0")
        digest.update(body)
        return "content:" + digest.hexdigest()

    def _ensure_queue(self, conn: sqlite3.Connection, name: str, now: int) -> None:
        if get_queue(conn, name) is None:
            put_queue(
                conn,
                QueueRecord(name=name, parallelism=1, paused=False, created_ms=now, updated_ms=now),
            )

    # -- cancelling -----------------------------------------------------------------------

    def cancel(self, where: Where, limit: int | None = None) -> int:
        """Cancel pending messages matching ``where``; return how many."""
        now = now_ms()
        with self.db.transaction() as conn:
            cancelled = []
            for message_id in find_messages(conn, where, limit):
                rec = get_message(conn, message_id)
                if rec is not None and delete_message(conn, message_id):
                    add_event(conn, now, "CANCELED", rec, {})
                    cancelled.append(message_id)
        for message_id in cancelled:
            self.dispatcher.cancel(message_id)
        return len(cancelled)

    def cancel_one(self, message_id: str) -> None:
        """Cancel one message, or raise a 404."""
        if not self.cancel(Where().any_of("id", [message_id])):
            raise not_found(f"message {message_id} not found")

    # -- DLQ retry ------------------------------------------------------------------------

    def retry_dlq(self, dlq_ids: list[str], overrides: Headers, strict: bool) -> list[str]:
        """Publish DLQ entries again as new messages and remove them from the DLQ."""
        now = now_ms()
        new_ids = []
        created = []
        with self.db.transaction() as conn:
            for dlq_id in dlq_ids:
                entry = get_dlq(conn, dlq_id)
                if entry is None:
                    if strict:
                        raise not_found(f"dlq message {dlq_id} not found")
                    continue
                old = entry.message
                opts = apply_overrides(copy.deepcopy(old.options), overrides)
                not_before_ms, due_ms = self.first_due(opts, now)
                rec = MessageRecord(
                    id=ids.message_id(),
                    url=old.url,
                    body=old.body,
                    options=opts,
                    created_ms=now,
                    not_before_ms=not_before_ms,
                    due_ms=due_ms,
                    topic=old.topic,
                    endpoint=old.endpoint,
                    queue=old.queue,
                    schedule_id=old.schedule_id,
                    caller_ip=old.caller_ip,
                )
                store_new(conn, rec, now)
                delete_dlq(conn, Where().any_of("dlq_id", [dlq_id]))
                new_ids.append(rec.id)
                created.append(rec)
        self.commit([Published(None, created)])
        return new_ids


def _mark_deduplicated(response: Any) -> Any:
    if isinstance(response, list):
        return [{**item, "deduplicated": True} for item in response]
    return {**response, "deduplicated": True}
