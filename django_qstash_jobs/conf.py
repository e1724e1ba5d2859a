"""Settings: one ``QSTASH_JOBS`` dict with defaults, read through :func:`get_config`.

Settings are never read at import time. The resolved configuration is cached and the cache is
cleared on ``setting_changed``, so ``override_settings(QSTASH_JOBS=...)`` works in tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Defaults of every key ``QSTASH_JOBS`` accepts. Anything else is reported by a system check.
DEFAULTS: dict[str, Any] = {
    "TOKEN": None,
    "URL": "https://qstash.upstash.io",
    "CURRENT_SIGNING_KEY": None,
    "NEXT_SIGNING_KEY": None,
    # The absolute URL QStash delivers to, exactly as published: it is compared with the
    # signature's ``sub`` claim, so a proxy rewriting the scheme or host cannot break it.
    "RECEIVER_URL": None,
    "TRANSPORT": "qstash",
    "DEFAULT_RETRIES": 3,
    "ENQUEUE_ON_COMMIT": True,
    # Leeway, in seconds, for the signature's exp/nbf/iat between QStash's clock and ours.
    "CLOCK_TOLERANCE": 5,
    # How long a claimed job may stay ``running`` before another delivery may take it over.
    # A handler extends its lease each time it reports progress.
    "LEASE_SECONDS": 300,
    # Pending rows younger than this are left to the on-commit publish in flight.
    "REPUBLISH_GRACE_SECONDS": 60,
    # Seconds to wait for QStash on a publish before giving up with EnqueueError.
    "PUBLISH_TIMEOUT": 10.0,
    "SCHEDULES": [],
    "RETENTION_DAYS": 30,
    "STORAGE": "default",
    # CSV text cells that a spreadsheet would run as a formula get a leading apostrophe.
    "CSV_ESCAPE_FORMULAS": True,
    "WEBHOOK_SECRETS": {},
}

#: Keys that fall back to an environment variable when not set in ``QSTASH_JOBS``.
ENVIRONMENT_FALLBACKS: dict[str, str] = {
    "TOKEN": "QSTASH_TOKEN",
    "URL": "QSTASH_URL",
    "CURRENT_SIGNING_KEY": "QSTASH_CURRENT_SIGNING_KEY",
    "NEXT_SIGNING_KEY": "QSTASH_NEXT_SIGNING_KEY",
    "RECEIVER_URL": "QSTASH_RECEIVER_URL",
}


@dataclass(frozen=True)
class JobsConfig:
    """The resolved ``QSTASH_JOBS`` settings."""

    token: str | None
    url: str
    current_signing_key: str | None
    next_signing_key: str | None
    receiver_url: str | None
    transport: str
    default_retries: int
    enqueue_on_commit: bool
    clock_tolerance: int
    lease_seconds: int
    republish_grace_seconds: int
    publish_timeout: float
    schedules: list[dict[str, Any]]
    retention_days: int
    storage: str
    csv_escape_formulas: bool
    webhook_secrets: dict[str, Any]
    #: Keys present in ``QSTASH_JOBS`` that this package does not know (typos, mostly).
    unknown_keys: tuple[str, ...] = field(default=())

    @property
    def signing_keys(self) -> list[str]:
        """The keys a delivery may be signed with, current first."""
        return [key for key in (self.current_signing_key, self.next_signing_key) if key]


def _resolve(user: Any) -> JobsConfig:
    if not isinstance(user, Mapping):
        # Every key is read from it: anything else would fail later, far from the setting.
        raise ImproperlyConfigured(
            f"settings.QSTASH_JOBS must be a dict of settings, not {type(user).__name__}."
        )
    values = dict(DEFAULTS)
    for key, env_name in ENVIRONMENT_FALLBACKS.items():
        from_env = os.environ.get(env_name)
        if from_env:
            values[key] = from_env
    # None means "not set", so that {"URL": os.environ.get("QSTASH_URL")} leaves the environment
    # variable or the default in place instead of publishing to "None".
    values.update((key, value) for key, value in user.items() if value is not None)
    # key=str: a key that is not a string (a typo like {5: ...}) must not break the sort.
    unknown = tuple(sorted((key for key in user if key not in DEFAULTS), key=str))
    # Values of the wrong type are kept as given, never coerced or crashed on here: the system
    # checks name them (a bool("False") would quietly be True).
    schedules = values["SCHEDULES"]
    webhook_secrets = values["WEBHOOK_SECRETS"]
    return JobsConfig(
        token=values["TOKEN"],
        url=str(values["URL"]).rstrip("/"),
        current_signing_key=values["CURRENT_SIGNING_KEY"],
        next_signing_key=values["NEXT_SIGNING_KEY"],
        receiver_url=values["RECEIVER_URL"],
        transport=values["TRANSPORT"],
        default_retries=values["DEFAULT_RETRIES"],
        enqueue_on_commit=values["ENQUEUE_ON_COMMIT"],
        clock_tolerance=values["CLOCK_TOLERANCE"],
        lease_seconds=values["LEASE_SECONDS"],
        republish_grace_seconds=values["REPUBLISH_GRACE_SECONDS"],
        publish_timeout=values["PUBLISH_TIMEOUT"],
        schedules=list(schedules) if isinstance(schedules, (list, tuple)) else schedules,
        retention_days=values["RETENTION_DAYS"],
        storage=values["STORAGE"],
        csv_escape_formulas=values["CSV_ESCAPE_FORMULAS"],
        webhook_secrets=(
            dict(webhook_secrets) if isinstance(webhook_secrets, Mapping) else webhook_secrets
        ),
        unknown_keys=unknown,
    )


@cache
def get_config() -> JobsConfig:
    """Return the resolved settings; cached until ``QSTASH_JOBS`` changes.

    Raises :exc:`ImproperlyConfigured` when ``QSTASH_JOBS`` is not a dict.
    """
    return _resolve(getattr(settings, "QSTASH_JOBS", {}) or {})


@receiver(setting_changed)
def _clear_config_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "QSTASH_JOBS":
        get_config.cache_clear()
        # The transport is built from these settings; a new one must be built too.
        from django_qstash_jobs.transports import get_transport

        get_transport.cache_clear()
