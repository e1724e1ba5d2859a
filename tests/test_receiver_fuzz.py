"""Random headers, bodies and tokens at the receiver: nothing runs, breaks or leaks."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_qstash_jobs.models import JobExecution, JobStatus
from tests.fuzz_strategies import ALGORITHMS, CLAIMS, HEADER_TEXT, JSON, forged_token
from tests.signing_helpers import CURRENT_KEY, qstash_token
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db


def _assert_nothing_ran_or_leaked(response: Any) -> None:
    assert response.status_code < 500, response.content
    text = response.content.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert "Error:" not in text  # no exception text
    assert not SideEffect.objects.exists()
    assert JobExecution.objects.get().status == JobStatus.QUEUED


@pytest.fixture
def queued_job(db: None) -> JobExecution:
    return JobExecution.objects.create(
        job_type="echo", payload={"message": "x"}, status=JobStatus.QUEUED, message_id="m"
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300),
    signature=st.one_of(st.none(), HEADER_TEXT),
    retried=st.one_of(st.none(), HEADER_TEXT),
    extra=st.dictionaries(
        st.sampled_from(
            ["Upstash-Message-Id", "Upstash-Schedule-Id", "Content-Type", "X-Anything"]
        ),
        HEADER_TEXT,
        max_size=3,
    ),
)
def test_random_requests_are_refused_cleanly(
    queued_job: JobExecution,
    body: bytes,
    signature: str | None,
    retried: str | None,
    extra: dict[str, str],
) -> None:
    headers = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in extra.items()}
    if signature is not None:
        headers["HTTP_UPSTASH_SIGNATURE"] = signature
    if retried is not None:
        headers["HTTP_UPSTASH_RETRIED"] = retried
    response = Client().post("/jobs/receive/", body, content_type="application/json", **headers)
    assert response.status_code == 401
    _assert_nothing_ran_or_leaked(response)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    claims=CLAIMS,
    alg=ALGORITHMS,
    signature=st.binary(max_size=40),
)
def test_forged_tokens_for_a_real_job_run_nothing(
    queued_job: JobExecution, claims: dict[str, Any], alg: str, signature: bytes
) -> None:
    body = json.dumps({"job_id": queued_job.job_id, "job_type": "echo"}).encode()
    token = forged_token(claims, alg, signature)
    response = Client().post(
        "/jobs/receive/", body, content_type="application/json", HTTP_UPSTASH_SIGNATURE=token
    )
    assert response.status_code == 401
    _assert_nothing_ran_or_leaked(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    overrides=st.fixed_dictionaries(
        {},
        optional={
            "iss": st.text(max_size=10).filter(lambda value: value != "Upstash"),
            "sub": st.text(max_size=40).filter(lambda v: v != "http://testserver/jobs/receive/"),
            "exp": st.integers(max_value=int(time.time()) - 60),
            # A year ahead: strategies are built at import, and the suite may reach this
            # test minutes later; "not yet valid" must still hold then.
            "nbf": st.integers(min_value=int(time.time()) + 365 * 86400, max_value=2**40),
            "body": st.text(max_size=50),
        },
    ).filter(bool),
)
def test_validly_signed_tokens_with_a_bad_claim_run_nothing(
    queued_job: JobExecution, overrides: dict[str, Any]
) -> None:
    body = json.dumps({"job_id": queued_job.job_id, "job_type": "echo"}).encode()
    token = qstash_token(body, key=CURRENT_KEY, **overrides)
    response = Client().post(
        "/jobs/receive/", body, content_type="application/json", HTTP_UPSTASH_SIGNATURE=token
    )
    assert response.status_code == 401
    _assert_nothing_ran_or_leaked(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), retried=HEADER_TEXT)
def test_validly_signed_garbage_is_rejected_without_a_500(
    queued_job: JobExecution, body: bytes, retried: str
) -> None:
    # Only QStash can sign, so this is our own publish gone wrong: refuse it for good (489).
    response = Client().post(
        "/jobs/receive/",
        body,
        content_type="application/json",
        HTTP_UPSTASH_SIGNATURE=qstash_token(body),
        HTTP_UPSTASH_RETRIED=retried,
    )
    assert response.status_code in (401, 489)
    _assert_nothing_ran_or_leaked(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    notice=st.fixed_dictionaries(
        {
            "sourceMessageId": st.one_of(st.just("m"), st.text(min_size=1, max_size=20)),
            "sourceBody": st.one_of(
                JSON, st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode())
            ),
        },
        optional=dict.fromkeys(("status", "body", "retried", "error", "scheduleId"), JSON),
    )
)
def test_validly_signed_failure_notices_of_any_shape_are_answered_cleanly(
    queued_job: JobExecution, notice: dict[str, Any]
) -> None:
    # QStash's failure notices carry numbers as strings, base64 that may be cut short...
    body = json.dumps(notice).encode()
    response = Client().post(
        "/jobs/receive/", body, content_type="application/json",
        HTTP_UPSTASH_SIGNATURE=qstash_token(body),
    )  # fmt: skip
    # 489: a message id no QStash message has (a NUL in it) makes it a body naming no job.
    assert response.status_code in (200, 489), response.content
    assert "Traceback" not in response.content.decode("utf-8", "replace")
    assert not SideEffect.objects.exists()
    assert JobExecution.objects.get().status in (JobStatus.QUEUED, JobStatus.FAILED)
