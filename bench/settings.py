"""Settings for benchmark servers: the test settings, with QStash pointed by the environment."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

QSTASH_JOBS = {
    **QSTASH_JOBS,  # noqa: F405 - the token and signing keys
    "TRANSPORT": "qstash",
    "URL": os.environ.get("QSTASH_URL", "http://127.0.0.1:8080"),
    "RECEIVER_URL": os.environ.get("QSTASH_RECEIVER_URL", "http://127.0.0.1:8000/jobs/receive/"),
    "LEASE_SECONDS": int(os.environ.get("QSTASH_LEASE_SECONDS", "300")),
}
# Persistent connections, as a production site would run them, checked before each request so
# that a database restart costs one failed request per worker at most.
DATABASES["default"]["CONN_MAX_AGE"] = 600  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
