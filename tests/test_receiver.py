"""The receiver: signatures checked as QStash signs them, claiming, retries and failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from django_qstash_jobs import register_job, statements
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import UnknownJobTypeError
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.registry import registry
from django_qstash_jobs.signals import job_failed, job_retrying, job_started, job_succeeded
from tests.concurrency import at_once
from tests.signing_helpers import CURRENT_KEY, NEXT_KEY, qstash_token, unsigned_token
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)

Deliver = Callable[..., Any]


def queued(
    job_type: str = "echo", payload: dict[str, Any] | None = None, **fields: Any
) -> JobExecution:
    """A job as it is after a publish: recorded and queued, waiting for its delivery."""
    fields.setdefault("max_retries", 2)
    fields.setdefault("status", JobStatus.QUEUED)
    return JobExecution.objects.create(
        job_type=job_type,
        payload={"message": "hi"} if payload is None else payload,
        message_id=fields.pop("message_id", "msg_test"),
        **fields,
    )


def body_of(execution: JobExecution) -> bytes:
    return json.dumps({"job_id": execution.job_id, "job_type": execution.job_type}).encode()


def test_a_valid_delivery_runs_the_job(deliver: Deliver) -> None:
    execution = queued()
    response = deliver(body_of(execution))
    assert response.status_code == 200
    assert response.json() == {"status": "completed"}
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.result == {"echo": "hi", "attempt": 1}


def test_a_delivery_signed_with_the_next_key_is_accepted(deliver: Deliver) -> None:
    execution = queued()
    assert deliver(body_of(execution), key=NEXT_KEY).status_code == 200
    assert SideEffect.objects.count() == 1


def test_the_unpadded_body_hash_is_accepted(deliver: Deliver) -> None:
    execution = queued()
    raw = body_of(execution)
    import base64
    import hashlib

    unpadded = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    assert deliver(raw, body=unpadded).status_code == 200


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param({"key": "sig_someone_elses_key_of_32_chars"}, id="forged"),
        # Times as offsets from now, resolved when the test runs: a suite that takes minutes
        # to reach this test must not see "in two minutes" already in the past.
        pytest.param({"exp": timedelta(seconds=-60), "iat": timedelta(seconds=-360)}, id="expired"),
        pytest.param({"url": "http://evil.test/jobs/receive/"}, id="wrong-sub"),
        pytest.param({"iss": "upstash"}, id="wrong-issuer"),
        pytest.param({"nbf": timedelta(seconds=120)}, id="not-yet-valid"),
        pytest.param({"iat": timedelta(seconds=120)}, id="issued-in-the-future"),
        pytest.param({"body": None}, id="no-body-claim"),
        pytest.param({"exp": None}, id="no-exp-claim"),
        pytest.param({"sub": 42}, id="non-string-sub"),
        pytest.param({"body": "hash-with-non-ascii-é"}, id="non-ascii-body-claim"),
    ],
)
def test_a_bad_token_runs_nothing(deliver: Deliver, forgery: dict[str, Any]) -> None:
    execution = queued()
    now = time.time()
    claims = {
        name: int(now + value.total_seconds()) if isinstance(value, timedelta) else value
        for name, value in forgery.items()
    }
    response = deliver(body_of(execution), **claims)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}
    execution.refresh_from_db()
    assert execution.status == JobStatus.QUEUED
    assert not SideEffect.objects.exists()


def test_a_tampered_body_runs_nothing(deliver: Deliver) -> None:
    execution = queued()
    other = queued(message_id="msg_other")
    token = qstash_token(body_of(execution))
    response = deliver(body_of(other), token=token)
    assert response.status_code == 401
    assert not SideEffect.objects.exists()


def test_alg_none_and_a_missing_header_run_nothing(deliver: Deliver) -> None:
    execution = queued()
    assert deliver(body_of(execution), token=unsigned_token(body_of(execution))).status_code == 401
    assert deliver(body_of(execution), token="").status_code == 401
    assert deliver(body_of(execution), token="not.a.jwt").status_code == 401
    assert not SideEffect.objects.exists()


def test_clock_tolerance_accepts_small_skew_and_only_small_skew(deliver: Deliver) -> None:
    execution = queued()
    now = int(time.time())
    # Our clock is 3 s behind QStash's: the token seems issued in the future. 5 s tolerance.
    assert deliver(body_of(execution), iat=now + 3).status_code == 200
    with override_settings(
        QSTASH_JOBS={
            "TRANSPORT": "immediate",
            "RECEIVER_URL": "http://testserver/jobs/receive/",
            "CURRENT_SIGNING_KEY": CURRENT_KEY,
            "NEXT_SIGNING_KEY": NEXT_KEY,
            "CLOCK_TOLERANCE": 30,
        }
    ):
        late = queued(message_id="msg_late")
        assert deliver(body_of(late), exp=now - 20, iat=now - 320).status_code == 200
        later = queued(message_id="msg_later")
        assert deliver(body_of(later), exp=now - 40, iat=now - 340).status_code == 401


def test_only_post_is_allowed(client: Client) -> None:
    assert client.get("/jobs/receive/").status_code == 405


def test_a_handler_error_retries_then_fails_with_the_traceback_stored(deliver: Deliver) -> None:
    execution = queued("flaky", {"fail_times": 10}, max_retries=2)
    events: list[str] = []

    def record(signal_name: str) -> Callable[..., None]:
        def receiver(sender: object, execution: JobExecution, **kwargs: object) -> None:
            events.append(f"{signal_name}:{execution.status}")

        return receiver

    receivers = {
        job_started: record("started"),
        job_retrying: record("retrying"),
        job_failed: record("failed"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        for retried in (0, 1):
            response = deliver(body_of(execution), retried=retried)
            assert response.status_code == 500
            assert "secret-internal-detail" not in response.content.decode()
            execution.refresh_from_db()
            assert execution.status == JobStatus.RETRYING
            assert execution.finished_at is None
        response = deliver(body_of(execution), retried=2)  # Upstash-Retried == max_retries
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)

    assert response.status_code == 500
    assert "secret-internal-detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 3
    assert execution.error == "RuntimeError: secret-internal-detail attempt 3"
    assert "Traceback (most recent call last)" in execution.traceback
    assert "tests/testapp/jobs.py" in execution.traceback
    assert execution.finished_at is not None
    assert events == [
        "started:running",
        "retrying:retrying",
        "started:running",
        "retrying:retrying",
        "started:running",
        "failed:failed",
    ]


def test_a_retry_that_succeeds_completes_the_job(deliver: Deliver) -> None:
    execution = queued("flaky", {"fail_times": 1}, max_retries=3)
    assert deliver(body_of(execution), retried=0).status_code == 500
    assert deliver(body_of(execution), retried=1).status_code == 200
    execution.refresh_from_db()
    assert (execution.status, execution.result, execution.error) == (JobStatus.COMPLETED, "ok", "")


def test_permanent_error_is_non_retryable_at_once(deliver: Deliver) -> None:
    execution = queued("permanent", {}, max_retries=5)
    response = deliver(body_of(execution))
    assert response.status_code == 489
    assert response["Upstash-NonRetryable-Error"] == "true"
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.error == "PermanentJobError: this can never work"


def test_a_payload_that_no_longer_validates_fails_without_retry(deliver: Deliver) -> None:
    execution = queued("echo", {"wrong": True})
    response = deliver(body_of(execution))
    assert response.status_code == 489
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert "message: Field required" in execution.error
    assert not SideEffect.objects.exists()


def test_an_unregistered_job_type_fails_without_retry(deliver: Deliver) -> None:
    execution = queued("gone_type", {})
    response = deliver(body_of(execution))
    assert response.status_code == 489
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert "Unknown job type 'gone_type'" in execution.error


def test_a_signed_body_naming_no_job_is_rejected(deliver: Deliver) -> None:
    assert deliver(b"not json").status_code == 489
    assert deliver({"nothing": "here"}).status_code == 489
    assert deliver(b"[1, 2]").status_code == 489
    assert deliver({"job_id": "nul\x00byte"}).status_code == 489  # PostgreSQL refuses NUL


def test_a_job_not_recorded_yet_is_asked_to_come_back_until_it_is(deliver: Deliver) -> None:
    # Published from inside a transaction that has not committed yet, perhaps a long one.
    execution = queued()
    body = {"job_id": "not-recorded-yet", "job_type": "echo"}

    first = deliver(body)
    later = [deliver(body, retried=retried) for retried in (1, 2)]

    assert first.status_code == 503
    assert first["Retry-After"] == "10"
    # Then QStash's own backoff, longer at each retry, so that a long transaction is waited for.
    assert [(answer.status_code, answer.get("Retry-After")) for answer in later] == [
        (503, None),
        (503, None),
    ]
    JobExecution.objects.filter(pk=execution.pk).update(job_id="not-recorded-yet")  # committed
    assert deliver(body, retried=3).status_code == 200
    assert SideEffect.objects.filter(job_id="not-recorded-yet").count() == 1


def test_a_finished_or_cancelled_job_is_acknowledged_without_running(deliver: Deliver) -> None:
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        execution = queued(status=status, message_id=f"msg_{status}")
        response = deliver(body_of(execution))
        assert response.status_code == 200
        assert response.json() == {"status": "acknowledged"}
    assert not SideEffect.objects.exists()


def test_a_running_job_with_a_live_lease_answers_busy(deliver: Deliver) -> None:
    execution = queued(
        status=JobStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    response = deliver(body_of(execution), retried=1)
    assert response.status_code == 503
    # What is left of the lease, not a whole lease (300 s by default).
    assert 290 <= int(response["Retry-After"]) <= 300
    assert not SideEffect.objects.exists()

    execution.lease_expires_at = timezone.now() + timedelta(seconds=12)
    execution.save()
    response = deliver(body_of(execution), retried=2)
    assert (response.status_code, response["Retry-After"]) in ((503, "12"), (503, "11"))


def test_a_running_job_past_its_lease_is_taken_over(deliver: Deliver) -> None:
    execution = queued(
        status=JobStatus.RUNNING,
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    response = deliver(body_of(execution), retried=1)
    assert response.status_code == 200
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.attempts == 2


def test_progress_from_a_delivery_that_lost_its_job_changes_nothing() -> None:
    execution = queued()
    stale = statements.claim(execution.job_id, lease_seconds=60)
    assert stale is not None
    JobExecution.objects.filter(pk=execution.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    holder = statements.claim(execution.job_id, lease_seconds=60)  # the take-over
    assert holder is not None

    def context(claimed: JobExecution, lease_seconds: int) -> JobContext:
        return JobContext(
            job_id=claimed.job_id, job_type=claimed.job_type, attempt=claimed.attempts,
            max_retries=claimed.max_retries, metadata={}, execution=claimed,
            lease_seconds=lease_seconds,
        )  # fmt: skip

    context(stale, lease_seconds=3600).set_progress(90, "stale")
    execution.refresh_from_db()
    assert (execution.progress, execution.progress_message) == (0, "")
    assert execution.lease_expires_at < timezone.now() + timedelta(seconds=120)

    context(holder, lease_seconds=600).set_progress(40, "mine")
    execution.refresh_from_db()
    assert (execution.progress, execution.progress_message) == (40, "mine")
    assert execution.lease_expires_at > timezone.now() + timedelta(seconds=500)


def test_a_failing_signal_receiver_does_not_fail_the_job(
    deliver: Deliver, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("receiver bug")

    job_succeeded.connect(broken)
    try:
        execution = queued()
        assert deliver(body_of(execution)).status_code == 200
    finally:
        job_succeeded.disconnect(broken)
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    (logged,) = [r for r in caplog.records if "of a job lifecycle signal raised" in r.getMessage()]
    assert logged.getMessage().endswith(f"for job {execution.job_id}.")
    assert logged.exc_info and "receiver bug" in str(logged.exc_info[1])


def test_two_concurrent_deliveries_of_one_message_run_the_handler_once() -> None:
    execution = queued("sleep", {"seconds": 0.5})
    raw = body_of(execution)
    tokens = [qstash_token(raw), qstash_token(raw)]

    def deliver_once() -> int:
        response = Client().post(
            "/jobs/receive/",
            raw,
            content_type="application/json",
            HTTP_UPSTASH_SIGNATURE=tokens.pop(),
            HTTP_UPSTASH_MESSAGE_ID="msg_test",
            HTTP_UPSTASH_RETRIED="0",
        )
        return response.status_code

    statuses = at_once(deliver_once, 2)

    assert sorted(statuses) == [200, 503]
    assert SideEffect.objects.filter(job_id=execution.job_id).count() == 1
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.attempts == 1


def test_the_claim_without_update_returning_behaves_the_same(
    deliver: Deliver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Databases without UPDATE ... RETURNING (MySQL) take the two-statement ORM path.
    from django_qstash_jobs import statements

    monkeypatch.setattr(statements, "_supports_returning", lambda connection: False)
    execution = queued()
    assert deliver(body_of(execution)).status_code == 200
    assert deliver(body_of(execution)).json() == {"status": "acknowledged"}
    busy = queued(
        status=JobStatus.RUNNING,
        message_id="msg_busy",
        lease_expires_at=timezone.now() + timedelta(minutes=1),
    )
    assert deliver(body_of(busy)).status_code == 503
    assert SideEffect.objects.count() == 1


def test_a_handler_can_read_every_field_of_its_row(deliver: Deliver) -> None:
    execution = queued(
        "inspect",
        {},
        options={"headers": {"X-A": "1"}},
        user_id="7",
        metadata={"user_id": 7, "organization_id": "acme"},
    )
    assert deliver(body_of(execution)).status_code == 200
    execution.refresh_from_db()
    assert execution.result == {
        "created_at": execution.created_at.isoformat(),
        "options": {"headers": {"X-A": "1"}},
        "user_id": "7",
        "metadata": {"user_id": 7, "organization_id": "acme"},
        "attempt": 1,
        "last_attempt": False,  # max_retries is 2
    }


def test_the_context_knows_the_last_attempt(deliver: Deliver) -> None:
    execution = queued("inspect", {}, max_retries=2)
    assert deliver(body_of(execution), retried=2).status_code == 200
    execution.refresh_from_db()
    assert (execution.result["attempt"], execution.result["last_attempt"]) == (3, True)


@pytest.mark.parametrize("kind", ["NaN", "Infinity", "a NUL", "a NUL in a key", "a lone surrogate"])
def test_a_result_the_database_cannot_store_fails_the_job_clearly(
    deliver: Deliver, kind: str
) -> None:
    # Written as is, the outcome's UPDATE would fail after the handler ran: a 500, the job left
    # running until its lease ran out, and the handler run again.
    execution = queued("returns", {"kind": kind})

    response = deliver(body_of(execution))

    assert response.status_code == 489
    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.error.startswith("PermanentJobError: ")
    reason = {"a NUL": "NUL", "a NUL in a key": "NUL", "a lone surrogate": "not valid Unicode"}
    assert reason.get(kind, "without NaN or Infinity") in execution.error


class UnreadableError(Exception):
    def __str__(self) -> str:  # as when __str__ reads an attribute that was never set
        raise AttributeError("detail")


@pytest.fixture
def job_types() -> Iterator[Callable[..., Any]]:
    """Register job types for one test."""
    names: list[str] = []

    def register(name: str, handler: Callable[..., Any], **options: Any) -> None:
        register_job(name, **options)(handler)
        names.append(name)

    yield register
    for name in names:
        registry.unregister(name)


def test_an_error_whose_message_cannot_be_read_is_recorded(
    deliver: Deliver, job_types: Callable[..., Any]
) -> None:
    def fails(payload: Any, ctx: JobContext) -> None:
        raise UnreadableError

    job_types("unreadable_error", fails, retries=2)
    execution = queued("unreadable_error", {})

    assert deliver(body_of(execution)).status_code == 500

    execution.refresh_from_db()
    assert execution.status == JobStatus.RETRYING
    assert execution.error.startswith("UnreadableError: <its message could not be read")


def test_progress_with_text_no_column_takes_is_recorded_escaped(
    deliver: Deliver, job_types: Callable[..., Any]
) -> None:
    # A file name as os.listdir() gives it: a byte that is not UTF-8 becomes a lone surrogate.
    name = b"report-\xe9.csv".decode("utf-8", "surrogateescape")

    def reports_progress(payload: Any, ctx: JobContext) -> None:
        ctx.set_progress(50, f"reading {name}\x00")

    job_types("reports_progress", reports_progress, retries=0)
    execution = queued("reports_progress", {})

    assert deliver(body_of(execution)).status_code == 200

    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED
    assert execution.progress_message.startswith("reading report-")


@pytest.mark.parametrize(
    ("reported", "recorded"),
    [(float("nan"), 40), (float("inf"), 100), (float("-inf"), 0), (250, 100), (-3.5, 0)],
)
def test_progress_out_of_range_is_clamped_and_never_fails_the_job(
    deliver: Deliver, job_types: Callable[..., Any], reported: float, recorded: int
) -> None:
    def reports_progress(payload: Any, ctx: JobContext) -> dict[str, int]:
        ctx.set_progress(40)
        ctx.set_progress(reported)
        return {"progress": ctx.execution.progress}

    job_types("reports_progress", reports_progress, retries=0)
    execution = queued("reports_progress", {})

    assert deliver(body_of(execution)).status_code == 200
    execution.refresh_from_db()
    assert execution.result == {"progress": recorded}


def test_a_result_with_an_escaped_backslash_is_no_nul(deliver: Deliver) -> None:
    execution = queued("returns", {"kind": "an escaped backslash"})
    assert deliver(body_of(execution)).status_code == 200
    execution.refresh_from_db()
    assert execution.result == {"text": "\\u0000"}


def test_an_error_message_with_a_nul_is_recorded(deliver: Deliver) -> None:
    execution = queued("returns", {"kind": "error with a NUL"}, max_retries=0)

    assert deliver(body_of(execution)).status_code == 500

    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.error == "RuntimeError: bad\\0byte"
    assert "bad\\0byte" in execution.traceback


def test_a_coroutine_function_is_refused_as_a_handler() -> None:
    async def handler(payload: dict[str, Any], ctx: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"'async_job' .* is a coroutine function"):
        register_job("async_job")(handler)
    with pytest.raises(UnknownJobTypeError):
        registry.get("async_job")
