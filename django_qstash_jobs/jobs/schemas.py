"""Payload schemas of the built-in job types.

Keys are snake_case; the camelCase spelling of the original TypeScript API (``recipientName``)
is accepted too and stored as snake_case. Unknown keys are errors, so a typo never goes unseen.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from django_qstash_jobs.exports import export_registry
from django_qstash_jobs.jobs.email_templates import check_address, validate_context
from django_qstash_jobs.naming import snake_case
from django_qstash_jobs.reports import local_midnight, report_registry

EmailTemplate = Literal[
    "welcome",
    "passwordReset",
    "passwordChanged",
    "emailChange",
    "teamInvitation",
    "subscriptionCreated",
    "paymentFailed",
]
#: The template names, in the order of the original usage guide.
EMAIL_TEMPLATES: tuple[str, ...] = get_args(EmailTemplate)


class Payload(BaseModel):
    """Base of the built-in payloads."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SendEmailPayload(Payload):
    template: EmailTemplate
    to: str
    # validate_default: left out, it is checked as {} is, so a template's missing keys are a
    # JobValidationError at enqueue rather than a failed job.
    data: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    from_email: str | None = None
    reply_to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)

    @field_validator("to", "from_email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("reply_to", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [check_address(address) for address in value]

    @field_validator("data")
    @classmethod
    def _context(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Checked at enqueue, so a missing ``reset_url`` is the caller's error, not a failed job.
        template = info.data.get("template")
        if template is None:
            return value  # The template is invalid; that error is reported already.
        return validate_context(template, value)


class SendBatchEmailsPayload(Payload):
    emails: list[SendEmailPayload] = Field(min_length=1, max_length=1000)


class ProcessWebhookPayload(Payload):
    source: str = Field(min_length=1, max_length=100)
    event: str = Field(min_length=1, max_length=200)
    data: Any = None


class ProcessStripeWebhookPayload(Payload):
    event_type: str = Field(min_length=1, max_length=200)
    #: The event's ``data.object``.
    event_data: dict[str, Any] = Field(default_factory=dict)
    ip_address: str | None = None
    event_id: str | None = None
    #: The event's ``data.previous_attributes``, on ``*.updated`` events.
    previous_attributes: dict[str, Any] | None = None
    #: The connected account the event is for (Stripe Connect); None for the platform's own.
    account: str | None = Field(default=None, max_length=255)
    #: When Stripe created the event (Unix time): events may arrive out of order.
    created: int | None = None
    livemode: bool | None = None
    api_version: str | None = Field(default=None, max_length=100)


def _registered(registry: Any, name: str) -> str:
    """``name`` if ``registry`` knows it; else the registry's own message, as a field error."""
    try:
        registry.get(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    return name


class GenerateReportPayload(Payload):
    report_type: str = Field(min_length=1, max_length=100)
    start_date: date
    end_date: date
    format: Literal["pdf", "html", "csv"] = "pdf"

    @field_validator("report_type")
    @classmethod
    def _registered_report(cls, value: str) -> str:
        return _registered(report_registry, value)

    @field_validator("start_date")
    @classmethod
    def _start_in_utc_range(cls, value: date) -> date:
        # The report starts at this day's local midnight, which the database needs in UTC.
        # (The end, the next day's midnight, always has one while end_date is before date.max.)
        local_midnight(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> GenerateReportPayload:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.end_date >= date.max:
            # The report runs to the end of end_date, the start of the next day.
            raise ValueError(f"end_date must be before {date.max.isoformat()}")
        return self


class ExportDataPayload(Payload):
    entity_type: str = Field(min_length=1, max_length=100)
    format: Literal["csv", "json", "jsonl"] = "csv"
    #: Filter name (as declared with ``register_export``) -> value.
    filters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("entity_type")
    @classmethod
    def _registered_export(cls, value: str) -> str:
        return _registered(export_registry, value)

    @field_validator("filters")
    @classmethod
    def _declared_filters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # At enqueue time, so an undeclared filter or a value the run would fail on never
        # becomes a job.
        entity_type = info.data.get("entity_type")
        if entity_type is not None:
            export_registry.get(entity_type).check_filters(value)
        return {snake_case(name): filter_value for name, filter_value in value.items()}


#: A hundred years: a cutoff further back leaves the calendar.
MAX_RETENTION_DAYS = 36_500


class CleanupOldDataPayload(Payload):
    #: Days to keep; ``None`` means ``QSTASH_JOBS["RETENTION_DAYS"]``.
    retention: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
