"""Transports carry a recorded job to its execution: through QStash, or in-process."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_qstash_jobs.conf import get_config
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage

__all__ = ["BaseTransport", "OutgoingMessage", "get_transport", "import_transport_class"]

#: Short names accepted by ``QSTASH_JOBS["TRANSPORT"]``; anything else is a dotted path.
TRANSPORTS = {
    "qstash": "django_qstash_jobs.transports.qstash.QStashTransport",
    "immediate": "django_qstash_jobs.transports.immediate.ImmediateTransport",
}


@cache
def get_transport() -> BaseTransport:
    """The configured transport; built once and rebuilt when ``QSTASH_JOBS`` changes."""
    config = get_config()
    transport: BaseTransport = import_transport_class(config.transport)(config)
    return transport


def import_transport_class(name: Any) -> type[BaseTransport]:
    """The class ``QSTASH_JOBS["TRANSPORT"]`` names, or :exc:`ImproperlyConfigured` saying why not.

    The system checks call it too, so that a path that cannot be imported is reported by
    ``manage.py check`` rather than by the first job.
    """
    if not isinstance(name, str):
        raise ImproperlyConfigured(
            f"QSTASH_JOBS['TRANSPORT'] must be a string, not {type(name).__name__}."
        )
    try:
        imported: Any = import_string(TRANSPORTS.get(name, name))
    # ValueError: a path starting with a dot (".Transport") has an empty module name.
    except (ImportError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"QSTASH_JOBS['TRANSPORT'] is {name!r}, which is neither "
            f"{' nor '.join(map(repr, TRANSPORTS))} nor an importable class: {exc}"
        ) from exc
    # A module or a setting would import too, and only fail when the first job is published.
    if not (isinstance(imported, type) and issubclass(imported, BaseTransport)):
        raise ImproperlyConfigured(
            f"QSTASH_JOBS['TRANSPORT'] is {name!r}, which names {_describe(imported)}, "
            "not a subclass of django_qstash_jobs.transports.BaseTransport."
        )
    return imported


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    return f"a {type(value).__name__}"
