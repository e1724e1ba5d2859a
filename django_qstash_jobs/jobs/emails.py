"""``send_email`` and ``send_batch_emails``: render a template and send it through EMAIL_BACKEND.

Each email is recorded as an :class:`~django_qstash_jobs.models.EmailDelivery` before and after
it is handed to the backend, so a retried job sends only the emails that failed, never one that
was sent. An attempt that died while handing an email over leaves it ``sending``; the next
attempt marks it ``unknown`` and does not send it again (it may have left).

An email the server refused (its recipient, or its content) is ``rejected`` and QStash's retries
leave it alone; a manual ``job_dispatcher.retry`` tries it again, as it does an email whose
template was missing. A mail server that cannot be reached or logged in to is the site's
problem, not the email's: the attempt stops there, and every email not sent waits for the next.

A delivery whose lease ran out while it was sending (another delivery took the job over) sends
nothing more: each email is marked ``sending`` only if this delivery still holds the job and the
email's record is still as this delivery read it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import smtplib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from django_qstash_jobs import statements, storable
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import EmailsNotSent, PermanentJobError
from django_qstash_jobs.jobs.email_templates import envelope_address, render_email
from django_qstash_jobs.jobs.schemas import SendBatchEmailsPayload, SendEmailPayload
from django_qstash_jobs.models import EmailDelivery, EmailDeliveryStatus
from django_qstash_jobs.registry import JOB_TYPES, register_job

logger = logging.getLogger("django_qstash_jobs")


def _refused_errors() -> tuple[type[Exception], ...]:
    """Errors saying a recipient was refused: resending cannot help.

    A ValueError is Django's "Invalid address" (and anymail's AnymailInvalidAddress): the
    message could not even be prepared, and the same message fails the same way every time.
    """
    refused: tuple[type[Exception], ...] = (smtplib.SMTPRecipientsRefused, ValueError)
    try:  # django-anymail is optional.
        anymail = importlib.import_module("anymail.exceptions")
    except ImportError:
        return refused
    return (*refused, anymail.AnymailRecipientsRefused)


_REFUSED = _refused_errors()

#: Rendering errors that no retry can fix.
_BROKEN_TEMPLATE = (TemplateDoesNotExist, TemplateSyntaxError)
#: Sent, or perhaps sent by an attempt that died: never sent again.
_SENT_OR_MAYBE = (EmailDeliveryStatus.SENT, EmailDeliveryStatus.UNKNOWN)
#: Dealt with by an earlier attempt: QStash's retries do not send these again.
_SETTLED = (*_SENT_OR_MAYBE, EmailDeliveryStatus.REJECTED)
#: What an ESP (through django-anymail) may say of one recipient, and what it means here. "failed"
#: is "not sent, for another reason" (Unisender Go's "temporary_unavailable"): sent again later.
_ESP_RECIPIENT_OUTCOMES = {
    "invalid": EmailDeliveryStatus.REJECTED,
    "rejected": EmailDeliveryStatus.REJECTED,
    "failed": EmailDeliveryStatus.FAILED,
}
_MESSAGE_ID_LENGTH = EmailDelivery._meta.get_field("message_id").max_length or 255


def build_message(
    payload: SendEmailPayload, connection: BaseEmailBackend
) -> EmailMultiAlternatives:
    """The email of one payload: the template's subject, text body and HTML alternative."""
    rendered = render_email(payload.template, payload.data)
    headers: dict[str, str] = {}
    if not hasattr(connection, "esp_name"):
        # Outside django-anymail (which reports the ESP's id) the Message-ID header is the only
        # id an email has; set it here so that it can be recorded.
        headers["Message-ID"] = make_msgid(domain=DNS_NAME)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=payload.from_email or settings.DEFAULT_FROM_EMAIL,
        to=[payload.to],
        cc=list(payload.cc),
        bcc=list(payload.bcc),
        reply_to=list(payload.reply_to),
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def open_mailer() -> BaseEmailBackend:
    """The default mailer (Django 6.1's ``MAILERS``), else a connection to EMAIL_BACKEND."""
    mailers = getattr(mail, "mailers", None)
    if mailers is not None:
        backend: BaseEmailBackend = mailers.default
        return backend
    return mail.get_connection()


def _recipient_status(message: EmailMultiAlternatives, to: str) -> Any | None:
    """django-anymail's status of ``to`` itself (not of a cc or bcc); None without one."""
    recipients = getattr(getattr(message, "anymail_status", None), "recipients", None) or {}
    if to in recipients:
        return recipients[to]
    # The ESP may answer with the address lowercased, or with its domain IDNA-encoded.
    wanted = {to.casefold(), (envelope_address(to) or to).casefold()}
    return next(
        (status for address, status in recipients.items() if address.casefold() in wanted), None
    )


def _message_id(message: EmailMultiAlternatives, to: str) -> str:
    """The id the email to ``to`` was sent with: the ESP's, else the Message-ID header."""
    status = getattr(message, "anymail_status", None)
    recipient = _recipient_status(message, to)
    if recipient is not None and recipient.message_id is not None:
        message_id = str(recipient.message_id)
    elif status is not None and isinstance(status.message_id, str):
        message_id = status.message_id
    elif status is not None and status.message_id is not None:
        # One id per recipient (a set) and none found for ``to``: none of them is its own.
        message_id = ""
    else:
        message_id = str(message.extra_headers.get("Message-ID", ""))
    if len(message_id) > _MESSAGE_ID_LENGTH:
        logger.warning("Message id %r is too long to record; it is not kept.", message_id)
        return ""
    return message_id


def _esp_outcome(message: EmailMultiAlternatives, to: str) -> str | None:
    """``rejected`` or ``failed`` when the ESP accepted the message but not for ``to``."""
    recipient = _recipient_status(message, to)
    return None if recipient is None else _ESP_RECIPIENT_OUTCOMES.get(recipient.status)


def _is_refusal(exc: Exception) -> bool:
    """Whether the server refused this email: sending it again gets the same answer."""
    if isinstance(exc, _REFUSED):
        return True
    # A 5xx reply to the message itself is permanent (RFC 5321 section 4.2.1). A 5xx to the
    # login or to the sender is not about this email: it is the site's configuration, which an
    # operator fixes; the email then goes out on a later attempt.
    return isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500


def deliver(ctx: JobContext, payloads: Sequence[SendEmailPayload]) -> list[EmailDelivery]:
    """Send each email not settled by an earlier attempt, over one connection; return all."""
    previous = {
        record.position: record
        for record in EmailDelivery.objects.filter(execution_id=ctx.execution.pk)
    }
    # Outcomes exist at the row's first claim only when job_dispatcher.retry started the count
    # of claims again (a QStash redelivery claims again and counts on): the operator asks for
    # what was refused (a template since fixed, a mailbox since restored) to be tried again.
    # What was sent, or may have been, never is.
    settled = _SENT_OR_MAYBE if ctx.execution.attempts == 1 and previous else _SETTLED
    connection = open_mailer()
    records: list[EmailDelivery] = []
    total = len(payloads)
    try:
        for position, payload in enumerate(payloads):
            record = previous.get(position)
            if record is not None and record.status == EmailDeliveryStatus.SENDING:
                record = _settle(
                    record,
                    EmailDeliveryStatus.UNKNOWN,
                    error="An earlier attempt stopped while sending this email; it is not sent "
                    "again, so that it is never sent twice.",
                )
                logger.warning("Email %s of job %s: delivery unknown.", position, ctx.job_id)
            if record is None or record.status not in settled:
                record = _send(ctx, connection, position, payload, record)
            records.append(record)
            if total > 1 and (position + 1) * 100 // total != position * 100 // total:
                ctx.set_progress((position + 1) * 100 // total, f"{position + 1}/{total} emails")
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    return records


def _send(
    ctx: JobContext,
    connection: BaseEmailBackend,
    position: int,
    payload: SendEmailPayload,
    record: EmailDelivery | None,
) -> EmailDelivery:
    try:
        message = build_message(payload, connection)
    except _BROKEN_TEMPLATE as exc:
        started = _start(ctx, position, payload, record)
        if started is None:
            return _recorded(ctx, position)
        return _settle(started, EmailDeliveryStatus.REJECTED, error=_describe(exc))
    try:
        connection.open()
    except Exception as exc:
        # Nothing was handed over, so no email is marked: the next attempt sends them all.
        raise EmailsNotSent(
            f"Could not connect to the email backend ({_describe(exc)}); no further email was "
            "sent in this attempt, and the next attempt sends every email not sent yet."
        ) from exc
    started = _start(ctx, position, payload, record)
    if started is None:
        return _recorded(ctx, position)
    record = started
    try:
        sent = connection.send_messages([message])
    except Exception as exc:
        # Reconnect for the next email: after an error the connection may be unusable.
        with contextlib.suppress(Exception):
            connection.close()
        status = EmailDeliveryStatus.REJECTED if _is_refusal(exc) else EmailDeliveryStatus.FAILED
        return _settle(record, status, error=_describe(exc))
    if sent == 0:
        return _settle(
            record, EmailDeliveryStatus.REJECTED, error="The email backend sent nothing."
        )
    return _settle_handed_over(record, message, payload.to)


def _settle_handed_over(
    record: EmailDelivery, message: EmailMultiAlternatives, to: str
) -> EmailDelivery:
    """The backend took the email: it is sent, unless the ESP reported ``to`` itself as not.

    django-anymail raises only when every recipient is refused; one refused ``to`` with a
    ``bcc`` accepted is reported per recipient instead.
    """
    esp_outcome = _esp_outcome(message, to)
    if esp_outcome is not None:
        return _settle(
            record, esp_outcome, error=f"The email service reported {to} as {esp_outcome}."
        )
    return _settle(record, EmailDeliveryStatus.SENT, message_id=_message_id(message, to))


def _start(
    ctx: JobContext, position: int, payload: SendEmailPayload, record: EmailDelivery | None
) -> EmailDelivery | None:
    """Mark the email ``sending``; None if another delivery changed its record meanwhile.

    Written (and committed: jobs run in autocommit) before the backend is called, so a crash
    mid-send is visible to the next attempt.
    """
    if not statements.holds_claim(ctx.execution):
        raise EmailsNotSent(
            "This delivery's lease ran out and another delivery took the job over; the emails "
            "not sent yet are that delivery's to send."
        )
    if record is None:
        # Should another delivery have recorded this email first, the unique (execution,
        # position) constraint refuses this row, and the email is not sent from here.
        return EmailDelivery.objects.create(
            execution_id=ctx.execution.pk,
            position=position,
            recipient=payload.to,
            template=payload.template,
            status=EmailDeliveryStatus.SENDING,
        )
    # Only from the status this delivery read: a delivery that took the job over may have
    # sent the email since, and it must not go twice.
    changed = EmailDelivery.objects.filter(pk=record.pk, status=record.status).update(
        status=EmailDeliveryStatus.SENDING, error="", updated_at=timezone.now()
    )
    if not changed:
        return None
    record.status, record.error = EmailDeliveryStatus.SENDING, ""
    return record


def _recorded(ctx: JobContext, position: int) -> EmailDelivery:
    """The email's record as another delivery, which dealt with it meanwhile, left it."""
    return EmailDelivery.objects.get(execution_id=ctx.execution.pk, position=position)


def _settle(
    record: EmailDelivery, status: str, *, error: str = "", message_id: str = ""
) -> EmailDelivery:
    record.status, record.error = status, error
    if message_id:
        record.message_id = message_id
    record.save(update_fields=["status", "error", "message_id", "updated_at"])
    return record


def _describe(exc: Exception) -> str:
    # A server's answer is anyone's text: what no text column holds is escaped.
    return storable.text(f"{type(exc).__name__}: {exc}")


def _summary(record: EmailDelivery) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "to": record.recipient,
        "template": record.template,
        "status": record.status,
        "message_id": record.message_id or None,
    }
    if record.error:
        summary["error"] = record.error
    return summary


@register_job(JOB_TYPES.SEND_EMAIL, schema=SendEmailPayload)
def send_email(payload: SendEmailPayload, ctx: JobContext) -> dict[str, Any]:
    """Render and send one email; the result holds its message id."""
    (record,) = deliver(ctx, [payload])
    if record.status == EmailDeliveryStatus.REJECTED:
        raise PermanentJobError(f"The email to {record.recipient} was refused: {record.error}")
    if record.status == EmailDeliveryStatus.FAILED:
        raise EmailsNotSent(f"The email to {record.recipient} was not sent: {record.error}")
    return _summary(record)


@register_job(JOB_TYPES.SEND_BATCH_EMAILS, schema=SendBatchEmailsPayload)
def send_batch_emails(payload: SendBatchEmailsPayload, ctx: JobContext) -> dict[str, Any]:
    """Send many emails over one connection; a retry sends only those that failed."""
    records = deliver(ctx, payload.emails)
    failed = [record for record in records if record.status == EmailDeliveryStatus.FAILED]
    if failed:
        examples = "; ".join(f"{record.recipient}: {record.error}" for record in failed[:3])
        raise EmailsNotSent(
            f"{len(failed)} of {len(records)} emails were not sent and are sent again on the "
            f"next attempt ({examples})."
        )
    counts = {status.value: 0 for status in EmailDeliveryStatus if status in _SETTLED}
    for record in records:
        counts[record.status] += 1
    return {"total": len(records), **counts, "emails": [_summary(r) for r in records]}
