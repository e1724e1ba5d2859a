from __future__ import annotations

from django.conf import settings
from django.db import models


class Subscription(models.Model):
    """A user's Stripe customer and plan, kept up to date by the Stripe webhook handlers."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription"
    )
    #: Set when the customer is created in Stripe (at checkout); webhooks find the user by it.
    customer_id = models.CharField(max_length=255, unique=True)
    subscription_id = models.CharField(max_length=255, blank=True)
    plan_name = models.CharField(max_length=200, blank=True)
    #: Stripe's status: active, past_due, canceled...
    status = models.CharField(max_length=32, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.customer_id} ({self.status or 'no subscription'})"
