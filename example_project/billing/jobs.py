"""Stripe webhook handlers, run as jobs, and the ``subscriptions`` export.

Stripe posts to ``jobs/webhooks/stripe/``; the endpoint checks the Stripe-Signature, records a
``process_stripe_webhook`` job keyed by the event id and answers 200 at once. The handlers
below run in that job, so Stripe never waits for them, and a failure is retried by QStash.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.urls import reverse

from billing.models import Subscription
from django_qstash_jobs import JobContext, register_export, stripe_handler
from django_qstash_jobs.emails import (
    send_payment_failed_email_async,
    send_subscription_created_email_async,
)
from django_qstash_jobs.jobs.schemas import ProcessStripeWebhookPayload

logger = logging.getLogger("billing")

# Amounts in Stripe are in the currency's smallest unit; these have none (a partial list).
ZERO_DECIMAL_CURRENCIES = {"jpy", "krw", "vnd", "clp", "isk", "ugx"}


def _subscription_for(customer_id: Any) -> Subscription | None:
    subscription = (
        Subscription.objects.select_related("user").filter(customer_id=customer_id).first()
    )
    if subscription is None:
        # Not one of ours (another product on the same Stripe account): nothing to do, and
        # raising would only make QStash retry an event that will never match.
        logger.info("Stripe event for unknown customer %s ignored.", customer_id)
    return subscription


def _amount(cents: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return str(cents)
    return str(Decimal(cents) / 100)


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if isinstance(value, int) else None


def _price(subscription: dict[str, Any]) -> dict[str, Any]:
    items = subscription.get("items", {}).get("data") or [{}]
    price: dict[str, Any] = items[0].get("price") or {}
    return price


def _email_metadata(payload: ProcessStripeWebhookPayload, subscription: Subscription) -> Any:
    # Keyed by the Stripe event: if this job is retried after the email was enqueued, the
    # retry finds the same email job instead of sending a second one.
    return {
        "user_id": subscription.user_id,
        "idempotency_key": f"stripe:{payload.event_id}:email",
    }


def _update(subscription: Subscription, data: dict[str, Any]) -> None:
    subscription.subscription_id = data.get("id", subscription.subscription_id)
    subscription.status = data.get("status", subscription.status)
    subscription.plan_name = _price(data).get("nickname") or subscription.plan_name
    subscription.current_period_end = _timestamp(data.get("current_period_end"))
    subscription.save()


@stripe_handler("customer.subscription.created")
def subscription_created(payload: ProcessStripeWebhookPayload, ctx: JobContext) -> None:
    subscription = _subscription_for(payload.event_data.get("customer"))
    if subscription is None:
        return
    _update(subscription, payload.event_data)
    price = _price(payload.event_data)
    currency = str(price.get("currency", "usd"))
    send_subscription_created_email_async(
        {
            "to": subscription.user.email,
            "recipient_name": subscription.user.get_short_name() or subscription.user.username,
            "product_name": settings.PRODUCT_NAME,
            "plan_name": subscription.plan_name or "your plan",
            "amount": _amount(int(price.get("unit_amount") or 0), currency),
            "currency": currency.upper(),
            "billing_period": (price.get("recurring") or {}).get("interval"),
            "dashboard_url": settings.SITE_URL + reverse("accounts:account"),
        },
        _email_metadata(payload, subscription),
    )


@stripe_handler("customer.subscription.updated")
def subscription_updated(payload: ProcessStripeWebhookPayload, ctx: JobContext) -> None:
    # Stripe does not promise to deliver events in order; a handler that must never go back
    # in time would fetch the subscription from Stripe's API here instead of trusting the event.
    subscription = _subscription_for(payload.event_data.get("customer"))
    if subscription is None:
        return
    _update(subscription, payload.event_data)
    changed = ", ".join(sorted(payload.previous_attributes or {})) or "nothing"
    ctx.set_progress(100, f"{subscription.customer_id}: {subscription.status} ({changed} changed)")


@stripe_handler("invoice.payment_failed")
def payment_failed(payload: ProcessStripeWebhookPayload, ctx: JobContext) -> None:
    invoice = payload.event_data
    subscription = _subscription_for(invoice.get("customer"))
    if subscription is None:
        return
    currency = str(invoice.get("currency", "usd"))
    retry = _timestamp(invoice.get("next_payment_attempt"))
    send_payment_failed_email_async(
        {
            "to": subscription.user.email,
            "recipient_name": subscription.user.get_short_name() or subscription.user.username,
            "product_name": settings.PRODUCT_NAME,
            "amount_due": _amount(int(invoice.get("amount_due") or 0), currency),
            "currency": currency.upper(),
            # Stripe's hosted invoice page lets the customer pay with another card.
            "payment_details_url": invoice.get("hosted_invoice_url")
            or settings.SITE_URL + reverse("accounts:account"),
            "retry_date": retry.strftime("%d %B %Y") if retry else None,
        },
        _email_metadata(payload, subscription),
    )


register_export(
    "subscriptions",
    queryset=lambda: Subscription.objects.all(),
    fields=[
        "customer_id",
        "user__username",
        "user__email",
        "plan_name",
        "status",
        "current_period_end",
        "created_at",
    ],
    filters={"created_after": "created_at__gte", "status": "status"},
)
