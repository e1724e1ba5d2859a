"""Payload schemas of the built-in job types.

Keys are snake_case; the camelCase spelling of the original TypeScript API (``recipientName``)
is accepted too and stored as snake_case. Unknown keys are errors, so a typo never goes unseen.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

EMAIL_TEMPLATES = (
    "welcome",
    "passwordReset",
    "passwordChanged",
    "emailChange",
    "teamInvitation",
    "subscriptionCreated",
    "paymentFailed",
)
EmailTemplate = Literal[
    "welcome",
    "passwordReset",
    "passwordChanged",
    "emailChange",
    "teamInvitation",
    "subscriptionCreated",
    "paymentFailed",
]
# Deliberately loose: the mail server is the judge; this catches blanks and obvious typos.
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class Payload(BaseModel):
    """Base of the built-in payloads."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _check_address(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


class SendEmailPayload(Payload):
    template: EmailTemplate
    to: str
    data: dict[str, Any] = Field(default_factory=dict)
    from_email: str | None = None
    reply_to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)

    @field_validator("to", "from_email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _check_address(value)

    @field_validator("reply_to", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_check_address(address) for address in value]


class SendBatchEmailsPayload(Payload):
    emails: list[SendEmailPayload] = Field(min_length=1, max_length=1000)


class ProcessWebhookPayload(Payload):
    source: str = Field(min_length=1, max_length=100)
    event: str = Field(min_length=1, max_length=200)
    data: Any = None


class ProcessStripeWebhookPayload(Payload):
    event_type: str = Field(min_length=1, max_length=200)
    event_data: dict[str, Any] = Field(default_factory=dict)
    ip_address: str | None = None
    event_id: str | None = None


class GenerateReportPayload(Payload):
    report_type: str = Field(min_length=1, max_length=100)
    start_date: date
    end_date: date
    format: Literal["pdf", "html", "csv"] = "pdf"

    @model_validator(mode="after")
    def _ordered(self) -> GenerateReportPayload:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class ExportDataPayload(Payload):
    entity_type: str = Field(min_length=1, max_length=100)
    format: Literal["csv", "json", "jsonl"] = "csv"
    filters: dict[str, Any] = Field(default_factory=dict)


class CleanupOldDataPayload(Payload):
    #: Days to keep; ``None`` means ``QSTASH_JOBS["RETENTION_DAYS"]``.
    retention: int | None = Field(default=None, ge=1, le=36500)
