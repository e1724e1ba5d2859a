"""The seven email templates: each renders subject, text and HTML, and says what it lacks."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from django_qstash_jobs import emails, get_job_execution_by_job_id
from django_qstash_jobs.exceptions import JobValidationError
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.naming import snake_case

pytestmark = pytest.mark.django_db(transaction=True)

#: Each template's helper and the context it needs, with the subject it must produce.
TEMPLATES: dict[str, tuple[Callable[..., str], dict[str, str], str]] = {
    "welcome": (
        emails.send_welcome_email_async,
        {"recipient_name": "John Doe"},
        "Welcome, John Doe!",
    ),
    "passwordReset": (
        emails.send_password_reset_email_async,
        {"recipient_name": "John Doe", "reset_url": "https://example.com/reset/token"},
        "Reset your password",
    ),
    "passwordChanged": (
        emails.send_password_changed_email_async,
        {"recipient_name": "John Doe"},
        "Your password was changed",
    ),
    "emailChange": (
        emails.send_email_change_email_async,
        {
            "recipient_name": "John Doe",
            "new_email": "new@example.com",
            "confirmation_url": "https://example.com/confirm/token",
        },
        "Confirm your new email address",
    ),
    "teamInvitation": (
        emails.send_team_invitation_email_async,
        {
            "inviter_name": "John Doe",
            "organization_name": "Acme Corp",
            "invitation_url": "https://example.com/invite/token",
        },
        "John Doe invited you to join Acme Corp",
    ),
    "subscriptionCreated": (
        emails.send_subscription_created_email_async,
        {
            "recipient_name": "John Doe",
            "plan_name": "Pro Plan",
            "amount": "29.99",
            "dashboard_url": "https://example.com/app/general",
        },
        "Your Pro Plan subscription is active",
    ),
    "paymentFailed": (
        emails.send_payment_failed_email_async,
        {
            "recipient_name": "John Doe",
            "amount_due": "29.99",
            "payment_details_url": "https://example.com/app/settings/billing",
        },
        "Action needed: your payment of 29.99 failed",
    ),
}


def sent_message() -> EmailMultiAlternatives:
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert isinstance(message, EmailMultiAlternatives)
    return message


def html_part(message: EmailMultiAlternatives) -> str:
    (alternative,) = message.alternatives
    assert alternative.mimetype == "text/html"
    assert isinstance(alternative.content, str)
    return alternative.content


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_each_template_renders_subject_text_and_html(template: str) -> None:
    helper, context, subject = TEMPLATES[template]
    job_id = helper({"to": "user@example.com", **context}, {"user_id": 123})

    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.payload["template"] == template
    assert execution.user_id == "123"
    message = sent_message()
    assert message.to == ["user@example.com"]
    assert message.subject == subject
    assert "<" not in message.body  # The plain-text twin has no markup.
    page = html_part(message)
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="en-us" dir="ltr">' in page  # The current language (LANGUAGE_CODE).
    assert f"<title>{html.escape(subject)}</title>" in page
    for value in context.values():
        assert value in message.body, (value, message.body)
        assert html.escape(value) in page, value
    # Every link of the HTML is written out in the text too.
    for value in context.values():
        if value.startswith("https://"):
            assert f'href="{value}"' in page


@pytest.mark.parametrize(
    ("template", "missing"),
    [(template, key) for template, (_, context, _) in TEMPLATES.items() for key in context],
)
def test_a_template_without_a_required_key_is_refused_naming_it(
    template: str, missing: str
) -> None:
    helper, context, _ = TEMPLATES[template]
    incomplete = {key: value for key, value in context.items() if key != missing}

    with pytest.raises(JobValidationError) as caught:
        helper({"to": "user@example.com", **incomplete})

    assert f"data.{missing}: Field required" in str(caught.value)
    assert {error["field"] for error in caught.value.errors} == {f"data.{missing}"}
    assert not JobExecution.objects.exists()
    assert mail.outbox == []


def test_camel_case_keys_of_the_original_api_are_accepted_and_stored_snake_case() -> None:
    job_id = emails.send_team_invitation_email_async(
        {
            "to": "invited@example.com",
            "recipientName": "Jane Doe",
            "inviterName": "John Doe",
            "organizationName": "Acme Corp",
            "invitationUrl": "https://example.com/invite/token",
        },
        {"user_id": 123, "organization_id": 456},
    )

    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None and execution.status == JobStatus.COMPLETED
    assert execution.payload["data"]["invitation_url"] == "https://example.com/invite/token"
    assert "invitationUrl" not in execution.payload["data"]
    assert sent_message().body.startswith("Hi Jane Doe,")


def test_text_is_not_html_escaped_and_html_is() -> None:
    emails.send_welcome_email_async(
        {"to": "user@example.com", "recipient_name": "Zoë O'Brien & <Co>", "product_name": "Ünï"}
    )

    message = sent_message()
    assert message.subject == "Welcome to Ünï, Zoë O'Brien & <Co>!"
    assert "Hi Zoë O'Brien & <Co>," in message.body
    page = html_part(message)
    assert "Zoë O&#x27;Brien &amp; &lt;Co&gt;" in page
    assert "<Co>" not in page


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,hi", "/relative/path"])
def test_links_must_be_http_urls(url: str) -> None:
    with pytest.raises(JobValidationError, match=r"data\.reset_url: Value error, .* http"):
        emails.send_password_reset_email_async(
            {"to": "user@example.com", "recipient_name": "John", "reset_url": url}
        )


@pytest.mark.parametrize(
    ("key", "address"),
    [
        ("new_email", "not an address"),
        ("new_email", "a..b@example.com"),
        ("newEmail", "josé@example.com"),
        ("support_email", "help@@example.com"),
        ("supportEmail", "x" * 243 + "@example.com"),
    ],
)
def test_addresses_in_the_context_are_checked_as_the_recipient_is(key: str, address: str) -> None:
    _, context, _ = TEMPLATES["emailChange"]

    with pytest.raises(JobValidationError) as caught:
        emails.send_email_change_email_async({"to": "user@example.com", **context, key: address})

    assert {error["field"] for error in caught.value.errors} == {f"data.{snake_case(key)}"}
    assert not JobExecution.objects.exists()


def test_optional_context_adds_its_part() -> None:
    emails.send_welcome_email_async(
        {
            "to": "user@example.com",
            "recipient_name": "John",
            "dashboard_url": "https://example.com/app",
        }
    )
    message = sent_message()
    assert "Get started: https://example.com/app" in message.body
    assert ">Get started</a>" in html_part(message)


def test_a_project_template_overrides_the_packaged_one(settings: Any, tmp_path: Path) -> None:
    override = tmp_path / "django_qstash_jobs" / "emails" / "welcome" / "subject.txt"
    override.parent.mkdir(parents=True)
    override.write_text(
        "{% autoescape off %}Hello {{ recipient_name }} from {{ team }}{% endautoescape %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]

    # An extra key is kept, in snake_case, for the project's own templates.
    emails.send_welcome_email_async({"to": "a@example.com", "recipientName": "Ann", "team": "Ops"})

    message = sent_message()
    assert message.subject == "Hello Ann from Ops"
    assert "Hi Ann," in message.body  # The other parts are still the package's.


def test_address_keys_go_to_the_email_and_not_to_the_template() -> None:
    emails.send_welcome_email_async(
        {
            "to": "user@example.com",
            "recipient_name": "John",
            "fromEmail": "hello@example.com",
            "reply_to": ["support@example.com"],
            "bcc": ["audit@example.com"],
        }
    )
    message = sent_message()
    assert message.from_email == "hello@example.com"
    assert message.reply_to == ["support@example.com"]
    assert message.bcc == ["audit@example.com"]
