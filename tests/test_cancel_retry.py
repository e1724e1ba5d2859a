"""cancel and retry."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_qstash_jobs import job_dispatcher, statements
from django_qstash_jobs.exceptions import JobStateError
from django_qstash_jobs.models import JobExecution, JobStatus
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


def recorded(
    job_type: str = "echo", status: str = JobStatus.QUEUED, **fields: object
) -> JobExecution:
    return JobExecution.objects.create(
        job_type=job_type, payload=fields.pop("payload", {"message": "m"}), status=status, **fields
    )


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING])
def test_cancel_a_job_that_has_not_started(status: str) -> None:
    execution = recorded(status=status)
    assert job_dispatcher.cancel(execution.job_id) is True
    execution.refresh_from_db()
    assert execution.status == JobStatus.CANCELLED
    assert execution.finished_at is not None


@pytest.mark.parametrize(
    "status", [JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
)
def test_cancel_leaves_started_or_finished_jobs_alone(status: str) -> None:
    execution = recorded(status=status)
    assert job_dispatcher.cancel(execution.job_id) is False
    execution.refresh_from_db()
    assert execution.status == status


def test_cancel_sends_job_cancelled_with_the_row() -> None:
    from django_qstash_jobs.signals import job_cancelled

    execution = recorded()
    received: list[tuple[str, str]] = []

    def on_cancelled(sender: object, execution: JobExecution, **kwargs: object) -> None:
        received.append((execution.job_id, execution.status))

    job_cancelled.connect(on_cancelled)
    try:
        job_dispatcher.cancel(execution.job_id)
        job_dispatcher.cancel(execution.job_id)  # cancelled already: nothing to say
    finally:
        job_cancelled.disconnect(on_cancelled)
    assert received == [(execution.job_id, JobStatus.CANCELLED)]


def test_a_rolled_back_cancel_leaves_the_message_to_deliver_the_job() -> None:
    from django_qstash_jobs.signals import job_cancelled
    from django_qstash_jobs.transports import get_transport

    transport = get_transport()
    cancelled: list[str] = []
    told: list[str] = []

    def on_cancelled(sender: object, execution: JobExecution, **kwargs: object) -> None:
        told.append(execution.job_id)

    original = transport.cancel
    transport.cancel = cancelled.append  # type: ignore[method-assign]
    job_cancelled.connect(on_cancelled)
    try:
        execution = recorded(message_id="msg_kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            assert job_dispatcher.cancel(execution.job_id)
            raise RuntimeError("the caller's transaction fails")
        assert (cancelled, told) == ([], [])  # the job will run: nobody hears it was cancelled
        execution.refresh_from_db()
        assert execution.status == JobStatus.QUEUED

        assert job_dispatcher.cancel(execution.job_id)
        assert (cancelled, told) == (["msg_kept"], [execution.job_id])
    finally:
        transport.cancel = original  # type: ignore[method-assign]
        job_cancelled.disconnect(on_cancelled)


def test_cancel_an_unknown_job_raises() -> None:
    with pytest.raises(JobExecution.DoesNotExist):
        job_dispatcher.cancel("no-such-job")


def test_retry_publishes_a_failed_job_again_under_the_same_id() -> None:
    job_id = job_dispatcher.enqueue("flaky", {"fail_times": 4}, options={"retries": 1})
    failed = JobExecution.objects.get(job_id=job_id)
    assert failed.status == JobStatus.FAILED
    assert SideEffect.objects.filter(job_id=job_id).count() == 2

    assert job_dispatcher.retry(job_id) == job_id

    execution = JobExecution.objects.get(job_id=job_id)
    # A new publish gets its own 1 + retries attempts: two more runs, both failing again.
    assert execution.status == JobStatus.FAILED
    assert SideEffect.objects.filter(job_id=job_id).count() == 4
    assert execution.message_id != failed.message_id
    assert execution.options["deduplication_id"] != failed.options["deduplication_id"]
    assert execution.options["deduplication_id"].startswith(f"{job_id}:retry:")


def test_retry_a_cancelled_job_runs_it() -> None:
    execution = recorded(status=JobStatus.CANCELLED)
    job_dispatcher.retry(execution.job_id)
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.error == ""


@pytest.mark.parametrize(
    "status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
)
def test_retry_refuses_jobs_that_are_not_failed_or_cancelled(status: str) -> None:
    execution = recorded(status=status)
    with pytest.raises(JobStateError, match=f"is {status}; only failed or cancelled"):
        job_dispatcher.retry(execution.job_id)
    assert not SideEffect.objects.exists()


def test_a_delivery_whose_job_was_failed_and_retried_meanwhile_writes_nothing() -> None:
    # Delivery A outlived its lease; QStash gave up and its notice failed the job; the job was
    # retried by hand, and delivery B holds it now, with the same attempt count as A.
    execution = recorded()
    first = statements.claim(execution.job_id, lease_seconds=60)
    assert first is not None
    JobExecution.objects.filter(pk=execution.pk).update(status=JobStatus.FAILED)
    with transaction.atomic():  # The retry's publish waits for the commit.
        job_dispatcher.retry(execution.job_id)
        second = statements.claim(execution.job_id, lease_seconds=60)
        assert second is not None
        assert second.attempts == first.attempts

        assert statements.update_if_claimed(first, status=JobStatus.FAILED) is False
        assert statements.update_if_claimed(second, status=JobStatus.COMPLETED) is True
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
