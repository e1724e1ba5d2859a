"""One helper per email template: enqueue a ``send_email`` job and return its id.

::

    send_welcome_email_async({"to": "user@example.com", "recipient_name": "John Doe"},
                             {"user_id": 123})

The payload holds the address (``to``, and optionally ``from_email``, ``reply_to``, ``cc``,
``bcc``) and the template's context (``recipient_name``, ``reset_url``...); camelCase keys as in
the original API (``recipientName``) are accepted. A missing context key raises
:class:`~django_qstash_jobs.exceptions.JobValidationError` naming it, before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_qstash_jobs.dispatcher import job_dispatcher
from django_qstash_jobs.naming import snake_case
from django_qstash_jobs.options import EnqueueOptions, JobMetadata
from django_qstash_jobs.registry import JOB_TYPES

#: Payload keys that address the email rather than fill its template.
ADDRESS_KEYS = frozenset({"to", "from_email", "reply_to", "cc", "bcc"})

Metadata = JobMetadata | Mapping[str, Any] | None
Options = EnqueueOptions | Mapping[str, Any] | None


def send_templated_email_async(
    template: str, payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Enqueue ``template`` to ``payload["to"]``; every other non-address key is its context."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"The payload must be a dict, not {type(payload).__name__}.")
    job: dict[str, Any] = {"template": template, "data": {}}
    for key, value in payload.items():
        name = snake_case(key)
        if name in ADDRESS_KEYS:
            job[name] = value
        else:
            job["data"][key] = value
    return job_dispatcher.enqueue(JOB_TYPES.SEND_EMAIL, job, metadata, options)


def send_welcome_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Welcome a new user.

    Context: ``recipient_name``; optional ``dashboard_url``.
    """
    return send_templated_email_async("welcome", payload, metadata, options)


def send_password_reset_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Send a password reset link.

    Context: ``recipient_name``, ``reset_url``; optional ``expires_in``.
    """
    return send_templated_email_async("passwordReset", payload, metadata, options)


def send_password_changed_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Confirm a password change.

    Context: ``recipient_name``; optional ``changed_at``, ``support_url``.
    """
    return send_templated_email_async("passwordChanged", payload, metadata, options)


def send_email_change_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Ask to confirm a new email address.

    Context: ``recipient_name``, ``new_email``, ``confirmation_url``.
    """
    return send_templated_email_async("emailChange", payload, metadata, options)


def send_team_invitation_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Invite someone to an organisation.

    Context: ``inviter_name``, ``organization_name``, ``invitation_url``; optional
    ``recipient_name``, ``role``, ``expires_in``.
    """
    return send_templated_email_async("teamInvitation", payload, metadata, options)


def send_subscription_created_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Confirm a new subscription.

    Context: ``recipient_name``, ``plan_name``, ``amount``, ``dashboard_url``; optional
    ``currency``, ``billing_period``.
    """
    return send_templated_email_async("subscriptionCreated", payload, metadata, options)


def send_payment_failed_email_async(
    payload: Mapping[str, Any], metadata: Metadata = None, options: Options = None
) -> str:
    """Tell a customer that a payment failed.

    Context: ``recipient_name``, ``amount_due``, ``payment_details_url``; optional
    ``currency``, ``retry_date``.
    """
    return send_templated_email_async("paymentFailed", payload, metadata, options)
