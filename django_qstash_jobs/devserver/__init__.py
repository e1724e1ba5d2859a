"""A local QStash-compatible server: the official SDK works against it unmodified.

Pure Python (requests, croniter, PyJWT); no Django. Run it with
``python -m django_qstash_jobs.devserver`` or ``manage.py qstash_dev``, or in-process::

    with DevServer(port=0, db_path="/tmp/q.sqlite3", backoff_scale=0) as server:
        QStash(server.token, base_url=server.url).message.publish_json(url=..., body={})
"""

from __future__ import annotations

from .cli import main, run
from .defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
)
from .server import DevServer

__all__ = [
    "DEFAULT_CURRENT_SIGNING_KEY",
    "DEFAULT_NEXT_SIGNING_KEY",
    "DEFAULT_PORT",
    "DEFAULT_TOKEN",
    "DevServer",
    "main",
    "run",
]
