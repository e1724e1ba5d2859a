"""``process_webhook`` and ``process_stripe_webhook``: run the handlers registered for an event.

Handlers are job handlers, ``handler(payload, ctx)``, registered with :func:`webhook_handler`
or :func:`stripe_handler`. Providers deliver at least once and a failed job is retried, so a
handler may see an event twice: make it idempotent (the inbound endpoint already drops a
provider's own retries of an event it recorded).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from django.dispatch import Signal

from django_qstash_jobs.context import JobContext
from django_qstash_jobs.jobs.schemas import ProcessStripeWebhookPayload, ProcessWebhookPayload
from django_qstash_jobs.registry import (
    JOB_TYPES,
    function_identity,
    qualified_name,
    register_job,
)

logger = logging.getLogger("django_qstash_jobs")

#: Sent by ``process_webhook`` and ``process_stripe_webhook`` before the handlers run (Stripe
#: events with ``source="stripe"``). Sender: the payload's class. Args: ``source``, ``event``,
#: ``data``, ``payload``, ``ctx``. A receiver that raises fails the attempt, like a handler.
webhook_received = Signal()

WebhookHandler = Callable[[Any, JobContext], Any]
H = TypeVar("H", bound=WebhookHandler)


@dataclass(frozen=True)
class _Registration:
    source: str
    #: An event name or a shell-style pattern (``"customer.subscription.*"``, ``"*"``).
    event: str
    handler: WebhookHandler

    @property
    def name(self) -> str:
        return qualified_name(self.handler)


class WebhookHandlers:
    """Handlers by source and event pattern, run in the order they were registered."""

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._lock = threading.Lock()

    def add(self, source: str, event: str, handler: WebhookHandler) -> None:
        registration = _Registration(source, event, handler)
        with self._lock:
            # A module imported twice registers its handlers again: keep one. Two handlers
            # that only share a name (two lambdas, one method of two instances) both stay.
            identity = function_identity(handler)
            self._registrations = [
                existing
                for existing in self._registrations
                if (existing.source, existing.event, function_identity(existing.handler))
                != (source, event, identity)
            ]
            self._registrations.append(registration)

    def remove(self, handler: WebhookHandler) -> None:
        with self._lock:
            self._registrations = [r for r in self._registrations if r.handler is not handler]

    def matching(self, source: str, event: str) -> list[_Registration]:
        return [
            registration
            for registration in self._registrations
            if registration.source == source and fnmatchcase(event, registration.event)
        ]


#: Handlers of ``process_webhook`` jobs.
webhook_handlers = WebhookHandlers()
#: Handlers of ``process_stripe_webhook`` jobs (their payload has another shape), all under
#: source "stripe".
stripe_handlers = WebhookHandlers()

STRIPE = "stripe"


def webhook_handler(source: str, event: str = "*") -> Callable[[H], H]:
    """Run the decorated function for ``process_webhook`` jobs of ``source`` and ``event``.

    ``event`` may be a pattern: ``"pull_request*"``, or ``"*"`` for every event. The function is
    called as ``handler(payload, ctx)``; ``payload`` has ``.source``, ``.event`` and ``.data``.
    """
    if not source or not event:
        raise ValueError("webhook_handler needs a source and an event.")

    def decorator(handler: H) -> H:
        webhook_handlers.add(source, event, handler)
        return handler

    return decorator


def stripe_handler(event_type: str) -> Callable[[H], H]:
    """Run the decorated function for ``process_stripe_webhook`` jobs of ``event_type``.

    ``event_type`` may be a pattern (``"invoice.*"``). The function is called as
    ``handler(payload, ctx)``; ``payload`` has ``.event_type``, ``.event_data`` (the event's
    ``data.object``), ``.ip_address``, ``.event_id`` and ``.previous_attributes``.
    """
    if not event_type:
        raise ValueError("stripe_handler needs an event type.")

    def decorator(handler: H) -> H:
        stripe_handlers.add(STRIPE, event_type, handler)
        return handler

    return decorator


def _run(
    handlers: WebhookHandlers, source: str, event: str, data: Any, payload: Any, ctx: JobContext
) -> dict[str, Any]:
    registrations = handlers.matching(source, event)
    webhook_received.send(
        sender=type(payload), source=source, event=event, data=data, payload=payload, ctx=ctx
    )
    if not registrations:
        logger.info("No handler for %s webhook event %r.", source, event)
    for registration in registrations:
        registration.handler(payload, ctx)
    return {
        "source": source,
        "event": event,
        "handlers": [registration.name for registration in registrations],
    }


@register_job(JOB_TYPES.PROCESS_WEBHOOK, schema=ProcessWebhookPayload)
def process_webhook(payload: ProcessWebhookPayload, ctx: JobContext) -> dict[str, Any]:
    """Send ``webhook_received`` and run the handlers of the event's source and name."""
    return _run(webhook_handlers, payload.source, payload.event, payload.data, payload, ctx)


@register_job(JOB_TYPES.PROCESS_STRIPE_WEBHOOK, schema=ProcessStripeWebhookPayload)
def process_stripe_webhook(payload: ProcessStripeWebhookPayload, ctx: JobContext) -> dict[str, Any]:
    """Send ``webhook_received`` and run the Stripe handlers of the event's type."""
    return _run(stripe_handlers, STRIPE, payload.event_type, payload.event_data, payload, ctx)
