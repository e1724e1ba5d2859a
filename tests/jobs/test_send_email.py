"""send_email: sending through the configured backend, message ids, failures and retries."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher
from django_qstash_jobs.execution import Delivery, execute
from django_qstash_jobs.models import EmailDelivery, EmailDeliveryStatus, JobExecution, JobStatus
from tests.jobs.backends import FlakyBackend

pytestmark = pytest.mark.django_db(transaction=True)

WELCOME = {"template": "welcome", "to": "user@example.com", "data": {"recipient_name": "Jo"}}


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
