"""Settings for benchmark servers: the test settings, with QStash pointed by the environment."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

QSTASH_JOBS = {
    "TRANSPORT": "qstash",
    "URL": os.environ.get("QSTASH_URL", "http://127.0.0.1:8080"),
    "TOKEN": "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=",
    "CURRENT_SIGNING_KEY": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
    "NEXT_SIGNING_KEY": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",
    "RECEIVER_URL": os.environ.get("QSTASH_RECEIVER_URL", "http://127.0.0.1:8000/jobs/receive/"),
    "LEASE_SECONDS": int(os.environ.get("QSTASH_LEASE_SECONDS", "300")),
}
# Persistent connections, as a production site would run them, checked before each request so
# that a database restart costs one failed request per worker at most.
DATABASES["default"]["CONN_MAX_AGE"] = 600  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
