"""The SQLite file: one connection, one lock, short transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    topic TEXT, endpoint TEXT, queue TEXT, schedule_id TEXT, caller_ip TEXT,
    label TEXT, flow_key TEXT,
    created_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    retried INTEGER NOT NULL DEFAULT 0,
    options TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages(queue);
CREATE TABLE IF NOT EXISTS dlq (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dlq_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    url TEXT NOT NULL,
    topic TEXT, endpoint TEXT, queue TEXT, schedule_id TEXT, caller_ip TEXT,
    label TEXT, flow_key TEXT,
    created_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    failed_ms INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    options TEXT NOT NULL,
    body BLOB NOT NULL,
    response_status INTEGER NOT NULL,
    response_headers TEXT NOT NULL,
    response_body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    cron TEXT NOT NULL,
    options TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    queue TEXT, caller_ip TEXT,
    last_ms INTEGER, next_ms INTEGER,
    last_states TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    parallelism INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    endpoints TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    url TEXT NOT NULL,
    topic TEXT, queue TEXT, schedule_id TEXT, label TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_message ON events(message_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Where:
    """A conjunction of SQL conditions built from API filters (values are bound)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def any_of(self, column: str, values: Sequence[Any]) -> Where:
        """Require ``column`` to equal one of ``values`` (no-op when empty)."""
        if values:
            self.parts.append(f"{column} IN ({','.join('?' * len(values))})")
            self.args.extend(values)
        return self

    def compare(self, column: str, op: str, value: Any) -> Where:
        """Require ``column <op> value`` (no-op when value is None)."""
        if value is not None:
            self.parts.append(f"{column} {op} ?")
            self.args.append(value)
        return self

    def sql(self) -> str:
        """Return ``WHERE ...`` or an empty string."""
        return " WHERE " + " AND ".join(self.parts) if self.parts else ""


def url_host(url: str | None) -> str | None:
    """The host name of a stored URL (lower case, without port), as the SQL ``url_host``."""
    try:
        return urlsplit(url).hostname if url else None
    except ValueError:
        # An exception in an SQL function fails the whole query: a URL that does not split
        # just matches no host.
        return None


def url_path(url: str | None) -> str | None:
    """The path of a stored URL, raw as published, as the SQL ``url_path``."""
    try:
        return urlsplit(url).path if url else None
    except ValueError:
        return None


class Database:
    """The shared connection; every use goes through ``transaction`` or ``read``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        # Filters on parts of a destination URL (bulk cancel's host and path).
        self._conn.create_function("url_host", 1, url_host, deterministic=True)
        self._conn.create_function("url_path", 1, url_path, deterministic=True)
        with self.transaction() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one transaction, committed on success, rolled back on error."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for reads that need no transaction."""
        with self._lock:
            yield self._conn

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
