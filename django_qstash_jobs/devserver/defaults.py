"""Default settings of the local server; they match Upstash's own dev server."""

from __future__ import annotations

# Public, well-known development credentials (Upstash's dev server ships the same ones), so
# that every tool that already knows them works against this server without configuration.
DEFAULT_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="  # noqa: S105
DEFAULT_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEFAULT_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DB_PATH = ".qstash-dev.sqlite3"
DEFAULT_WORKERS = 16
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Upstash uses the plan's maximum response time; a dev box is better served by a short one.
DEFAULT_DELIVERY_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRIES = 3

DEDUP_WINDOW_MS = 10 * 60 * 1000
MAX_BACKOFF_SECONDS = 86400.0
# Bound on what is kept of a destination's response for callbacks, the DLQ and the logs.
MAX_RESPONSE_BODY_BYTES = 1024 * 1024
MAX_EVENTS_KEPT = 100_000
# Bound on a body copied into the event log: a message's, or a destination's response.
MAX_EVENT_BODY_BYTES = 64 * 1024
