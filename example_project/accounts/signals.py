"""The welcome email, sent when a user is created, whoever creates it (sign-up, admin, shell)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.urls import reverse

from django_qstash_jobs import JOB_TYPES
from django_qstash_jobs.signals import enqueue_on


def welcome_payload(instance: Any, **kwargs: Any) -> dict[str, Any]:
    return {
        "template": "welcome",
        "to": instance.email,
        "data": {
            "recipient_name": instance.get_short_name() or instance.get_username(),
            "product_name": settings.PRODUCT_NAME,
            "dashboard_url": settings.SITE_URL + reverse("accounts:account"),
        },
    }


def connect() -> None:
    # enqueue_on publishes after the transaction commits: a sign-up that rolls back sends
    # nothing, and the job never runs before the user row is visible to the receiver.
    enqueue_on(
        post_save,
        get_user_model(),
        JOB_TYPES.SEND_EMAIL,
        payload=welcome_payload,
        metadata=lambda instance, **kwargs: {"user_id": instance.pk},
        # Only new users, and only those with an address (createsuperuser may leave it blank).
        when=lambda created, instance, **kwargs: created and bool(instance.email),
        dispatch_uid="accounts.welcome_email",
    )
