from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage, storages
from django.test import Client

from tests.signing_helpers import qstash_token


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> FileSystemStorage:
    """The storage reports and exports go to: a temporary MEDIA_ROOT."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MEDIA_URL = "/media/"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    default = storages["default"]
    assert isinstance(default, FileSystemStorage)
    return default


@pytest.fixture
def deliver(client: Client) -> Callable[..., Any]:
    """POST a signed delivery of ``body`` to the receiver, as QStash would."""

    def deliver(
        body: bytes | dict[str, Any],
        /,
        *,
        retried: int = 0,
        message_id: str = "msg_test",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **claims: Any,
    ) -> Any:
        import json

        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = {
            "HTTP_UPSTASH_RETRIED": str(retried),
            "HTTP_UPSTASH_MESSAGE_ID": message_id,
        }
        signature = qstash_token(raw, **claims) if token is None else token
        if signature:
            extra["HTTP_UPSTASH_SIGNATURE"] = signature
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        return client.post("/jobs/receive/", raw, content_type="application/json", **extra)

    return deliver
