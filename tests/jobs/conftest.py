"""Fixtures of the built-in job type tests: a throw-away storage and email backends."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from tests.jobs import backends


def use_email_backend(settings: Any, backend: str) -> None:
    """Send through ``backend``: MAILERS on Django 6.1+, EMAIL_BACKEND before."""
    if hasattr(mail, "mailers"):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend


@pytest.fixture
def flaky_backend(settings: Any) -> type[backends.FlakyBackend]:
    """An email backend that fails for chosen addresses; see ``FlakyBackend``."""
    use_email_backend(settings, "tests.jobs.backends.FlakyBackend")
    backends.FlakyBackend.reset()
    return backends.FlakyBackend


@pytest.fixture
def esp_backend(settings: Any) -> None:
    """django-anymail's test backend, as a real ESP backend is configured."""
    pytest.importorskip("anymail", reason="django-anymail is not installed")
    use_email_backend(settings, "tests.jobs.esp_backend.EspBackend")
