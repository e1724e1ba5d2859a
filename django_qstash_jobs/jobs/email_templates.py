"""The seven email templates: the context each one needs, and rendering subject, text and HTML.

Templates live under ``django_qstash_jobs/emails/<name>/`` (``subject.txt``, ``body.txt``,
``body.html``), so a project overrides one by putting a file at the same path in its own
templates directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from email.headerregistry import AddressHeader
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.template.loader import render_to_string
from django.utils.translation import get_language
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from django_qstash_jobs.naming import snake_case

_validate_url = URLValidator(schemes=["http", "https"])
_BLANK_LINES = re.compile(r"\n{3,}")
#: The longest address SMTP carries (RFC 5321's 256-character path less its angle brackets);
#: also the length of ``EmailDelivery.recipient``.
MAX_ADDRESS_LENGTH = 254


def _http_url(value: str) -> str:
    # Only http(s): a ``javascript:`` or ``data:`` link in an email is never legitimate.
    value = value.strip()
    try:
        _validate_url(value)
    except DjangoValidationError:
        raise ValueError(f"{value!r} is not an http(s) URL") from None
    return value


def check_address(value: str) -> str:
    """``value`` without surrounding blanks, if Django's SMTP backend can send to it.

    The rules of its ``prep_address``: one bare address the parser reads without a defect
    (``a..b@`` and ``a,b@`` have one), an ASCII local part, a domain IDNA can encode. An address
    accepted at enqueue is then never refused for its form when the job runs. Raises ValueError.
    """
    value = value.strip()
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"An email address has at most {MAX_ADDRESS_LENGTH} characters.")
    envelope = envelope_address(value)
    if envelope is None:
        raise ValueError(f"{value!r} is not an email address")
    if len(envelope) > MAX_ADDRESS_LENGTH:
        raise ValueError(
            f"{value!r} is longer than {MAX_ADDRESS_LENGTH} characters once its domain is encoded"
        )
    return value


def envelope_address(value: str) -> str | None:
    """The ASCII address an SMTP server is given for ``value``; None if it has none."""
    parsed = AddressHeader.value_parser(value)
    if parsed.all_defects or len(parsed.all_mailboxes) != 1:
        return None
    mailbox = parsed.all_mailboxes[0]
    # A display name, a comment or blanks make addr_spec differ: only the bare address is one.
    if mailbox.addr_spec != value or not mailbox.local_part.isascii():
        return None
    try:
        domain = mailbox.domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    # A domain without a dot ("user@localhost") is a typo far more often than an address.
    if "." not in domain:
        return None
    return f"{value.rpartition('@')[0]}@{domain}"


def _snake(key: Any) -> Any:
    return snake_case(key) if isinstance(key, str) else key


def _money(value: Any) -> Any:
    # "29.99" in the original API; a number is accepted and shown as written.
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return str(value)
    return value


#: An absolute http(s) URL, kept exactly as given.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
#: An address Django can send to (see :func:`check_address`).
EmailAddress = Annotated[str, AfterValidator(check_address)]
#: An amount as the recipient reads it ("29.99"); numbers are accepted.
Money = Annotated[str, BeforeValidator(_money), Field(min_length=1, max_length=50)]


class EmailContext(BaseModel):
    """What every template may use. Keys may be snake_case or camelCase.

    Extra keys are kept (a project's own templates may use them) and stored as snake_case.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    recipient_name: str = Field(min_length=1, max_length=200)
    #: Shown in the header and footer; without it the emails say nothing about the sender.
    product_name: str | None = Field(default=None, max_length=200)
    support_email: EmailAddress | None = None

    @model_validator(mode="before")
    @classmethod
    def _snake_case_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {_snake(key): value for key, value in data.items()}
        return data


class WelcomeContext(EmailContext):
    #: Where the "Get started" button leads; no button without it.
    dashboard_url: HttpUrl | None = None


class PasswordResetContext(EmailContext):
    reset_url: HttpUrl
    #: How long the link works, in words ("1 hour").
    expires_in: str | None = None


class PasswordChangedContext(EmailContext):
    #: When it happened, as the recipient should read it.
    changed_at: str | None = None
    #: Where to go if the recipient did not change it (e.g. the password reset page).
    support_url: HttpUrl | None = None


class EmailChangeContext(EmailContext):
    new_email: EmailAddress
    confirmation_url: HttpUrl


class TeamInvitationContext(EmailContext):
    # The invitee may have no account, hence no name, yet.
    recipient_name: str = Field(default="", max_length=200)
    inviter_name: str = Field(min_length=1, max_length=200)
    organization_name: str = Field(min_length=1, max_length=200)
    invitation_url: HttpUrl
    role: str | None = None
    expires_in: str | None = None


class SubscriptionCreatedContext(EmailContext):
    plan_name: str = Field(min_length=1, max_length=200)
    amount: Money
    dashboard_url: HttpUrl
    #: Shown after the amount ("USD", "EUR"...).
    currency: str | None = None
    #: "month", "year"...: the amount is shown "per month".
    billing_period: str | None = None


class PaymentFailedContext(EmailContext):
    amount_due: Money
    payment_details_url: HttpUrl
    currency: str | None = None
    #: When the payment is tried again, as the recipient should read it.
    retry_date: str | None = None


#: Each template's name and the schema of its context.
EMAIL_CONTEXTS: dict[str, type[EmailContext]] = {
    "welcome": WelcomeContext,
    "passwordReset": PasswordResetContext,
    "passwordChanged": PasswordChangedContext,
    "emailChange": EmailChangeContext,
    "teamInvitation": TeamInvitationContext,
    "subscriptionCreated": SubscriptionCreatedContext,
    "paymentFailed": PaymentFailedContext,
}


def validate_context(template: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check ``data`` against the template's schema; return it with snake_case keys.

    Raises pydantic's ``ValidationError`` naming each missing or invalid key.
    """
    return EMAIL_CONTEXTS[template].model_validate(data).model_dump(mode="json")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def template_directory(template: str) -> str:
    """``passwordReset`` -> ``django_qstash_jobs/emails/password_reset``."""
    return f"django_qstash_jobs/emails/{snake_case(template)}"


def render_email(template: str, context: dict[str, Any]) -> RenderedEmail:
    """Render the template's subject, plain-text and HTML parts.

    ``context`` is what :func:`validate_context` returned (``SendEmailPayload`` calls it).
    """
    context = dict(context)
    context.setdefault("language_code", get_language() or settings.LANGUAGE_CODE)
    directory = template_directory(template)
    # One line: a newline in a subject is a header injection, and Django refuses it.
    subject = " ".join(render_to_string(f"{directory}/subject.txt", context).split())
    context["subject"] = subject
    text = render_to_string(f"{directory}/body.txt", context)
    html = render_to_string(f"{directory}/body.html", context)
    return RenderedEmail(subject=subject, text=_tidy_text(text), html=html)


def _tidy_text(text: str) -> str:
    # Template tags leave blank lines behind; a plain-text email reads better without them.
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_LINES.sub("\n\n", lines) + "\n"
