"""send_batch_emails: one connection, per-recipient outcomes, and no duplicate on retry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher, statements
from django_qstash_jobs.exceptions import JobValidationError
from django_qstash_jobs.execution import Delivery, execute
from django_qstash_jobs.models import EmailDelivery, EmailDeliveryStatus, JobExecution, JobStatus
from tests.jobs.backends import FlakyBackend
from tests.jobs.conftest import use_email_backend

pytestmark = pytest.mark.django_db(transaction=True)


def email(to: str, template: str = "welcome", **data: str) -> dict[str, Any]:
    return {"template": template, "to": to, "data": {"recipient_name": to.split("@")[0], **data}}


def run(emails: list[dict[str, Any]], **options: Any) -> JobExecution:
    job_id = job_dispatcher.enqueue(JOB_TYPES.SEND_BATCH_EMAILS, {"emails": emails}, None, options)
    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None
    return execution


def expire_lease(job_id: str) -> None:
    """As when a worker hangs past LEASE_SECONDS: its job may be taken over."""
    JobExecution.objects.filter(job_id=job_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def redeliver(job_id: str) -> None:
    """QStash timed the hung delivery out and delivers again; the new delivery runs the job."""
    expire_lease(job_id)
    execute(Delivery(job_id=job_id, retried=2))


def take_over(job_id: str) -> None:
    """A new delivery claims the job and has not sent anything yet."""
    expire_lease(job_id)
    assert statements.claim(job_id, lease_seconds=300) is not None


class HangingBackend(LocmemBackend):
    """locmem; while sending to ``hang_on`` (once), ``meanwhile`` runs, as if the server hung."""

    hang_on: ClassVar[str] = "slow@example.com"
    meanwhile: ClassVar[Callable[[], None] | None] = None

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        cls = type(self)
        if cls.meanwhile is not None and messages[0].to[0] == cls.hang_on:
            meanwhile, cls.meanwhile = cls.meanwhile, None
            meanwhile()
        return super().send_messages(messages)


@pytest.fixture
def hanging_backend(settings: Any) -> type[HangingBackend]:
    use_email_backend(settings, "tests.jobs.test_batch_emails.HangingBackend")
    HangingBackend.meanwhile = None
    return HangingBackend


def second_attempt(emails: list[dict[str, Any]], failed_before: list[int]) -> JobExecution:
    """A batch whose first attempt failed to send the emails at ``failed_before``."""
    execution = JobExecution.objects.create(
        job_type=JOB_TYPES.SEND_BATCH_EMAILS,
        payload={"emails": emails},
        status=JobStatus.RETRYING,
        attempts=1,
        max_retries=3,
    )
    for position in failed_before:
        EmailDelivery.objects.create(
            execution=execution,
            position=position,
            recipient=emails[position]["to"],
            template=emails[position]["template"],
            status=EmailDeliveryStatus.FAILED,
        )
    return execution


def test_a_batch_is_sent_over_one_connection(flaky_backend: type[FlakyBackend]) -> None:
    execution = run([email(f"user{i}@example.com") for i in range(5)])

    assert execution.status == JobStatus.COMPLETED
    assert flaky_backend.connections == 1
    assert [message.to[0] for message in mail.outbox] == [f"user{i}@example.com" for i in range(5)]
    assert execution.result["total"] == 5
    assert execution.result["sent"] == 5
    assert [item["status"] for item in execution.result["emails"]] == ["sent"] * 5
    assert all(item["message_id"] for item in execution.result["emails"])


def test_a_retry_after_a_partial_failure_sends_no_duplicates(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.failures["b@example.com"] = 1
    flaky_backend.failures["d@example.com"] = 1
    recipients = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]

    execution = run([email(to) for to in recipients], retries=2)

    assert execution.status == JobStatus.COMPLETED
    assert execution.attempts == 2
    # Each recipient got exactly one email; the second attempt only tried the two that failed.
    sent = [message.to[0] for message in mail.outbox]
    assert sorted(sent) == recipients
    assert flaky_backend.attempts == [*recipients, "b@example.com", "d@example.com"]
    assert execution.result["sent"] == 4


def test_the_failure_names_the_recipients_that_are_sent_again(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.failures["b@example.com"] = 5

    execution = run([email("a@example.com"), email("b@example.com")], retries=1)

    assert execution.status == JobStatus.FAILED
    assert "1 of 2 emails were not sent" in execution.error
    assert "b@example.com: SMTPServerDisconnected" in execution.error
    assert [message.to[0] for message in mail.outbox] == ["a@example.com"]
    statuses = dict(EmailDelivery.objects.values_list("recipient", "status"))
    assert statuses == {"a@example.com": "sent", "b@example.com": "failed"}


def test_a_refused_recipient_does_not_hold_up_the_others(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.refused.add("gone@example.com")

    execution = run([email("gone@example.com"), email("here@example.com")], retries=3)

    assert execution.status == JobStatus.COMPLETED
    assert execution.attempts == 1
    assert execution.result["rejected"] == 1
    assert execution.result["sent"] == 1
    rejected = execution.result["emails"][0]
    assert rejected["status"] == "rejected"
    assert "SMTPRecipientsRefused" in rejected["error"]


def test_a_refused_login_sends_the_whole_batch_on_the_next_attempt(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.login_failures = 1
    recipients = ["a@example.com", "b@example.com", "c@example.com"]

    execution = run([email(to) for to in recipients], retries=2)

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.attempts == 2
    assert execution.result["sent"] == 3
    assert execution.result["rejected"] == 0
    assert sorted(message.to[0] for message in mail.outbox) == recipients


def test_a_manual_retry_sends_what_was_not_sent_and_nothing_twice(
    flaky_backend: type[FlakyBackend],
) -> None:
    flaky_backend.failures["b@example.com"] = 2
    execution = run([email("a@example.com"), email("b@example.com")], retries=1)
    assert execution.status == JobStatus.FAILED

    job_dispatcher.retry(execution.job_id)

    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED, execution.error
    assert [message.to[0] for message in mail.outbox] == ["a@example.com", "b@example.com"]


def test_a_first_delivery_repeated_by_qstash_sends_no_refused_email_again(
    flaky_backend: type[FlakyBackend],
) -> None:
    # QStash delivers at least once: its first delivery may come again after the first attempt
    # failed. Only a manual retry tries refused emails again.
    flaky_backend.refused.add("a@example.com")
    flaky_backend.failures["b@example.com"] = 1
    execution = JobExecution.objects.create(
        job_type=JOB_TYPES.SEND_BATCH_EMAILS,
        payload={"emails": [email("a@example.com"), email("b@example.com")]},
        status=JobStatus.QUEUED,
        max_retries=3,
    )

    execute(Delivery(job_id=execution.job_id, retried=0))
    execute(Delivery(job_id=execution.job_id, retried=0))  # the same first delivery, again

    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED, execution.error
    assert flaky_backend.attempts == ["a@example.com", "b@example.com", "b@example.com"]


def test_every_email_of_a_batch_is_checked_before_anything_is_recorded() -> None:
    with pytest.raises(JobValidationError, match=r"emails\.1\.data\.reset_url: Field required"):
        run([email("a@example.com"), email("b@example.com", template="passwordReset")])
    assert not JobExecution.objects.exists()


def test_progress_counts_the_emails_sent() -> None:
    execution = run([email(f"user{i}@example.com") for i in range(3)])
    assert execution.progress == 100
    assert execution.progress_message == "3/3 emails"


def test_an_address_refused_when_sent_does_not_hold_up_the_others(settings: Any) -> None:
    # Django's SMTP backend refuses an address it cannot encode with a ValueError.
    use_email_backend(settings, "tests.jobs.test_send_email.InvalidAddressBackend")

    execution = run([email("ok@example.com"), email("invalid@example.com")], retries=2)

    assert execution.status == JobStatus.COMPLETED, execution.error
    assert execution.attempts == 1
    assert [message.to[0] for message in mail.outbox] == ["ok@example.com"]
    assert execution.result["sent"] == 1
    assert execution.result["rejected"] == 1
    assert "ValueError: Invalid address" in execution.result["emails"][1]["error"]


def test_a_delivery_whose_job_was_taken_over_does_not_send_again_what_the_new_one_sent(
    hanging_backend: type[HangingBackend],
) -> None:
    execution = second_attempt([email("slow@example.com"), email("b@example.com")], [1])
    # While the server hangs on slow@, the redelivery takes over and sends b@.
    hanging_backend.meanwhile = lambda: redeliver(execution.job_id)

    execute(Delivery(job_id=execution.job_id, retried=1))

    assert sorted(message.to[0] for message in mail.outbox) == ["b@example.com", "slow@example.com"]
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED, execution.error


def test_a_delivery_whose_job_was_taken_over_sends_no_further_email(
    hanging_backend: type[HangingBackend],
) -> None:
    emails = [email("slow@example.com"), email("b@example.com"), email("c@example.com")]
    execution = second_attempt(emails, [1])
    hanging_backend.meanwhile = lambda: take_over(execution.job_id)

    execute(Delivery(job_id=execution.job_id, retried=1))

    # slow@ was already handed over; b@ and c@ are the new holder's to send.
    assert [message.to[0] for message in mail.outbox] == ["slow@example.com"]
    statuses = dict(EmailDelivery.objects.values_list("recipient", "status"))
    assert statuses == {"slow@example.com": "sent", "b@example.com": "failed"}


def test_an_email_sent_by_a_takeover_just_after_the_claim_check_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The takeover lands between this delivery's check of its claim and its write of
    # ``sending``: only the status it read keeps it from sending again.
    execution = second_attempt([email("a@example.com"), email("b@example.com")], [1])
    real_holds_claim = statements.holds_claim
    checks = 0

    def holds_claim_then_taken_over(held_execution: Any) -> bool:
        nonlocal checks
        checks += 1
        held = real_holds_claim(held_execution)
        if checks == 2:  # This delivery's check before b@.
            redeliver(execution.job_id)
        return held

    monkeypatch.setattr(statements, "holds_claim", holds_claim_then_taken_over)

    execute(Delivery(job_id=execution.job_id, retried=1))

    assert sorted(message.to[0] for message in mail.outbox) == ["a@example.com", "b@example.com"]
