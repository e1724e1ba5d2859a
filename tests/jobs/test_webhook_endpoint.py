"""jobs/webhooks/<source>/: signatures verified first, one job per provider event, 200 at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from django_qstash_jobs import JOB_TYPES, JobContext, stripe_handler, webhook_handler
from django_qstash_jobs import webhooks as webhook_views
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.jobs import webhooks
from django_qstash_jobs.models import JobExecution, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

STRIPE_SECRET = "whsec_test_secret"
GITHUB_SECRET = "github-test-secret"

STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "type": "customer.subscription.updated",
    "data": {
        "object": {"id": "sub_1", "status": "active"},
        "previous_attributes": {"status": "trialing"},
    },
}


@pytest.fixture(autouse=True)
def secrets(settings: Any) -> None:
    settings.QSTASH_JOBS = {
        **settings.QSTASH_JOBS,
        "WEBHOOK_SECRETS": {"stripe": STRIPE_SECRET, "github": ["rotated-in", GITHUB_SECRET]},
    }


@pytest.fixture
def handled() -> Iterator[list[Any]]:
    """Payloads the Stripe and GitHub handlers received."""
    saved = (
        list(webhooks.webhook_handlers._registrations),
        list(webhooks.stripe_handlers._registrations),
    )
    payloads: list[Any] = []

    @stripe_handler("customer.subscription.*")
    def on_subscription(payload: Any, ctx: JobContext) -> None:
        payloads.append(payload)

    @webhook_handler("github", "pull_request")
    def on_pr(payload: Any, ctx: JobContext) -> None:
        payloads.append(payload)

    yield payloads
    webhooks.webhook_handlers._registrations, webhooks.stripe_handlers._registrations = saved


def stripe_signature(body: bytes, *, secret: str = STRIPE_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()},v0=ignored"


def github_signature(body: bytes, *, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_stripe(client: Client, body: bytes, signature: str | None) -> Any:
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post("/jobs/webhooks/stripe/", body, content_type="application/json", **headers)


def post_github(
    client: Client,
    body: bytes,
    *,
    signature: str | None = None,
    event: str = "pull_request",
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    content_type: str = "application/json",
) -> Any:
    return client.post(
        "/jobs/webhooks/github/",
        body,
        content_type=content_type,
        HTTP_X_HUB_SIGNATURE_256=github_signature(body) if signature is None else signature,
        HTTP_X_GITHUB_EVENT=event,
        HTTP_X_GITHUB_DELIVERY=delivery,
    )


def test_the_url_is_named() -> None:
    url = reverse("django_qstash_jobs:webhook", kwargs={"source": "stripe"})
    assert url == "/jobs/webhooks/stripe/"


def test_a_signed_stripe_event_is_accepted_and_processed(
    client: Client, handled: list[Any]
) -> None:
    body = json.dumps(STRIPE_EVENT).encode()

    response = post_stripe(client, body, stripe_signature(body))

    assert response.status_code == 200
    execution = JobExecution.objects.get()
    assert response.json() == {"status": "accepted", "job_id": execution.job_id}
    assert execution.job_type == JOB_TYPES.PROCESS_STRIPE_WEBHOOK
    assert execution.status == JobStatus.COMPLETED
    assert execution.idempotency_key == f"webhook:stripe:{STRIPE_EVENT['id']}"
    (payload,) = handled
    assert payload.event_type == "customer.subscription.updated"
    assert payload.event_data == {"id": "sub_1", "status": "active"}
    assert payload.previous_attributes == {"status": "trialing"}
    assert payload.event_id == STRIPE_EVENT["id"]
    assert payload.ip_address == "127.0.0.1"


def test_a_redelivered_stripe_event_is_not_processed_twice(
    client: Client, handled: list[Any]
) -> None:
    body = json.dumps(STRIPE_EVENT).encode()

    first = post_stripe(client, body, stripe_signature(body))
    # Stripe retries with a fresh timestamp and signature; the event id is the same.
    second = post_stripe(client, body, stripe_signature(body, at=int(time.time()) + 1))

    assert first.status_code == second.status_code == 200
    assert first.json()["job_id"] == second.json()["job_id"]
    assert JobExecution.objects.count() == 1
    assert len(handled) == 1


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("t=123", id="no-v1"),
        pytest.param("v1=abc", id="no-timestamp"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_a_stripe_request_without_a_usable_signature_is_refused(
    client: Client, signature: str | None
) -> None:
    response = post_stripe(client, json.dumps(STRIPE_EVENT).encode(), signature)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid webhook"}
    assert not JobExecution.objects.exists()


def test_a_forged_stripe_signature_is_refused_and_nothing_is_enqueued(
    client: Client, handled: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(STRIPE_EVENT).encode()

    wrong_secret = post_stripe(client, body, stripe_signature(body, secret="whsec_forged"))
    tampered = post_stripe(client, body.replace(b"active", b"paused"), stripe_signature(body))

    for response in (wrong_secret, tampered):
        assert response.status_code == 400
        # The reason goes to the log, never to the caller.
        assert response.content == b'{"error": "invalid webhook"}'
    assert not JobExecution.objects.exists()
    assert handled == []
    assert "Stripe-Signature does not match" in caplog.text


@pytest.mark.parametrize("timestamp", ["²", "1" * 5000, "-5", ""])
def test_a_stripe_timestamp_that_is_no_number_is_refused_cleanly(
    client: Client, timestamp: str
) -> None:
    # "²" is a digit to str.isdigit() but not to int(); 5000 digits are past int()'s limit.
    body = json.dumps(STRIPE_EVENT).encode()
    signature = stripe_signature(body).replace("t=", "x=", 1) + f",t={timestamp}"

    assert post_stripe(client, body, signature).status_code == 400
    assert not JobExecution.objects.exists()


def test_a_stale_stripe_timestamp_is_refused_as_a_replay(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(STRIPE_EVENT).encode()

    stale = post_stripe(client, body, stripe_signature(body, at=int(time.time()) - 301))
    future = post_stripe(client, body, stripe_signature(body, at=int(time.time()) + 301))
    recent = post_stripe(client, body, stripe_signature(body, at=int(time.time()) - 290))

    assert stale.status_code == future.status_code == 400
    assert "too old" in caplog.text
    assert recent.status_code == 200
    assert JobExecution.objects.count() == 1


def test_a_signed_body_that_is_not_a_stripe_event_is_refused(client: Client) -> None:
    for body in (b"not json", b"[1, 2]", json.dumps({"type": "x"}).encode()):
        response = post_stripe(client, body, stripe_signature(body))
        assert response.status_code == 400
    assert not JobExecution.objects.exists()


def test_a_signed_github_event_is_accepted_and_processed(
    client: Client, handled: list[Any]
) -> None:
    body = json.dumps({"action": "opened", "number": 7}).encode()

    response = post_github(client, body)

    assert response.status_code == 200
    execution = JobExecution.objects.get()
    assert execution.job_type == JOB_TYPES.PROCESS_WEBHOOK
    assert execution.status == JobStatus.COMPLETED
    (payload,) = handled
    assert (payload.source, payload.event, payload.data) == (
        "github",
        "pull_request",
        {"action": "opened", "number": 7},
    )


def test_a_github_form_encoded_delivery_is_read_from_its_payload_field(
    client: Client, handled: list[Any]
) -> None:
    body = urlencode({"payload": json.dumps({"number": 8})}).encode()

    response = post_github(client, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert handled[0].data == {"number": 8}


def test_a_redelivered_github_event_is_not_processed_twice(
    client: Client, handled: list[Any]
) -> None:
    body = json.dumps({"number": 7}).encode()
    post_github(client, body)
    post_github(client, body)
    post_github(client, body, delivery="another-delivery")

    assert JobExecution.objects.count() == 2
    assert len(handled) == 2


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="missing"),
        pytest.param("sha1=0123", id="wrong-scheme"),
        pytest.param("sha256=" + "0" * 64, id="forged"),
        pytest.param(github_signature(b"{}", secret="not-the-secret"), id="wrong-secret"),
    ],
)
def test_a_github_request_without_a_valid_signature_is_refused(
    client: Client, signature: str, handled: list[Any]
) -> None:
    response = post_github(client, b"{}", signature=signature)
    assert response.status_code == 400
    assert not JobExecution.objects.exists()
    assert handled == []


def test_a_github_request_signed_with_any_configured_secret_is_accepted(client: Client) -> None:
    body = b"{}"
    response = post_github(client, body, signature=github_signature(body, secret="rotated-in"))
    assert response.status_code == 200


def test_a_github_request_without_an_event_name_is_refused(client: Client) -> None:
    assert post_github(client, b"{}", event="").status_code == 400


@pytest.mark.parametrize("source", ["unknown", "shopify"])
def test_a_source_without_provider_or_secret_is_not_served(
    client: Client, settings: Any, source: str
) -> None:
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "WEBHOOK_SECRETS": {"shopify": ""}}
    response = client.post(f"/jobs/webhooks/{source}/", b"{}", content_type="application/json")
    assert response.status_code == 404
    assert not JobExecution.objects.exists()


def test_a_provider_without_a_secret_is_not_served(client: Client, settings: Any) -> None:
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "WEBHOOK_SECRETS": {}}
    body = json.dumps(STRIPE_EVENT).encode()
    assert post_stripe(client, body, stripe_signature(body)).status_code == 404


def test_only_post_is_allowed(client: Client) -> None:
    assert client.get("/jobs/webhooks/stripe/").status_code == 405


def test_the_endpoint_needs_no_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    body = json.dumps(STRIPE_EVENT).encode()
    assert post_stripe(client, body, stripe_signature(body)).status_code == 200


def test_the_endpoint_needs_no_login(client: Client, settings: Any) -> None:
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    body = json.dumps(STRIPE_EVENT).encode()
    assert post_stripe(client, body, stripe_signature(body)).status_code == 200


class TokenProvider(webhook_views.WebhookProvider):
    """A provider that sends its secret in a header and its event name in the body."""

    def verify(self, request: Any, secrets: Any) -> None:
        if request.headers.get("X-Token") not in secrets:
            raise webhook_views.WebhookValidationError("bad token")

    def parse(self, request: Any, source: str) -> webhook_views.InboundEvent:
        data = json.loads(request.body)
        return webhook_views.InboundEvent(
            job_type=JOB_TYPES.PROCESS_WEBHOOK,
            payload={"source": source, "event": data["event"], "data": data},
            event_id=data["id"],
        )


@pytest.fixture
def acme(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider of our own at jobs/webhooks/acme/, whose secret is "t0ken"."""
    monkeypatch.setattr(webhook_views, "PROVIDERS", dict(webhook_views.PROVIDERS))
    webhook_views.register_webhook_provider("acme", TokenProvider())
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "WEBHOOK_SECRETS": {"acme": "t0ken"}}


@pytest.mark.usefixtures("acme")
def test_another_provider_plugs_in(client: Client) -> None:
    body = json.dumps({"id": "e1", "event": "order.paid"}).encode()

    refused = client.post("/jobs/webhooks/acme/", body, "application/json", HTTP_X_TOKEN="x")
    accepted = client.post("/jobs/webhooks/acme/", body, "application/json", HTTP_X_TOKEN="t0ken")

    assert (refused.status_code, accepted.status_code) == (400, 200)
    execution = JobExecution.objects.get()
    assert execution.payload["event"] == "order.paid"
    assert execution.idempotency_key == "webhook:acme:e1"


@pytest.mark.usefixtures("acme")
def test_a_provider_that_gives_no_event_id_is_refused(client: Client) -> None:
    # With an empty id every event would be taken for a repeat of the first, and dropped.
    body = json.dumps({"id": "", "event": "order.paid"}).encode()

    response = client.post("/jobs/webhooks/acme/", body, "application/json", HTTP_X_TOKEN="t0ken")

    assert response.status_code == 400
    assert not JobExecution.objects.exists()


def test_a_connect_event_says_which_account_it_is_for_and_when_it_was_made(
    client: Client, handled: list[Any]
) -> None:
    event = {
        **STRIPE_EVENT,
        "account": "acct_1TenantA",
        "created": 1_700_000_000,
        "livemode": False,
        "api_version": "2024-06-20",
    }
    body = json.dumps(event).encode()

    assert post_stripe(client, body, stripe_signature(body)).status_code == 200

    (payload,) = handled
    assert (payload.account, payload.created, payload.livemode, payload.api_version) == (
        "acct_1TenantA",
        1_700_000_000,
        False,
        "2024-06-20",
    )


def test_stripe_event_fields_of_an_unexpected_type_are_left_out(
    client: Client, handled: list[Any]
) -> None:
    event = {**STRIPE_EVENT, "account": 12, "created": True, "livemode": "no"}
    body = json.dumps(event).encode()

    assert post_stripe(client, body, stripe_signature(body)).status_code == 200

    (payload,) = handled
    assert (payload.account, payload.created, payload.livemode) == (None, None, None)


def test_a_body_over_django_s_upload_limit_is_refused_with_413_and_a_logged_reason(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"commits": ["x" * 2000]}).encode()

    response = post_github(client, body)

    assert response.status_code == 413
    assert response.json() == {"error": "webhook body too large"}
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in caplog.text
    assert not JobExecution.objects.exists()


def test_a_large_body_within_a_raised_limit_is_accepted(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
    body = json.dumps({"commits": ["x" * (3 * 1024 * 1024)]}).encode()

    assert post_github(client, body).status_code == 200
    assert JobExecution.objects.get().payload["data"]["commits"][0].startswith("xxx")


def test_a_resent_event_whose_job_failed_runs_again(client: Client) -> None:
    saved = list(webhooks.stripe_handlers._registrations)
    broken = [True]
    runs: list[str] = []

    @stripe_handler("customer.subscription.*")
    def on_subscription(payload: Any, ctx: JobContext) -> None:
        runs.append(payload.event_id)
        if broken[0]:
            raise PermanentJobError("bug in the handler")

    try:
        body = json.dumps(STRIPE_EVENT).encode()
        first = post_stripe(client, body, stripe_signature(body))
        assert JobExecution.objects.get().status == JobStatus.FAILED
        # The handler is fixed and the event resent from Stripe's dashboard: same event id.
        broken[0] = False
        second = post_stripe(client, body, stripe_signature(body, at=int(time.time()) + 1))
    finally:
        webhooks.stripe_handlers._registrations = saved

    assert second.status_code == 200
    assert second.json()["job_id"] == first.json()["job_id"]
    execution = JobExecution.objects.get()
    assert execution.status == JobStatus.COMPLETED
    assert runs == [STRIPE_EVENT["id"]] * 2


def test_a_resent_event_whose_job_was_cancelled_stays_cancelled(
    client: Client, handled: list[Any]
) -> None:
    body = json.dumps(STRIPE_EVENT).encode()
    first = post_stripe(client, body, stripe_signature(body))
    JobExecution.objects.update(status=JobStatus.CANCELLED)

    second = post_stripe(client, body, stripe_signature(body, at=int(time.time()) + 1))

    assert second.json()["job_id"] == first.json()["job_id"]
    assert JobExecution.objects.get().status == JobStatus.CANCELLED
    assert len(handled) == 1
