"""Transports carry a recorded job to its execution: through QStash, or in-process."""

from __future__ import annotations

from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_qstash_jobs.conf import get_config
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage

__all__ = ["BaseTransport", "OutgoingMessage", "get_transport"]

#: Short names accepted by ``QSTASH_JOBS["TRANSPORT"]``; anything else is a dotted path.
TRANSPORTS = {
    "qstash": "django_qstash_jobs.transports.qstash.QStashTransport",
    "immediate": "django_qstash_jobs.transports.immediate.ImmediateTransport",
}


@cache
def get_transport() -> BaseTransport:
    """The configured transport; built once and rebuilt when ``QSTASH_JOBS`` changes."""
    config = get_config()
    path = TRANSPORTS.get(config.transport, config.transport)
    try:
        transport_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"QSTASH_JOBS['TRANSPORT'] is {config.transport!r}, which is neither "
            f"{' nor '.join(map(repr, TRANSPORTS))} nor an importable class: {exc}"
        ) from exc
    transport: BaseTransport = transport_class(config)
    return transport
