"""The outbox: a publish that fails leaves the row pending; republish_jobs publishes it once."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.exceptions import EnqueueError, PublishRefused
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.outbox import republish_pending
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage
from tests.concurrency import at_once
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port_url() -> str:
    """The URL of a port nobody listens on: a QStash that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def unreachable_qstash(**extra: Any) -> Any:
    return override_settings(
        QSTASH_JOBS={
            "TRANSPORT": "qstash",
            "URL": closed_port_url(),
            "TOKEN": "token",
            "RECEIVER_URL": "http://testserver/jobs/receive/",
            "PUBLISH_TIMEOUT": 2,
            **extra,
        }
    )


def age(job_id: str, seconds: int = 120) -> None:
    JobExecution.objects.filter(job_id=job_id).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_failed_publish_raises_and_keeps_the_row_pending() -> None:
    with unreachable_qstash(), pytest.raises(EnqueueError, match="could not be reached") as caught:
        job_dispatcher.enqueue("echo", {"message": "x"})

    execution = JobExecution.objects.get()
    assert caught.value.job_ids == [execution.job_id]
    assert "republish_jobs" in str(caught.value)
    assert execution.status == JobStatus.PENDING
    assert execution.message_id is None


def test_a_failed_publish_after_commit_is_logged_not_raised() -> None:
    with unreachable_qstash(), transaction.atomic():
        job_dispatcher.enqueue("echo", {"message": "x"})
    assert JobExecution.objects.get().status == JobStatus.PENDING


def test_republish_jobs_publishes_pending_rows_once() -> None:
    with unreachable_qstash(), pytest.raises(EnqueueError):
        job_dispatcher.enqueue("echo", {"message": "x"})
    job_id = JobExecution.objects.get().job_id

    call_command("republish_jobs")  # too young: an on-commit publish may still be in flight
    assert JobExecution.objects.get().status == JobStatus.PENDING

    age(job_id)
    call_command("republish_jobs")  # the immediate transport: publishing runs the job
    call_command("republish_jobs")
    execution = JobExecution.objects.get()
    assert execution.status == JobStatus.COMPLETED
    assert SideEffect.objects.filter(job_id=job_id).count() == 1


@pytest.mark.parametrize(
    "arguments",
    [
        ["--batch-size", "0"],
        ["--batch-size", "-1"],
        ["--limit", "0"],
        ["--older-than", "nan"],
        ["--older-than", "inf"],
        ["--older-than", "-1"],
        ["--older-than", "soon"],
    ],
)
def test_republish_jobs_refuses_bad_arguments(arguments: list[str]) -> None:
    # Each used to raise from deep inside, or to publish nothing and report success.
    from django.core.management.base import CommandError

    execution = JobExecution.objects.create(job_type="echo", payload={"message": "x"})
    age(execution.job_id)
    with pytest.raises(CommandError, match=arguments[0]):
        call_command("republish_jobs", *arguments)
    assert JobExecution.objects.get().status == JobStatus.PENDING


def test_a_job_retried_by_hand_is_not_republished_while_its_publish_is_in_flight() -> None:
    from django_qstash_jobs.transports import get_transport

    execution = JobExecution.objects.create(
        job_type="echo", payload={"message": "x"}, status=JobStatus.FAILED
    )
    age(execution.job_id, seconds=3600)  # an old job: past any grace period
    transport = get_transport()
    publish = transport.publish
    published: list[str] = []
    republished: list[int] = []

    def publish_while_cron_runs(messages: Any) -> list[str]:
        if not published:
            published.append("retry")
            republished.append(republish_pending(older_than=timedelta(0)).published)
        return publish(messages)

    transport.publish = publish_while_cron_runs  # type: ignore[method-assign]
    try:
        job_dispatcher.retry(execution.job_id)
    finally:
        transport.publish = publish  # type: ignore[method-assign]

    assert republished == [0]
    execution.refresh_from_db()
    assert (execution.status, execution.publish_claimed_at) == (JobStatus.COMPLETED, None)
    assert SideEffect.objects.filter(job_id=execution.job_id).count() == 1


def test_republish_jobs_fails_loudly_while_qstash_is_down() -> None:
    from django.core.management.base import CommandError

    execution = JobExecution.objects.create(job_type="echo", payload={"message": "x"})
    age(execution.job_id)
    with unreachable_qstash(), pytest.raises(CommandError, match="1 jobs could not be published"):
        call_command("republish_jobs")
    execution.refresh_from_db()
    assert execution.status == JobStatus.PENDING
    assert execution.publish_claimed_at is None  # released for the next run


def test_two_republish_runs_at_once_publish_each_row_once() -> None:
    executions = [
        JobExecution.objects.create(job_type="echo", payload={"message": str(i)}) for i in range(40)
    ]
    for execution in executions:
        age(execution.job_id)
    reports = at_once(lambda: republish_pending(batch_size=5), 2)

    assert sum(report.published for report in reports) == 40
    assert SideEffect.objects.count() == 40
    assert set(SideEffect.objects.values_list("job_id", flat=True)) == {
        execution.job_id for execution in executions
    }
    assert set(JobExecution.objects.values_list("status", flat=True)) == {JobStatus.COMPLETED}


def test_a_long_republish_run_does_not_carry_what_it_already_published() -> None:
    # Each batch's SELECT once excluded every row handled so far: quadratic work, and past
    # SQLite's parameter limit an error, on a large backlog.
    for index in range(30):
        age(JobExecution.objects.create(job_type="echo", payload={"message": str(index)}).job_id)
    with CaptureQueriesContext(connection) as queries:
        report = republish_pending(batch_size=5)
    assert report.published == 30
    selects = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT") and "publish_claimed_at" in query["sql"]
    ]
    assert len(selects) == 7  # six batches of five, then an empty one
    assert max(map(len, selects)) == min(map(len, selects))


def test_republish_leaves_other_states_alone() -> None:
    for status in (JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED):
        execution = JobExecution.objects.create(
            job_type="echo", payload={"message": "x"}, status=status
        )
        age(execution.job_id)
    assert republish_pending().published == 0
    assert not SideEffect.objects.exists()


def test_a_publish_that_cannot_be_recorded_still_counts_as_enqueued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The database fails right after QStash accepted the message: the caller must not be told
    # the job was refused, since it will run.
    from django.db import OperationalError

    from django_qstash_jobs import statements

    def database_gone(*args: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(statements, "mark_one_published", database_gone)
    job_id = job_dispatcher.enqueue("echo", {"message": "x"})
    assert SideEffect.objects.filter(job_id=job_id).count() == 1
    assert JobExecution.objects.get(job_id=job_id).message_id is None


def test_a_delay_counts_from_the_enqueue_not_from_a_late_publish() -> None:
    from django_qstash_jobs.outbox import outgoing

    execution = JobExecution.objects.create(job_type="echo", options={"delay_seconds": 60})
    assert outgoing(execution).options.delay_seconds == 60

    execution.created_at = timezone.now() - timedelta(seconds=45, milliseconds=500)
    assert outgoing(execution).options.delay_seconds == 15  # rounded up: never early

    execution.created_at = timezone.now() - timedelta(minutes=5)
    assert outgoing(execution).options.delay_seconds == 0  # overdue: at once


class SecondChunkFails(BaseTransport):
    """Takes the first message, then fails naming only the next one, as a chunked batch does."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        raise EnqueueError("QStash could not be reached", job_ids=[messages[1].job_id])

    def cancel(self, message_id: str) -> None:
        pass


def test_a_failed_batch_names_every_job_it_left_pending() -> None:
    # The chunk before the failed one was taken but not marked, the one after it never sent.
    jobs = [{"job_type": "echo", "payload": {"message": str(n)}} for n in range(3)]
    settings = {
        "TRANSPORT": f"{__name__}.SecondChunkFails",
        "RECEIVER_URL": "http://testserver/jobs/receive/",
    }
    with override_settings(QSTASH_JOBS=settings), pytest.raises(EnqueueError) as caught:
        job_dispatcher.enqueue_many(jobs)

    pending = JobExecution.objects.filter(status=JobStatus.PENDING)
    assert sorted(caught.value.job_ids) == sorted(pending.values_list("job_id", flat=True))
    assert len(caught.value.job_ids) == 3


class RefusesEverything(BaseTransport):
    """QStash refusing every message, as it does a RECEIVER_URL it will not deliver to."""

    requests: ClassVar[list[int]] = []

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        self.requests.append(len(messages))
        raise PublishRefused("QStash refused the publish (400: destination not allowed)")

    def cancel(self, message_id: str) -> None:
        pass


@pytest.mark.parametrize(("limit", "tried"), [(5, 5), (None, 15)])
def test_a_run_refused_everything_stops_at_its_limit_or_after_three_batches(
    limit: int | None, tried: int
) -> None:
    for number in range(20):
        pending = JobExecution.objects.create(job_type="echo", payload={"message": str(number)})
        age(pending.job_id, seconds=300)
    RefusesEverything.requests.clear()
    settings = {
        "TRANSPORT": f"{__name__}.RefusesEverything",
        "RECEIVER_URL": "http://testserver/jobs/receive/",
    }
    with override_settings(QSTASH_JOBS=settings):
        report = republish_pending(batch_size=5, limit=limit)

    # Each batch, then each of its rows alone: trying every pending row would change nothing.
    assert (report.published, report.failed) == (0, tried)
    assert sum(1 for size in RefusesEverything.requests if size == 1) == tried
    assert JobExecution.objects.filter(status=JobStatus.PENDING).count() == 20
