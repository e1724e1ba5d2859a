"""Jobs end to end: enqueue, QStash-compatible server, signed delivery, receiver, database."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from qstash import QStash

from django_qstash_jobs import job_dispatcher, outbox
from django_qstash_jobs.exceptions import EnqueueError, PublishRefused
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus
from tests.concurrency import at_once
from tests.devserver.conftest import Destination
from tests.e2e.conftest import wait_for, wait_until
from tests.servers import TOKEN, DevServerProcess, qstash_settings
from tests.signing_helpers import qstash_token
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_job_goes_through_qstash_and_completes(through_qstash: DevServerProcess) -> None:
    job_id = job_dispatcher.enqueue(
        "echo", {"message": "over http"}, {"user_id": 7}, {"headers": {"X-Custom": "value"}}
    )
    execution = wait_for(job_id, JobStatus.COMPLETED)
    assert execution.result == {"echo": "over http", "attempt": 1}
    assert execution.message_id and execution.message_id.startswith("msg")
    assert execution.attempts == 1
    assert SideEffect.objects.filter(job_id=job_id).count() == 1


def test_a_failing_job_is_retried_by_qstash_until_it_fails(
    through_qstash: DevServerProcess,
) -> None:
    job_id = job_dispatcher.enqueue("flaky", {"fail_times": 99}, options={"retries": 2})
    execution = wait_for(job_id, JobStatus.FAILED)
    assert execution.attempts == 3
    assert list(
        SideEffect.objects.filter(job_id=job_id).order_by("pk").values_list("label", flat=True)
    ) == ["attempt-1", "attempt-2", "attempt-3"]
    assert "Traceback" in execution.traceback

    # QStash gave up too: the message is in its dead-letter queue.
    client = QStash(TOKEN, base_url=through_qstash.url)
    wait_until(
        lambda: any(m.message_id == execution.message_id for m in client.dlq.list().messages),
        what="the message in the DLQ",
    )


def test_a_job_that_recovers_on_retry_completes(through_qstash: DevServerProcess) -> None:
    job_id = job_dispatcher.enqueue("flaky", {"fail_times": 1}, options={"retries": 3})
    execution = wait_for(job_id, JobStatus.COMPLETED)
    assert execution.attempts == 2
    assert execution.error == ""


def test_a_permanent_error_is_not_retried(through_qstash: DevServerProcess) -> None:
    job_id = job_dispatcher.enqueue("permanent", {}, options={"retries": 5})
    execution = wait_for(job_id, JobStatus.FAILED)
    client = QStash(TOKEN, base_url=through_qstash.url)
    wait_until(
        lambda: any(m.message_id == execution.message_id for m in client.dlq.list().messages),
        what="the message in the DLQ",
    )
    assert SideEffect.objects.filter(job_id=job_id).count() == 1
    assert execution.attempts == 1


def test_enqueue_many_goes_out_in_one_batch(through_qstash: DevServerProcess) -> None:
    ids = job_dispatcher.enqueue_many(
        [{"job_type": "echo", "payload": {"message": str(i)}} for i in range(25)]
    )
    for job_id in ids:
        wait_for(job_id, JobStatus.COMPLETED)
    assert SideEffect.objects.count() == 25
    assert len(set(JobExecution.objects.values_list("message_id", flat=True))) == 25


@pytest.mark.parametrize("key", ["once", "welcome: zoë@example.com "], ids=["ascii", "any text"])
def test_concurrent_enqueues_with_one_idempotency_key_deliver_once(
    through_qstash: DevServerProcess, live_server: Any, key: str
) -> None:
    # A key no header can carry is published under its SHA-256, deduplicated all the same.
    with override_settings(QSTASH_JOBS=qstash_settings(through_qstash.url, live_server.url)):
        results = at_once(
            lambda: job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": key}),
            8,
        )

    assert len(set(results)) == 1
    wait_for(results[0], JobStatus.COMPLETED)
    # Nothing else arrives: one publish, one delivery.
    client = QStash(TOKEN, base_url=through_qstash.url)
    published = [event for event in client.log.list().logs if event.state.value == "CREATED"]
    assert len(published) == 1
    assert SideEffect.objects.count() == 1


@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
def test_a_key_used_again_after_its_job_was_deleted_runs_its_new_job(
    through_qstash: DevServerProcess, many: bool
) -> None:
    # QStash remembers a deduplication id (the key) for minutes, whoever published it (another
    # site on the account, a job since deleted): it answers the new publish as a duplicate of a
    # message that will never run this job, which is then published under its own id.
    def enqueue(message: str) -> str:
        metadata = {"idempotency_key": "nightly"}
        if many:
            jobs = [{"job_type": "echo", "payload": {"message": message}, "metadata": metadata}]
            return job_dispatcher.enqueue_many(jobs * 2)[0]
        return job_dispatcher.enqueue("echo", {"message": message}, metadata)

    first = enqueue("1")
    wait_for(first, JobStatus.COMPLETED)
    JobExecution.objects.filter(job_id=first).delete()

    second = enqueue("2")

    assert second != first
    execution = wait_for(second, JobStatus.COMPLETED)
    assert execution.result == {"echo": "2", "attempt": 1}
    assert execution.options["deduplication_id"] == "nightly"


def test_a_republished_key_whose_message_is_waiting_is_not_sent_twice(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    # The publish went out but its message id was lost: republish_jobs sends it again, QStash
    # answers with the waiting message, which is this job's: nothing more is published.
    server = devserver_factory(backoff_scale=1.0)  # the delay is real: the message waits
    with override_settings(QSTASH_JOBS=qstash_settings(server.url, live_server.url)):
        job_id = job_dispatcher.enqueue(
            "echo", {"message": "once"}, {"idempotency_key": "weekly"}, {"delay": 600_000}
        )
        published = JobExecution.objects.get(job_id=job_id).message_id
        JobExecution.objects.filter(job_id=job_id).update(status=JobStatus.PENDING, message_id=None)

        assert outbox.republish_pending(older_than=timedelta(0)).published == 1

    assert JobExecution.objects.get(job_id=job_id).message_id == published
    assert QStash(TOKEN, base_url=server.url).message.cancel_all() == 1


def test_a_delayed_job_can_be_cancelled_before_delivery(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory(backoff_scale=1.0)  # delays are real here
    with override_settings(QSTASH_JOBS=qstash_settings(server.url, live_server.url)):
        job_id = job_dispatcher.enqueue("echo", {"message": "later"}, options={"delay": 60_000})
        execution = wait_for(job_id, JobStatus.QUEUED)
        client = QStash(TOKEN, base_url=server.url)
        assert client.message.get(execution.message_id).message_id == execution.message_id

        assert job_dispatcher.cancel(job_id) is True

        with pytest.raises(Exception, match="404"):
            client.message.get(execution.message_id)
    assert JobExecution.objects.get(job_id=job_id).status == JobStatus.CANCELLED
    assert not SideEffect.objects.exists()


def test_a_job_enqueued_while_qstash_is_down_is_published_by_republish_jobs(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory()
    server.stop()
    settings = qstash_settings(server.url, live_server.url, PUBLISH_TIMEOUT=2)
    with override_settings(QSTASH_JOBS=settings):
        with pytest.raises(EnqueueError):
            job_dispatcher.enqueue("echo", {"message": "kept"})
        execution = JobExecution.objects.get()
        assert execution.status == JobStatus.PENDING

        server.start()
        JobExecution.objects.update(created_at=timezone.now() - timedelta(minutes=5))
        call_command("republish_jobs")
        call_command("republish_jobs")
        wait_for(execution.job_id, JobStatus.COMPLETED)
    assert SideEffect.objects.filter(job_id=execution.job_id).count() == 1


def test_a_delayed_job_published_late_waits_only_what_is_left_of_its_delay(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory(backoff_scale=1.0)  # delays are real here
    server.stop()
    settings = qstash_settings(server.url, live_server.url, PUBLISH_TIMEOUT=2)
    with override_settings(QSTASH_JOBS=settings):
        with pytest.raises(EnqueueError):
            job_dispatcher.enqueue("echo", {"message": "soon"}, options={"delay": 600_000})
        server.start()
        enqueued_at = timezone.now() - timedelta(minutes=8)
        JobExecution.objects.update(created_at=enqueued_at)
        call_command("republish_jobs")
        execution = JobExecution.objects.get()
        assert execution.message_id
        message = QStash(TOKEN, base_url=server.url).message.get(execution.message_id)
    due = (enqueued_at + timedelta(minutes=10)).timestamp() * 1000
    # Two minutes left of ten, not ten more: due when it was due, give or take the rounding.
    assert due <= message.not_before <= due + 2_000


def test_a_job_delivered_before_its_transaction_commits_runs_once_committed(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    # With ENQUEUE_ON_COMMIT off, an enqueue inside a transaction publishes at once, and QStash
    # may deliver before the commit. The receiver cannot see the row yet (on PostgreSQL; on
    # SQLite its claim waits for the lock): it answers busy, and QStash's retry finds the row.
    server = devserver_factory(backoff_scale=0.1)  # the busy answer's 10 s are 1 s here
    settings = qstash_settings(server.url, live_server.url, ENQUEUE_ON_COMMIT=False)
    with override_settings(QSTASH_JOBS=settings):
        with transaction.atomic():
            job_id = job_dispatcher.enqueue("echo", {"message": "early"})
            message_id = JobExecution.objects.get(job_id=job_id).message_id
            if connection.vendor == "postgresql":
                wait_until(
                    lambda: bool(events(server, messageId=message_id, state="RETRY")),
                    what="the delivery made before the commit",
                )
        execution = wait_for(job_id, JobStatus.COMPLETED)
    first_run = 2 if connection.vendor == "postgresql" else 1  # after the busy answer
    assert execution.result == {"echo": "early", "attempt": first_run}


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite's claim waits for the open transaction's lock: no delivery is answered busy",
)
def test_a_job_whose_transaction_outlasts_several_deliveries_runs_once_committed(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    # Each delivery before the commit is answered busy, never refused: refused, the job was
    # lost once it committed (queued, for a message QStash had given up on).
    server = devserver_factory(backoff_scale=0.05)
    settings = qstash_settings(server.url, live_server.url, ENQUEUE_ON_COMMIT=False)
    with override_settings(QSTASH_JOBS=settings):
        with transaction.atomic():
            job_id = job_dispatcher.enqueue("echo", {"message": "late"})
            message_id = JobExecution.objects.get(job_id=job_id).message_id
            wait_until(
                lambda: len(events(server, messageId=message_id, state="RETRY")) >= 2,
                what="two deliveries made before the commit",
            )
        execution = wait_for(job_id, JobStatus.COMPLETED)
    assert execution.result == {"echo": "late", "attempt": 3}


def events(server: DevServerProcess, **filters: Any) -> list[dict[str, Any]]:
    """The local QStash server's log events matching ``filters``."""
    response = requests.get(
        f"{server.url}/v2/events",
        params=filters,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def pending(**options: Any) -> JobExecution:
    """A row waiting to be published, with ``options`` as stored (enqueue's checks bypassed)."""
    return JobExecution.objects.create(
        job_type="echo",
        payload={"message": "waiting"},
        status=JobStatus.PENDING,
        options=options,
        created_at=timezone.now() - timedelta(minutes=5),
    )


def test_a_row_qstash_refuses_is_failed_and_holds_back_no_other(
    through_qstash: DevServerProcess,
) -> None:
    # Oldest first: without isolation, the refused row would fail every batch for ever.
    refused = pending(callback="http://bad host/")
    others = [pending(), pending()]

    report = outbox.republish_pending(older_than=timedelta(0))

    # Refused while QStash took the others: that message's own fault, so it is failed.
    assert (report.refused, report.published, report.failed) == (1, 2, 0)
    refused.refresh_from_db()
    assert refused.status == JobStatus.FAILED
    assert refused.error.startswith("PublishRefused: QStash refused the publish (")
    assert "invalid callback url" in refused.error
    for execution in others:
        wait_for(execution.job_id, JobStatus.COMPLETED)
    assert outbox.republish_pending(older_than=timedelta(0)).refused == 0  # failed: not again


def test_a_whole_batch_qstash_refuses_holds_back_no_row_behind_it(
    through_qstash: DevServerProcess,
) -> None:
    # Each refused alone too (as a delay past the plan's limit is), so nothing in the batch
    # shows whose fault it is: set aside, and failed once QStash takes a later batch.
    refused = [pending(callback="http://bad host/") for _ in range(2)]
    behind = pending()
    JobExecution.objects.filter(pk=behind.pk).update(created_at=timezone.now())

    report = outbox.republish_pending(older_than=timedelta(0), batch_size=2)

    assert (report.refused, report.published, report.failed) == (2, 1, 0)
    for row in refused:
        row.refresh_from_db()
        assert row.status == JobStatus.FAILED
        assert "invalid callback url" in row.error
    wait_for(behind.job_id, JobStatus.COMPLETED)


def test_a_run_where_qstash_refuses_everything_leaves_every_row_pending(
    through_qstash: DevServerProcess,
) -> None:
    rows = [pending(callback="http://bad host/") for _ in range(3)]

    report = outbox.republish_pending(older_than=timedelta(0), batch_size=2)

    assert (report.refused, report.published, report.failed) == (0, 0, 3)
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.publish_claimed_at) == (JobStatus.PENDING, None)


@pytest.mark.parametrize("batch", [False, True], ids=["one job", "a batch"])
def test_a_refusal_of_every_message_leaves_the_rows_pending(
    through_qstash: DevServerProcess, batch: bool
) -> None:
    # Nothing shows the refusal is the messages' own: a RECEIVER_URL QStash will not deliver to
    # is refused for every job alike. They wait for republish_jobs, once it is fixed.
    rows = [pending(headers={"X-Name": "José"}), pending(callback="http://bad host/")]
    rows = rows if batch else rows[:1]

    with pytest.raises(PublishRefused, match="pending") as caught:
        outbox.publish(rows)

    assert caught.value.failed is False
    assert sorted(caught.value.job_ids) == sorted(row.job_id for row in rows)
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.publish_claimed_at) == (JobStatus.PENDING, None)


@pytest.mark.parametrize(
    "options",
    [{"headers": {"X-A": "line\nbreak"}}, {"deduplication_id": " padded "}],
    ids=["line break", "padded deduplication id"],
)
def test_a_header_http_cannot_carry_is_a_refusal_not_an_outage(
    through_qstash: DevServerProcess, options: dict[str, Any]
) -> None:
    # Rows written before enqueue checked these: the HTTP client refuses them before sending,
    # which used to read "QStash could not be reached" though it was up.
    row = pending(**options)
    with pytest.raises(PublishRefused, match="cannot be sent"):
        outbox.publish([row])
    row.refresh_from_db()
    assert row.status == JobStatus.PENDING


def test_a_refused_publish_after_commit_lets_the_other_callbacks_run(
    through_qstash: DevServerProcess,
) -> None:
    refused, other = pending(callback="http://bad host/"), pending()
    later: list[str] = []
    with transaction.atomic():
        outbox.publish_on_commit([refused, other])
        transaction.on_commit(lambda: later.append("ran"))

    assert later == ["ran"]
    assert JobExecution.objects.get(pk=refused.pk).status == JobStatus.FAILED
    wait_for(other.job_id, JobStatus.COMPLETED)


def test_every_publish_asks_qstash_to_report_its_final_failure(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory(backoff_scale=1.0)  # delays are real: the messages stay there
    client = QStash(TOKEN, base_url=server.url)
    with override_settings(QSTASH_JOBS=qstash_settings(server.url, live_server.url)):
        ours = job_dispatcher.enqueue("echo", {"message": "x"}, options={"delay": 60_000})
        theirs = job_dispatcher.enqueue(
            "echo",
            {"message": "y"},
            options={"delay": 60_000, "failure_callback": "https://example.com/failed"},
        )
        batched = job_dispatcher.enqueue_many(
            [{"job_type": "echo", "payload": {"message": "z"}, "options": {"delay": 60_000}}] * 2
        )
        messages = {
            job_id: client.message.get(wait_for(job_id, JobStatus.QUEUED).message_id or "")
            for job_id in (ours, theirs, *batched)
        }
    receiver = f"{live_server.url}/jobs/receive/"
    # A job's own failure_callback too: the receiver records the failure, then forwards it.
    assert [messages[job_id].failure_callback for job_id in (ours, theirs, *batched)] == [
        receiver
    ] * 4
    assert JobExecution.objects.get(job_id=theirs).options["failure_callback"] == (
        "https://example.com/failed"
    )


def test_a_jobs_own_failure_callback_hears_from_qstash_through_the_receiver(
    through_qstash: DevServerProcess,
) -> None:
    own = Destination()
    try:
        job_id = job_dispatcher.enqueue(
            "flaky",
            {"fail_times": 5},
            options={"retries": 0, "failure_callback": own.url("/failed")},
        )
        (notice,) = own.wait_for(1, "/failed")
    finally:
        own.close()
    execution = JobExecution.objects.get(job_id=job_id)
    assert execution.status == JobStatus.FAILED
    body = json.loads(notice.body)
    # QStash's own notice, as it would have sent it: about the job's message, signed by QStash.
    assert body["sourceMessageId"] == execution.message_id
    assert "Upstash-Signature" in notice.headers


def test_a_notice_about_a_job_that_completed_is_not_forwarded(
    through_qstash: DevServerProcess, live_server: Any
) -> None:
    # QStash gave up on the message (the worker died before answering), but the job completed:
    # the job's own failure_callback is about the job, and hears nothing.
    job_id = job_dispatcher.enqueue(
        "echo", {"message": "done"}, options={"failure_callback": "https://example.com/failed"}
    )
    execution = wait_for(job_id, JobStatus.COMPLETED)
    source = json.dumps(
        {
            "job_id": job_id,
            "job_type": "echo",
            "deduplication_id": execution.options["deduplication_id"],
        }
    )
    body = json.dumps(
        {
            "sourceMessageId": execution.message_id,
            "retried": 3,
            "status": 504,
            "sourceBody": base64.b64encode(source.encode()).decode(),
        }
    ).encode()
    receiver = f"{live_server.url}/jobs/receive/"

    answer = requests.post(
        receiver,
        data=body,
        timeout=10,
        headers={"Upstash-Signature": qstash_token(body, url=receiver)},
    )

    assert answer.status_code == 200
    assert events(through_qstash, url="https://example.com/failed") == []  # nothing published


def test_a_job_whose_attempts_time_out_is_failed_when_qstash_gives_up(
    devserver_factory: Callable[..., DevServerProcess],
    live_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As on a platform that cuts requests short: QStash stops waiting after 1 s, the handler
    # needs 8 s, and the job has no retries. QStash's failure notice first finds the job held
    # (its lease has 1 s left), is answered busy, and fails it once the lease has run out,
    # seconds before the handler ends (a loaded machine delays the notice's return).
    server = devserver_factory(backoff_scale=1.0, delivery_timeout=1.0)
    settings = qstash_settings(server.url, live_server.url, LEASE_SECONDS=2)
    with override_settings(QSTASH_JOBS=settings):
        job_id = job_dispatcher.enqueue("sleep", {"seconds": 8})
        execution = wait_for(job_id, JobStatus.FAILED, timeout=20)
    assert execution.error.startswith("QStash stopped delivering this job after 1 attempt; ")
    assert "no answer (ReadTimeout" in execution.error
    assert execution.attempts == 1

    # The handler ends later; its outcome does not undo the failure QStash has acted on.
    wait_until(lambda: "finished after its lease" in caplog.text, what="the handler's end")
    assert JobExecution.objects.get().status == JobStatus.FAILED


def test_a_schedule_firing_records_a_job_linked_to_its_schedule(
    through_qstash: DevServerProcess,
) -> None:
    schedule = JobSchedule.objects.create(
        schedule_id="nightly-echo",
        name="nightly-echo",
        job_type="echo",
        cron="0 2 * * *",
        payload={"message": "from the schedule"},
        organization_id="456",
    )
    client = QStash(TOKEN, base_url=through_qstash.url)
    from django_qstash_jobs.conf import get_config

    client.schedule.create_json(
        destination=get_config().receiver_url or "",
        cron=schedule.cron,
        body={"schedule_id": schedule.schedule_id},
        schedule_id=schedule.schedule_id,
    )
    response = client.http.request(
        path=f"/v2/schedules/{schedule.schedule_id}/trigger", method="POST"
    )
    message_id = response["messageId"]

    wait_until(lambda: JobExecution.objects.filter(message_id=message_id).exists(), what="the row")
    execution = JobExecution.objects.get(message_id=message_id)
    execution = wait_for(execution.job_id, JobStatus.COMPLETED)
    assert execution.schedule == schedule
    assert execution.organization_id == "456"
    assert execution.result == {"echo": "from the schedule", "attempt": 1}
    assert json.dumps(execution.payload)


def test_killing_the_dev_server_mid_flight_loses_no_job_and_runs_none_twice(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory()
    settings = qstash_settings(server.url, live_server.url)
    with override_settings(QSTASH_JOBS=settings):
        ids = job_dispatcher.enqueue_many(
            [{"job_type": "sleep", "payload": {"seconds": 0.05}} for _ in range(30)]
        )
        wait_until(lambda: SideEffect.objects.count() >= 3, what="some jobs to start")
        server.kill()
        server.start()  # same database file: undelivered messages survive
        for job_id in ids:
            wait_for(job_id, JobStatus.COMPLETED, timeout=30)
    runs = list(SideEffect.objects.values_list("job_id", flat=True))
    assert sorted(runs) == sorted(ids)  # every job ran, and exactly once
