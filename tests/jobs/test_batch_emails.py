"""send_batch_emails: one connection, per-recipient outcomes, and no duplicate on retry."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher
from django_qstash_jobs.exceptions import JobValidationError
from django_qstash_jobs.execution import Delivery, execute
from django_qstash_jobs.models import EmailDelivery, JobExecution, JobStatus
from tests.jobs.backends import FlakyBackend

pytestmark = pytest.mark.django_db(transaction=True)


def email(to: str, template: str = "welcome", **data: str) -> dict[str, Any]:
    return {"template": template, "to": to, "data": {"recipient_name": to.split("@")[0], **data}}


def run(emails: list[dict[str, Any]], **options: Any) -> JobExecution:
    job_id = job_dispatcher.enqueue(JOB_TYPES.SEND_BATCH_EMAILS, {"emails": emails}, None, options)
    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None
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
