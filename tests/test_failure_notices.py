"""QStash's failure callback: a job QStash gave up on is failed, with the reason, exactly once."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.exceptions import DeliveryAbandoned, EnqueueError
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus
from django_qstash_jobs.outbox import outgoing
from django_qstash_jobs.signals import job_failed
from tests.test_republish import unreachable_qstash

pytestmark = pytest.mark.django_db(transaction=True)

Deliver = Callable[..., Any]


def notice(
    source: dict[str, Any] | bytes,
    *,
    message_id: str = "msg_gone",
    status: int = 504,
    response: bytes = b"Gateway Timeout",
    retried: int = 3,
    **extra: Any,
) -> dict[str, Any]:
    """A failure callback's body, as QStash sends it once it gives up on ``message_id``."""
    raw = source if isinstance(source, bytes) else json.dumps(source).encode()
    return {
        "status": status,
        "header": {"Content-Type": ["text/plain"]},
        "body": base64.b64encode(response).decode(),
        "retried": retried,
        "maxRetries": retried,
        "dlqId": "1725323658779-0",
        "sourceMessageId": message_id,
        "url": "http://testserver/jobs/receive/",
        "method": "POST",
        "sourceHeader": {"Content-Type": ["application/json"]},
        "sourceBody": base64.b64encode(raw).decode(),
        "notBefore": "1701198458025",
        "createdAt": "1701198447054",
        "callerIP": "127.0.0.1",
        **extra,
    }


def job(status: str = JobStatus.QUEUED, **fields: Any) -> JobExecution:
    """A job published as message msg_gone, under the deduplication id pub-1."""
    fields.setdefault("message_id", "msg_gone")
    fields.setdefault("options", {"deduplication_id": "pub-1"})
    return JobExecution.objects.create(
        job_type="echo", payload={"message": "hi"}, status=status, **fields
    )


def source_of(execution: JobExecution) -> dict[str, Any]:
    """The body of the job's message, as the transport publishes it."""
    return outgoing(execution).body()


@pytest.fixture
def failures() -> Iterator[list[dict[str, Any]]]:
    """The job_failed signals sent."""
    sent: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        sent.append(kwargs)

    job_failed.connect(receiver)
    yield sent
    job_failed.disconnect(receiver)


def test_a_job_qstash_gave_up_on_is_failed_with_the_reason(
    deliver: Deliver, failures: list[dict[str, Any]]
) -> None:
    execution = job()

    response = deliver(notice(source_of(execution)))

    assert (response.status_code, response.json()) == (200, {"status": "acknowledged"})
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.error == (
        "QStash stopped delivering this job after 4 attempts; the last got HTTP 504: "
        "Gateway Timeout"
    )
    assert execution.finished_at is not None
    [sent] = failures
    assert sent["execution"].job_id == execution.job_id
    assert sent["error"] == execution.error
    assert isinstance(sent["exception"], DeliveryAbandoned)


def test_an_attempt_that_got_no_answer_says_why(deliver: Deliver) -> None:
    execution = job()
    body = notice(
        source_of(execution), status=0, response=b"", retried=0, error="ReadTimeout: 15 s"
    )
    assert deliver(body).status_code == 200
    execution.refresh_from_db()
    assert execution.error == (
        "QStash stopped delivering this job after 1 attempt; the last got no answer "
        "(ReadTimeout: 15 s)"
    )


def test_an_error_page_is_kept_on_one_line(deliver: Deliver) -> None:
    execution = job()
    page = b"<html>\n  <title>Internal Server Error</title>\n</html>\n"
    assert deliver(notice(source_of(execution), status=500, response=page)).status_code == 200
    execution.refresh_from_db()
    assert execution.error.endswith("HTTP 500: <html> <title>Internal Server Error</title> </html>")


def test_a_worker_that_died_holding_the_job_leaves_it_failed(deliver: Deliver) -> None:
    execution = job(JobStatus.RUNNING, attempts=2, lease_expires_at=timezone.now())
    assert deliver(notice(source_of(execution))).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.lease_expires_at is None


def test_a_job_still_held_by_a_delivery_is_busy_until_its_lease_runs_out(
    deliver: Deliver,
) -> None:
    # QStash stopped waiting, but the worker may not have stopped: its outcome must win.
    lease = timezone.now() + timedelta(seconds=40)
    execution = job(JobStatus.RUNNING, attempts=1, lease_expires_at=lease)

    busy = deliver(notice(source_of(execution)))

    assert busy.status_code == 503
    assert 1 <= int(busy["Retry-After"]) <= 40
    execution.refresh_from_db()
    assert (execution.status, execution.error) == (JobStatus.RUNNING, "")

    JobExecution.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert deliver(notice(source_of(execution))).status_code == 200
    assert JobExecution.objects.get().status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (JobStatus.COMPLETED, ""),
        (JobStatus.FAILED, "ValueError: the handler's own error"),
        (JobStatus.CANCELLED, ""),
    ],
)
def test_a_finished_job_is_left_as_it_is(
    deliver: Deliver, failures: list[dict[str, Any]], status: str, error: str
) -> None:
    # A handler that failed its last attempt failed the job itself: QStash's notice follows.
    execution = job(status, error=error)
    response = deliver(notice(source_of(execution)))
    assert (response.status_code, response.json()) == (200, {"status": "acknowledged"})
    execution.refresh_from_db()
    assert (execution.status, execution.error) == (status, error)
    assert failures == []


def test_a_notice_about_the_publish_before_a_retry_leaves_the_retried_job_alone(
    deliver: Deliver, failures: list[dict[str, Any]]
) -> None:
    # The first notice failed the job; it was retried, and QStash was down at that moment, so
    # the row waits for republish_jobs. Then QStash delivers the first notice once more.
    execution = job(JobStatus.FAILED)
    earlier = source_of(execution)
    with unreachable_qstash(), pytest.raises(EnqueueError):
        job_dispatcher.retry(execution.job_id)

    response = deliver(notice(earlier))

    assert (response.status_code, response.json()) == (200, {"status": "acknowledged"})
    execution.refresh_from_db()
    assert execution.status == JobStatus.PENDING
    assert failures == []


def test_a_notice_about_the_current_publish_fails_a_retried_job(deliver: Deliver) -> None:
    # The retry went out, but its message id could not be recorded: the row still has none.
    execution = job(JobStatus.FAILED)
    with unreachable_qstash(), pytest.raises(EnqueueError):
        job_dispatcher.retry(execution.job_id)
    execution.refresh_from_db()

    assert deliver(notice(source_of(execution), message_id="msg_retry")).status_code == 200

    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED


def test_a_job_whose_message_id_was_never_stored_takes_the_notice(deliver: Deliver) -> None:
    # Published, but the message id was not recorded (the database failed just then).
    execution = job(JobStatus.PENDING, message_id=None)
    assert deliver(notice(source_of(execution))).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED


def test_a_retried_schedule_firing_is_left_alone_by_a_notice_about_its_firing(
    deliver: Deliver,
) -> None:
    schedule = JobSchedule.objects.create(
        name="nightly", schedule_id="scd_nightly", job_type="echo", cron="0 2 * * *"
    )
    firing = job(JobStatus.FAILED, message_id="msg_firing", options={}, schedule=schedule)
    with unreachable_qstash(), pytest.raises(EnqueueError):
        job_dispatcher.retry(firing.job_id)
    body = notice(
        {"schedule_id": "scd_nightly", "job_type": "echo"},
        message_id="msg_firing",
        scheduleId="scd_nightly",
    )

    assert deliver(body).status_code == 200

    assert list(JobExecution.objects.values_list("job_id", "status")) == [
        (firing.job_id, JobStatus.PENDING)
    ]


def test_a_retrying_job_keeps_its_last_traceback(deliver: Deliver) -> None:
    execution = job(JobStatus.RETRYING, error="ValueError: flaky", traceback="Traceback ...")
    assert deliver(notice(source_of(execution))).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.error.startswith("QStash stopped delivering this job")
    assert execution.traceback == "Traceback ..."


def test_without_a_deduplication_id_the_row_is_found_by_its_message_id(deliver: Deliver) -> None:
    # A row that was never retried and whose message carried no deduplication id (a schedule's
    # firing): the message id alone names it, even when the source body is unreadable.
    execution = job(options={})
    assert deliver(notice(b"\xff not json")).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED


def test_a_notice_about_no_job_of_this_site_is_acknowledged(
    deliver: Deliver, caplog: pytest.LogCaptureFixture
) -> None:
    response = deliver(notice({"hello": "world"}, message_id="msg_elsewhere"))
    assert (response.status_code, response.json()) == (200, {"status": "acknowledged"})
    assert "msg_elsewhere" in caplog.text
    assert not JobExecution.objects.exists()


def test_a_notice_about_a_job_not_recorded_yet_comes_back_and_then_fails_it(
    deliver: Deliver, failures: list[dict[str, Any]]
) -> None:
    # ENQUEUE_ON_COMMIT off and a long transaction: QStash gave up before the row committed.
    execution = job()
    source = source_of(execution)
    JobExecution.objects.filter(pk=execution.pk).update(job_id="committing")
    source["job_id"] = execution.job_id

    early = deliver(notice(source))

    assert early.status_code == 503
    assert "Retry-After" not in early  # QStash's backoff: it waits longer each time
    JobExecution.objects.filter(pk=execution.pk).update(job_id=execution.job_id)  # committed
    assert deliver(notice(source)).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert len(failures) == 1


def test_a_schedule_firing_that_never_arrived_is_recorded_failed(deliver: Deliver) -> None:
    schedule = JobSchedule.objects.create(
        name="nightly", schedule_id="scd_nightly", job_type="echo", cron="0 2 * * *",
        payload={"message": "tick"},
    )  # fmt: skip
    body = notice(
        {"schedule_id": "scd_nightly", "job_type": "echo"},
        message_id="msg_firing",
        status=0,
        response=b"",
        error="ConnectError: connection refused",
        scheduleId="scd_nightly",
    )

    assert deliver(body).status_code == 200

    execution = JobExecution.objects.get()
    assert (execution.schedule, execution.message_id) == (schedule, "msg_firing")
    assert execution.status == JobStatus.FAILED
    assert "no answer (ConnectError: connection refused)" in execution.error


def test_a_forged_notice_changes_nothing(deliver: Deliver) -> None:
    execution = job()
    assert deliver(notice(source_of(execution)), token="forged").status_code == 401
    execution.refresh_from_db()
    assert execution.status == JobStatus.QUEUED


def test_nul_characters_never_reach_the_database(deliver: Deliver) -> None:
    # PostgreSQL's text columns, and its queries, refuse NUL; no database takes a lone surrogate.
    execution = job()
    body = notice(source_of(execution), response=b"bad\x00body", error="never\x00sent")
    assert deliver(body).status_code == 200
    execution.refresh_from_db()
    assert execution.error.endswith("HTTP 504: bad\\0body")

    execution = job(message_id="msg_other")
    body = notice(
        source_of(execution), message_id="msg_other", response=b"", status=0, error="refused \ud800"
    )
    assert deliver(body).status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert "refused \\ud800" in execution.error

    odd = notice({"job_id": "job\x00id"}, message_id="msg\x00id")
    response = deliver(odd)
    assert response.status_code == 489  # no notice, and no job named: refused for good


def test_numbers_json_allows_but_int_refuses_count_as_unknown(deliver: Deliver) -> None:
    execution = job()
    body = notice(source_of(execution), status=float("inf"), retried=float("nan"))  # type: ignore[arg-type]
    assert deliver(body).status_code == 200
    execution.refresh_from_db()
    assert execution.error.startswith("QStash stopped delivering this job after 1 attempt; ")


def test_a_handler_that_ends_after_the_notice_changes_nothing(
    deliver: Deliver, failures: list[dict[str, Any]]
) -> None:
    # Its worker outlived the lease: the notice failed the job meanwhile, and that stands.
    from django_qstash_jobs import statements
    from django_qstash_jobs.execution import _record_success
    from django_qstash_jobs.signals import job_succeeded

    execution = job()
    claimed = statements.claim(execution.job_id, lease_seconds=0)
    assert claimed is not None
    assert deliver(notice(source_of(execution))).status_code == 200
    succeeded: list[object] = []
    job_succeeded.connect(receiver := lambda **kwargs: succeeded.append(kwargs))
    try:
        _record_success(claimed, {"late": True})
    finally:
        job_succeeded.disconnect(receiver)

    execution.refresh_from_db()
    assert (execution.status, execution.result) == (JobStatus.FAILED, None)
    assert len(failures) == 1
    assert succeeded == []
