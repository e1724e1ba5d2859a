"""send_email: sending through the configured backend, message ids, failures and retries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher
from django_qstash_jobs.exceptions import JobValidationError
from django_qstash_jobs.execution import Delivery, execute
from django_qstash_jobs.models import EmailDelivery, EmailDeliveryStatus, JobExecution, JobStatus
from tests.jobs.backends import FlakyBackend
from tests.jobs.conftest import use_email_backend

pytestmark = pytest.mark.django_db(transaction=True)

WELCOME = {"template": "welcome", "to": "user@example.com", "data": {"recipient_name": "Jo"}}


class FakeSmtp:
    """Stands in for smtplib.SMTP: accepts everything and records each envelope's recipients."""

    recipients: ClassVar[list[list[str]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def sendmail(self, from_addr: str, to_addrs: list[str], msg: bytes) -> dict[str, Any]:
        type(self).recipients.append(list(to_addrs))
        return {}

    def quit(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeSmtpBackend(SmtpBackend):
    """Django's SMTP backend, address preparation and all, over a connection to nowhere."""

    @property
    def connection_class(self) -> Any:
        return FakeSmtp


class InvalidAddressBackend(LocmemBackend):
    """locmem, but an address starting with "invalid" is refused as Django's SMTP backend
    refuses one it cannot encode: with a ValueError."""

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        for message in messages:
            if message.to[0].startswith("invalid"):
                raise ValueError(f"Invalid address {message.to[0]!r}")
        return super().send_messages(messages)


@pytest.fixture
def smtp(settings: Any) -> type[FakeSmtp]:
    backend = "tests.jobs.test_send_email.FakeSmtpBackend"
    if hasattr(mail, "mailers"):  # Django 6.1+: an SMTP mailer must name its host.
        settings.MAILERS = {"default": {"BACKEND": backend, "OPTIONS": {"host": "smtp.invalid"}}}
    else:
        settings.EMAIL_BACKEND = backend
    FakeSmtp.recipients = []
    return FakeSmtp


@dataclass
class EspAnswers:
    """What the ESP says of each recipient; any other recipient is "sent" with id "id-<address>"."""

    statuses: dict[str, str] = field(default_factory=dict)
    message_ids: dict[str, str] = field(default_factory=dict)
    #: How the ESP writes an address back in its answer (some lowercase it, or encode its domain).
    spelling: Callable[[str], str] = str


@pytest.fixture
def per_recipient_esp(esp_backend: None, monkeypatch: pytest.MonkeyPatch) -> EspAnswers:
    """django-anymail with an ESP that answers with one id and one status per recipient (to, cc
    and bcc), as Mandrill or Mailtrap do."""
    from anymail.message import AnymailRecipientStatus

    from tests.jobs.esp_backend import EspBackend

    answers = EspAnswers()

    def parse_recipient_status(
        backend: Any, response: Any, payload: Any, message: Any
    ) -> dict[str, Any]:
        return {
            answers.spelling(email): AnymailRecipientStatus(
                message_id=answers.message_ids.get(email, f"id-{email}"),
                status=answers.statuses.get(email, "sent"),
            )
            for email in payload.recipient_emails
        }

    monkeypatch.setattr(EspBackend, "parse_recipient_status", parse_recipient_status)
    return answers


def run(payload: dict[str, Any] | None = None, **options: Any) -> JobExecution:
    job_id = job_dispatcher.enqueue(JOB_TYPES.SEND_EMAIL, payload or WELCOME, None, options)
    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None
    return execution


def test_the_result_holds_the_message_id_the_email_was_sent_with() -> None:
    execution = run()

    assert execution.status == JobStatus.COMPLETED
    (message,) = mail.outbox
    message_id = message.extra_headers["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith(">")
    assert message.message()["Message-ID"] == message_id
    assert execution.result == {
        "to": "user@example.com",
        "template": "welcome",
        "status": "sent",
        "message_id": message_id,
    }


@pytest.mark.usefixtures("esp_backend")
def test_with_django_anymail_the_esp_message_id_is_the_result() -> None:
    execution = run()

    assert execution.status == JobStatus.COMPLETED, execution.error
    (message,) = mail.outbox
    assert message.anymail_status.message_id == "esp-0"
    assert execution.result["message_id"] == "esp-0"
    # The ESP makes its own Message-ID: none is forced on it.
    assert "Message-ID" not in message.extra_headers


def test_a_temporary_failure_is_retried_and_the_email_sent_once(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.failures["user@example.com"] = 1

    execution = run(retries=2)

    assert execution.status == JobStatus.COMPLETED
    assert execution.attempts == 2
    assert flaky_backend.attempts == ["user@example.com", "user@example.com"]
    assert len(mail.outbox) == 1


def test_a_refused_recipient_fails_the_job_without_retrying(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.refused.add("user@example.com")

    execution = run(retries=3)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1
    assert "PermanentJobError" in execution.error
    assert "user@example.com was refused" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.REJECTED
    assert mail.outbox == []


def test_a_manual_retry_sends_an_email_that_was_refused_before(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.refused.add("user@example.com")
    execution = run(retries=3)
    assert execution.status == JobStatus.FAILED
    flaky_backend.refused.clear()  # The mailbox is back, or the template deployed.

    job_dispatcher.retry(execution.job_id)

    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED, execution.error
    assert [message.to[0] for message in mail.outbox] == ["user@example.com"]
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.SENT


def test_a_login_the_server_refuses_is_retried_not_taken_for_a_refused_email(
    flaky_backend: type[FlakyBackend],
) -> None:
    # SMTP answers a wrong password with a 5xx, as it does a refused recipient.
    flaky_backend.login_failures = 1

    execution = run(retries=2)

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.attempts == 2
    assert len(mail.outbox) == 1
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.SENT


def test_a_mail_server_never_logged_in_to_fails_the_job_and_a_retry_sends_it(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.login_failures = 2

    execution = run(retries=1)

    assert execution.status == JobStatus.FAILED
    assert "Could not connect to the email backend (SMTPAuthenticationError" in execution.error
    assert "PermanentJobError" not in execution.error
    assert not EmailDelivery.objects.exists()  # Nothing was handed over.
    job_dispatcher.retry(execution.job_id)  # The password is fixed.
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED, execution.error
    assert len(mail.outbox) == 1


def test_a_sender_the_server_refuses_is_retried(flaky_backend: type[FlakyBackend]) -> None:
    flaky_backend.sender_refused = True

    execution = run(retries=1)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 2  # Retried: the site's sender address, not the email.
    assert "SMTPSenderRefused" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.FAILED


def test_failing_on_every_attempt_fails_the_job_with_the_reason(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.failures["user@example.com"] = 10

    execution = run(retries=1)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 2
    assert "SMTPServerDisconnected" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.FAILED


def test_an_email_left_sending_by_a_dead_attempt_is_not_sent_again() -> None:
    # As if a worker died between handing the email over and recording the outcome.
    execution = JobExecution.objects.create(
        job_type=JOB_TYPES.SEND_EMAIL, payload=WELCOME, status=JobStatus.RETRYING
    )
    EmailDelivery.objects.create(
        execution=execution,
        position=0,
        recipient="user@example.com",
        template="welcome",
        status=EmailDeliveryStatus.SENDING,
    )

    execute(Delivery(job_id=execution.job_id, retried=1))

    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.result["status"] == "unknown"
    assert mail.outbox == []
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.UNKNOWN


def test_a_redelivered_finished_email_is_not_sent_again() -> None:
    execution = run()

    execute(Delivery(job_id=execution.job_id, retried=1))
    JobExecution.objects.filter(pk=execution.pk).update(status=JobStatus.RETRYING)
    execute(Delivery(job_id=execution.job_id, retried=2))

    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    "address",
    [
        "a..b@example.com",
        "a,b@example.com",
        "josé@example.com",
        "Jo <jo@example.com>",
        "user@localhost",
        "a\x00b@example.com",
    ],
)
def test_an_address_djangos_smtp_backend_refuses_is_a_validation_error_at_enqueue(
    address: str,
) -> None:
    with pytest.raises(JobValidationError, match=r"\bto: .*is not an email address"):
        run({**WELCOME, "to": address})
    assert not JobExecution.objects.exists()


def test_a_template_s_data_left_out_is_checked_as_an_empty_one() -> None:
    # Left out, it was not validated at all: the job was recorded, published, and failed.
    with pytest.raises(JobValidationError, match=r"data\.reset_url"):
        run({"template": "passwordReset", "to": "a@example.com"})
    assert not JobExecution.objects.exists()


def test_an_address_longer_than_the_recipient_column_is_refused_at_enqueue() -> None:
    to = "x" * 243 + "@example.com"
    assert len(to) == EmailDelivery._meta.get_field("recipient").max_length + 1

    with pytest.raises(JobValidationError, match="at most 254 characters"):
        run({**WELCOME, "to": to})


def test_an_address_longer_than_smtp_allows_once_its_domain_is_encoded_is_refused() -> None:
    label = "äöüé" + "b" * 48  # 52 characters; 62 IDNA-encoded ("xn--...")
    domain = ".".join([label] * 4) + ".com"
    to = f"uu@{domain}"
    assert len(to) < 254 < len(f"uu@{domain.encode('idna').decode()}")

    with pytest.raises(JobValidationError, match="longer than 254 characters once its domain"):
        run({**WELCOME, "to": to})


@pytest.mark.parametrize(
    ("address", "envelope"),
    [
        ("a+tag@example.com", "a+tag@example.com"),
        ("o'brien@example.com", "o'brien@example.com"),
        ("user@exämple.com", "user@xn--exmple-cua.com"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ],
)
def test_an_address_accepted_at_enqueue_is_sent_by_djangos_smtp_backend(
    smtp: type[FakeSmtp], address: str, envelope: str
) -> None:
    execution = run({**WELCOME, "to": address})

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert smtp.recipients == [[envelope]]


def test_an_address_refused_when_sent_fails_the_job_without_retrying(settings: Any) -> None:
    use_email_backend(settings, "tests.jobs.test_send_email.InvalidAddressBackend")

    execution = run({**WELCOME, "to": "invalid@example.com"}, retries=2)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1
    assert "ValueError: Invalid address" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.REJECTED


def test_with_an_id_per_recipient_the_result_holds_the_recipients_own_id(
    per_recipient_esp: EspAnswers,
) -> None:
    payload = {**WELCOME, "bcc": [f"audit{n}@example.com" for n in range(8)]}

    execution = run(payload)

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.result["message_id"] == "id-user@example.com"
    assert EmailDelivery.objects.get().message_id == "id-user@example.com"


@pytest.mark.parametrize(
    ("to", "spelling"),
    [
        ("User@Example.com", str.lower),
        ("user@exämple.com", lambda address: address.replace("exämple", "xn--exmple-cua")),
    ],
)
def test_the_recipients_own_id_is_found_as_the_esp_spells_the_address(
    per_recipient_esp: EspAnswers, to: str, spelling: Callable[[str], str]
) -> None:
    per_recipient_esp.spelling = spelling

    execution = run({**WELCOME, "to": to, "bcc": ["audit@example.com"]})

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.result["message_id"] == f"id-{to}"


def test_a_message_id_longer_than_its_column_is_not_recorded(
    per_recipient_esp: EspAnswers,
) -> None:
    per_recipient_esp.message_ids["user@example.com"] = "x" * 256

    execution = run()

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.result["status"] == "sent"
    assert execution.result["message_id"] is None


def test_a_recipient_the_esp_rejects_is_not_recorded_as_sent(
    per_recipient_esp: EspAnswers,
) -> None:
    # django-anymail raises only when every recipient is refused; here the bcc was accepted.
    per_recipient_esp.statuses["user@example.com"] = "rejected"

    execution = run({**WELCOME, "bcc": ["audit@example.com"]}, retries=2)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1
    assert "user@example.com was refused" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.REJECTED


def test_a_recipient_the_esp_failed_to_send_to_is_sent_again(
    per_recipient_esp: EspAnswers,
) -> None:
    per_recipient_esp.statuses["user@example.com"] = "failed"

    execution = run({**WELCOME, "bcc": ["audit@example.com"]}, retries=1)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 2
    assert "reported user@example.com as failed" in execution.error
    assert EmailDelivery.objects.get().status == EmailDeliveryStatus.FAILED
