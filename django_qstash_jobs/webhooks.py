"""The inbound webhook endpoint, ``jobs/webhooks/<source>/``: verify, enqueue, answer at once.

A provider's request is verified before its body is parsed, then recorded as a
``process_stripe_webhook`` or ``process_webhook`` job keyed by the provider's event id, so a
provider's retry of an event is acknowledged without being processed twice. The handlers run
later, in the job, so the provider never waits for them (and never times out on them).

Secrets come from ``QSTASH_JOBS["WEBHOOK_SECRETS"]``, one entry per source; a list allows
rotation (every secret is tried)::

    QSTASH_JOBS = {"WEBHOOK_SECRETS": {"stripe": "whsec_...", "github": ["new", "old"]}}

A source without a secret is not served (404): an unauthenticated webhook is never accepted.
Other providers plug in with :func:`register_webhook_provider`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

# Exempt from LoginRequiredMiddleware (Django 5.1+): providers cannot log in.
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from django_qstash_jobs import statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.dispatcher import job_dispatcher
from django_qstash_jobs.exceptions import (
    EnqueueError,
    JobStateError,
    JobValidationError,
    WebhookValidationError,
)
from django_qstash_jobs.models import JobStatus
from django_qstash_jobs.registry import JOB_TYPES

logger = logging.getLogger("django_qstash_jobs.webhooks")
# Named like Django's own loggers for SuspiciousOperation, so existing alerting catches it.
security_logger = logging.getLogger("django.security.WebhookValidationError")


@dataclass(frozen=True)
class InboundEvent:
    """A verified webhook, as the job it becomes."""

    job_type: str
    payload: dict[str, Any]
    #: The provider's id for the event; a second delivery with the same id is not processed.
    event_id: str


class WebhookProvider:
    """Verifies and parses one provider's webhooks. Subclass it to add a provider."""

    def verify(self, request: HttpRequest, secrets: Sequence[str]) -> None:
        """Raise :class:`WebhookValidationError` unless one of ``secrets`` signed the request."""
        raise NotImplementedError

    def parse(self, request: HttpRequest, source: str) -> InboundEvent:
        """The job to enqueue for a verified request."""
        raise NotImplementedError


def _hmac_sha256(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise WebhookValidationError("The webhook body is not JSON.") from None
    if not isinstance(value, dict):
        raise WebhookValidationError("The webhook body is not a JSON object.")
    return value


class StripeProvider(WebhookProvider):
    """Stripe: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``."""

    #: Seconds the signed timestamp may be away from now; Stripe's own libraries use 300.
    tolerance = 300

    def verify(self, request: HttpRequest, secrets: Sequence[str]) -> None:
        timestamp, signatures = self._parse_header(request.headers.get("Stripe-Signature", ""))
        signed = f"{timestamp}.".encode() + request.body
        expected = [_hmac_sha256(secret, signed) for secret in secrets]
        if not any(
            constant_time_compare(candidate, signature)
            for candidate in expected
            for signature in signatures
        ):
            raise WebhookValidationError("The Stripe-Signature does not match.")
        # Checked after the signature, so only a genuine but old request gets here: a replay.
        if abs(time.time() - timestamp) > self.tolerance:
            raise WebhookValidationError("The Stripe-Signature timestamp is too old (replay?).")

    @staticmethod
    def _parse_header(header: str) -> tuple[int, list[str]]:
        timestamp: int | None = None
        signatures = []
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            # isdigit() alone accepts "²" and other digits int() refuses.
            if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
                timestamp = int(value)
            elif key == "v1" and value:
                signatures.append(value)
        if timestamp is None or not signatures:
            raise WebhookValidationError("The Stripe-Signature header is missing or malformed.")
        return timestamp, signatures

    def parse(self, request: HttpRequest, source: str) -> InboundEvent:
        event = _json_object(request.body)
        event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
        if not (isinstance(event_id, str) and event_id and isinstance(event_type, str)):
            raise WebhookValidationError("The Stripe event has no id or type.")
        data = data if isinstance(data, dict) else {}
        event_object = data.get("object")
        return InboundEvent(
            job_type=JOB_TYPES.PROCESS_STRIPE_WEBHOOK,
            payload={
                "event_type": event_type,
                "event_data": event_object if isinstance(event_object, dict) else {},
                "previous_attributes": data.get("previous_attributes"),
                "event_id": event_id,
                # REMOTE_ADDR, not X-Forwarded-For, which any client can write; behind a proxy,
                # set REMOTE_ADDR from the proxy's header in a middleware you trust.
                "ip_address": request.META.get("REMOTE_ADDR") or None,
                **_stripe_event_context(event),
            },
            event_id=event_id,
        )


def _stripe_event_context(event: dict[str, Any]) -> dict[str, Any]:
    """The event's fields a handler needs beside its object: whose it is and when it was made.

    ``account`` tells a Connect platform which connected account (tenant) the event is for;
    ``created`` orders events, which Stripe may deliver out of order. A field of another type
    than Stripe documents is left out rather than failing the event.
    """
    expected = {"account": str, "created": int, "livemode": bool, "api_version": str}
    return {
        name: event[name]
        for name, kind in expected.items()
        # bool is an int: a "created": true is not a time.
        if type(event.get(name)) is kind
    }


class GitHubProvider(WebhookProvider):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""

    def verify(self, request: HttpRequest, secrets: Sequence[str]) -> None:
        scheme, _, signature = request.headers.get("X-Hub-Signature-256", "").partition("=")
        if scheme != "sha256" or not signature:
            raise WebhookValidationError("The X-Hub-Signature-256 header is missing or malformed.")
        if not any(
            constant_time_compare(_hmac_sha256(secret, request.body), signature)
            for secret in secrets
        ):
            raise WebhookValidationError("The X-Hub-Signature-256 does not match.")

    def parse(self, request: HttpRequest, source: str) -> InboundEvent:
        event = request.headers.get("X-GitHub-Event", "")
        if not event:
            raise WebhookValidationError("The X-GitHub-Event header is missing.")
        if request.content_type == "application/x-www-form-urlencoded":
            # GitHub's other content type: the JSON is in the "payload" form field.
            form = parse_qs(request.body.decode("utf-8", "replace"))
            data = _json_object(form.get("payload", [""])[0].encode())
        else:
            data = _json_object(request.body)
        delivery = (
            request.headers.get("X-GitHub-Delivery") or hashlib.sha256(request.body).hexdigest()
        )
        return InboundEvent(
            job_type=JOB_TYPES.PROCESS_WEBHOOK,
            payload={"source": source, "event": event, "data": data},
            event_id=delivery,
        )


#: Source name (the URL's ``<source>``) -> its provider.
PROVIDERS: dict[str, WebhookProvider] = {"stripe": StripeProvider(), "github": GitHubProvider()}


def register_webhook_provider(source: str, provider: WebhookProvider) -> None:
    """Serve ``jobs/webhooks/<source>/`` with ``provider``.

    Its secret comes from ``QSTASH_JOBS["WEBHOOK_SECRETS"][source]``, as for the built-in ones.
    """
    PROVIDERS[source] = provider


def _secrets(source: str) -> list[str]:
    configured = get_config().webhook_secrets.get(source)
    if isinstance(configured, str):
        configured = [configured]
    if not isinstance(configured, (list, tuple)):
        return []
    return [secret for secret in configured if isinstance(secret, str) and secret]


def _idempotency_key(source: str, event_id: str) -> str:
    key = f"webhook:{source}:{event_id}"
    # The column holds 255 characters; a longer id is hashed (still one key per event).
    if len(key) <= 255:
        return key
    return f"webhook:{source}:{hashlib.sha256(key.encode()).hexdigest()}"


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class WebhookView(View):
    """Verify a provider's webhook, record it as a job, and answer 200 before it runs."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, source: str) -> HttpResponse:
        provider = PROVIDERS.get(source)
        secrets = _secrets(source)
        if provider is None or not secrets:
            logger.warning("Webhook for source %r, which has no provider or no secret.", source)
            return JsonResponse({"error": "unknown webhook source"}, status=404)
        try:
            provider.verify(request, secrets)
            event = provider.parse(request, source)
            if not (isinstance(event.event_id, str) and event.event_id):
                # Every later event would be taken for a repeat of the first and dropped.
                raise WebhookValidationError(f"{type(provider).__name__} gave the event no id.")
        except RequestDataTooBig:
            # Django's limit is 2.5 MB by default; GitHub sends up to 25 MB. The provider shows
            # the 413 among its failed deliveries, and this log says what to change.
            logger.error(
                "Refused a %s webhook of %s bytes, over DATA_UPLOAD_MAX_MEMORY_SIZE (%s): raise "
                "that setting to accept such events.",
                source,
                request.META.get("CONTENT_LENGTH"),
                settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            )
            return JsonResponse({"error": "webhook body too large"}, status=413)
        except WebhookValidationError as exc:
            # The reason is for the log only: telling a forger why it failed helps them.
            security_logger.warning("Rejected a %s webhook: %s", source, exc)
            return JsonResponse({"error": "invalid webhook"}, status=400)

        key = _idempotency_key(source, event.event_id)
        job_id: str | None = None
        try:
            job_id = _retry_if_failed(key) or job_dispatcher.enqueue(
                event.job_type, event.payload, {"idempotency_key": key}
            )
        except JobValidationError as exc:
            logger.warning("A %s webhook does not fit its job's payload: %s", source, exc)
            return JsonResponse({"error": "invalid webhook"}, status=400)
        except EnqueueError as exc:
            # The job is recorded and republish_jobs will publish it; a 5xx would only make the
            # provider resend an event that is already ours.
            logger.error("A %s webhook was recorded but not published: %s", source, exc)
            job_id = exc.job_ids[0] if exc.job_ids else job_id
        return JsonResponse({"status": "accepted", "job_id": job_id})


def _retry_if_failed(idempotency_key: str) -> str | None:
    """Run an event's failed job again when the provider sends the event again; its id, if so.

    A provider resends an event it was answered 2xx for only when someone asks it to (Stripe's
    "Resend", GitHub's "Redeliver"), typically once the handler is fixed. Looked up before the
    enqueue, not after: the job of a first delivery may already have failed by then. A
    cancelled job stays cancelled: that was somebody's decision.
    """
    failed = statements.job_rows().filter(idempotency_key=idempotency_key, status=JobStatus.FAILED)
    job_id = failed.values_list("job_id", flat=True).first()
    if job_id is not None:
        with contextlib.suppress(JobStateError):  # another resend retried it first
            job_dispatcher.retry(job_id)
    return job_id


webhook = WebhookView.as_view()
