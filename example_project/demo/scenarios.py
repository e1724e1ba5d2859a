"""The usage guide's scenarios, run for real against the site and the local QStash server.

Each scenario does what a user, Stripe, GitHub or the code of the site would do, and returns
the jobs it expects, with the status each must end in and, for some, a further check.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing.models import Subscription
from demo.site import (
    DemoError,
    SiteClient,
    StreamRecord,
    follow_events,
    post_github_event,
    post_stripe_event,
)
from django_qstash_jobs import JOB_TYPES, job_dispatcher
from django_qstash_jobs.models import FINISHED_STATUSES, JobExecution, JobSchedule, JobStatus

#: A check of a finished job: "" when it is right, else what is wrong.
Check = Callable[[JobExecution], str]

ADA = {"username": "ada", "first_name": "Ada", "email": "ada@example.com"}
ADA_PASSWORD = "lovelace-1815"
ADA_NEW_PASSWORD = "analytical-engine-1843"


@dataclass
class Expectation:
    """One job a scenario expects, shown as one row of the table."""

    scenario: str
    #: The job's id, or None while its row does not exist yet (an email a webhook will send).
    find: Callable[[], str | None]
    status: str = JobStatus.COMPLETED
    check: Check | None = None


@dataclass
class Demo:
    """What the scenarios share."""

    site_url: str
    qstash_url: str
    #: Rows created before this are from earlier runs.
    started_at: datetime
    #: Makes this run's idempotency keys and Stripe ids its own.
    run_id: str

    def client(self) -> SiteClient:
        return SiteClient(self.site_url)


def known(job_id: str) -> Callable[[], str]:
    return lambda: job_id


def wait_finished(job_id: str, timeout: float = 20) -> JobExecution:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = JobExecution.objects.get(job_id=job_id)
        if execution.status in FINISHED_STATUSES:
            return execution
        time.sleep(0.05)
    raise DemoError(f"job {job_id} did not finish within {timeout} s")


def email_to(demo: Demo, template: str, to: str) -> Callable[[], str | None]:
    """The latest ``template`` email job to ``to`` of this run (enqueued by the site)."""

    def find() -> str | None:
        return (
            JobExecution.objects.filter(
                job_type=JOB_TYPES.SEND_EMAIL,
                payload__template=template,
                payload__to=to,
                created_at__gte=demo.started_at,
            )
            .order_by("-created_at")
            .values_list("job_id", flat=True)
            .first()
        )

    return find


def by_key(key: str) -> Callable[[], str | None]:
    return lambda: (
        JobExecution.objects.filter(idempotency_key=key).values_list("job_id", flat=True).first()
    )


def email_sent(execution: JobExecution) -> str:
    result = execution.result if isinstance(execution.result, dict) else {}
    return "" if result.get("status") == "sent" else f"email not sent: {result}"


# -- Accounts: every email of the site's own flows --------------------------------------------


def accounts(demo: Demo) -> list[Expectation]:
    get_user_model().objects.filter(username=ADA["username"]).delete()  # a fresh Ada each run
    ada = demo.client()
    ada.submit("/accounts/signup/", {**ADA, "password1": ADA_PASSWORD, "password2": ADA_PASSWORD})
    ada.submit(
        "/accounts/password/",
        {
            "old_password": ADA_PASSWORD,
            "new_password1": ADA_NEW_PASSWORD,
            "new_password2": ADA_NEW_PASSWORD,
        },
    )
    ada.submit("/accounts/email/", {"email": "ada.lovelace@example.com"})
    ada.submit(
        "/accounts/invite/",
        {"email": "grace@example.com", "name": "Grace Hopper", "role": "member"},
    )
    ada.page("/accounts/")  # lists her jobs
    demo.client().submit("/accounts/password-reset/", {"email": ADA["email"]})
    return [
        Expectation(
            "sign-up form: welcome (enqueue_on post_save)",
            email_to(demo, "welcome", ADA["email"]),
            check=email_sent,
        ),
        Expectation(
            "password change: passwordChanged",
            email_to(demo, "passwordChanged", ADA["email"]),
            check=email_sent,
        ),
        Expectation(
            "email change: emailChange",
            email_to(demo, "emailChange", "ada.lovelace@example.com"),
            check=email_sent,
        ),
        Expectation(
            "invitation form: teamInvitation",
            email_to(demo, "teamInvitation", "grace@example.com"),
            check=email_sent,
        ),
        Expectation(
            "password reset form: passwordReset",
            email_to(demo, "passwordReset", ADA["email"]),
            check=email_sent,
        ),
    ]


# -- Webhooks: Stripe and GitHub, signed, to jobs/webhooks/<source>/ ---------------------------


def _stripe_event(demo: Demo, name: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{demo.run_id}_{name}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": data,
    }


def billing(demo: Demo) -> list[Expectation]:
    ada = get_user_model().objects.get(username=ADA["username"])
    customer = f"cus_{demo.run_id}"
    # As a checkout would have: Ada is a Stripe customer.
    Subscription.objects.update_or_create(user=ada, defaults={"customer_id": customer})
    secret = settings.QSTASH_JOBS["WEBHOOK_SECRETS"]["stripe"]
    price = {
        "nickname": "Pro",
        "unit_amount": 2999,
        "currency": "usd",
        "recurring": {"interval": "month"},
    }
    subscription = {
        "id": f"sub_{demo.run_id}",
        "object": "subscription",
        "customer": customer,
        "status": "active",
        "items": {"data": [{"price": price}]},
        "current_period_end": int(time.time()) + 30 * 86400,
    }
    events = [
        _stripe_event(demo, "created", "customer.subscription.created", {"object": subscription}),
        _stripe_event(
            demo,
            "updated",
            "customer.subscription.updated",
            {
                "object": {**subscription, "status": "past_due"},
                "previous_attributes": {"status": "active"},
            },
        ),
        _stripe_event(
            demo,
            "failed",
            "invoice.payment_failed",
            {
                "object": {
                    "id": f"in_{demo.run_id}",
                    "object": "invoice",
                    "customer": customer,
                    "amount_due": 2999,
                    "currency": "usd",
                    "hosted_invoice_url": f"https://invoice.stripe.com/i/{demo.run_id}",
                    "next_payment_attempt": int(time.time()) + 3 * 86400,
                }
            },
        ),
    ]
    job_ids = []
    for event in events:
        # One after the other, as Stripe sends them: the handlers of one subscription must not
        # run out of order here (see billing.jobs on ordering).
        job_ids.append(post_stripe_event(demo.site_url, secret, event))
        wait_finished(job_ids[-1])

    def now_past_due(execution: JobExecution) -> str:
        status = Subscription.objects.get(customer_id=customer).status
        return "" if status == "past_due" else f"subscription is {status!r}, not past_due"

    return [
        Expectation("Stripe subscription.created", known(job_ids[0])),
        Expectation(
            "  its handler: subscriptionCreated",
            by_key(f"stripe:{events[0]['id']}:email"),
            check=email_sent,
        ),
        Expectation("Stripe subscription.updated", known(job_ids[1]), check=now_past_due),
        Expectation("Stripe invoice.payment_failed", known(job_ids[2])),
        Expectation(
            "  its handler: paymentFailed",
            by_key(f"stripe:{events[2]['id']}:email"),
            check=email_sent,
        ),
    ]


def github(demo: Demo) -> list[Expectation]:
    secret = settings.QSTASH_JOBS["WEBHOOK_SECRETS"]["github"]
    push = {
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/website"},
        "commits": [{"id": "a1b2c3", "message": "Fix the footer"}, {"id": "d4e5f6"}],
    }
    job_id = post_github_event(demo.site_url, secret, "push", push)

    def handled(execution: JobExecution) -> str:
        handlers = (execution.result or {}).get("handlers", [])
        return "" if "demo.jobs.on_push" in handlers else f"handlers run: {handlers}"

    return [Expectation("GitHub push webhook (generic)", known(job_id), check=handled)]


# -- Reports and exports, followed over Server-Sent Events ------------------------------------


def _file_check(admin: SiteClient, stream: StreamRecord, job_id: str, magic: bytes) -> Check:
    def check(execution: JobExecution) -> str:
        if not stream.finished.wait(10) or stream.error:
            return f"status stream: {stream.error or 'did not end'}"
        if stream.last.get("status") != JobStatus.COMPLETED:
            return f"status stream ended with {stream.describe()}"
        response = admin.get(f"/reports/jobs/{job_id}/download/")
        if response.status_code != 200 or not response.content.startswith(magic):
            return f"download answered {response.status_code}"
        return ""

    return check


def reports(demo: Demo) -> list[Expectation]:
    admin = demo.client()
    admin.login("admin", "admin")
    today = date.today()
    expectations = []
    for title, path, data, magic in (
        (
            "PDF report (page + status SSE)",
            "/reports/report/",
            {
                "report_type": "monthly-analytics",
                "start_date": today.replace(day=1).isoformat(),
                "end_date": today.isoformat(),
                "format": "pdf",
            },
            b"%PDF",
        ),
        (
            "CSV export (page + status SSE)",
            "/reports/export/",
            {"entity_type": "users", "format": "csv", "created_after": ""},
            b"id,username",
        ),
    ):
        location = admin.submit(path, data, form_page="/reports/")
        job_id = location.rstrip("/").rsplit("/", 1)[1]  # /reports/jobs/<job_id>/
        if "data-events-url" not in admin.page(location):
            raise DemoError(f"{location} does not follow the job")
        stream = follow_events(admin, job_id)
        expectations.append(
            Expectation(title, known(job_id), check=_file_check(admin, stream, job_id, magic))
        )
    return expectations


# -- Schedules ---------------------------------------------------------------------------------


def schedules(demo: Demo) -> list[Expectation]:
    call_command("sync_schedules", stdout=io.StringIO())
    schedule = JobSchedule.objects.get(name="nightly-cleanup")
    # The local server's own endpoint: fire now rather than wait for 02:00.
    response = requests.post(
        f"{demo.qstash_url}/v2/schedules/{schedule.schedule_id}/trigger",
        headers={"Authorization": f"Bearer {settings.QSTASH_JOBS['TOKEN']}"},
        timeout=10,
    )
    response.raise_for_status()
    message_id = response.json()["messageId"]

    def linked(execution: JobExecution) -> str:
        return "" if execution.schedule_id == schedule.pk else "not linked to its schedule"

    return [
        Expectation(
            "nightly-cleanup: synced, triggered",
            lambda: (
                JobExecution.objects.filter(message_id=message_id)
                .values_list("job_id", flat=True)
                .first()
            ),
            check=linked,
        )
    ]


# -- The engine: custom types, idempotency, retries, batches, cancel ---------------------------


def engine(demo: Demo) -> list[Expectation]:
    key = f"demo-{demo.run_id}-resize"
    first = job_dispatcher.enqueue("resize_image", {"image_id": 2}, {"idempotency_key": key})
    second = job_dispatcher.enqueue("resize_image", {"image_id": 2}, {"idempotency_key": key})

    def one_job(execution: JobExecution) -> str:
        rows = JobExecution.objects.filter(idempotency_key=key).count()
        return "" if first == second and rows == 1 else f"{rows} jobs for one key"

    batch = job_dispatcher.enqueue(
        JOB_TYPES.SEND_BATCH_EMAILS,
        {
            "emails": [
                {
                    "template": "welcome",
                    "to": f"{name.lower()}@example.com",
                    "data": {"recipient_name": name, "product_name": settings.PRODUCT_NAME},
                }
                for name in ("Alan", "Barbara", "Edsger")
            ]
        },
    )

    def all_sent(execution: JobExecution) -> str:
        result = execution.result or {}
        return "" if result.get("sent") == 3 else f"sent {result.get('sent')} of 3"

    many = job_dispatcher.enqueue_many(
        [{"job_type": "resize_image", "payload": {"image_id": i}} for i in range(3)]
    )
    delayed = job_dispatcher.enqueue("resize_image", {"image_id": 9}, options={"delay": 3_600_000})
    job_dispatcher.cancel(delayed)
    return [
        Expectation(
            "custom job type (resize_image)",
            known(job_dispatcher.enqueue("resize_image", {"image_id": 1, "width": 640})),
        ),
        Expectation("idempotency key, enqueued twice", known(first), check=one_job),
        Expectation(
            "fails once, QStash retries",
            known(job_dispatcher.enqueue("unreliable", {"fail_times": 1})),
        ),
        Expectation(
            "fails every attempt: failed",
            known(job_dispatcher.enqueue("unreliable", {"fail_times": 99})),
            status=JobStatus.FAILED,
        ),
        Expectation("batch emails: three, one job", known(batch), check=all_sent),
        *(Expectation("enqueue_many: one publish", known(job_id)) for job_id in many),
        Expectation("delayed 1 h, then cancelled", known(delayed), status=JobStatus.CANCELLED),
    ]


#: In order: accounts first (billing needs Ada).
SCENARIOS: list[Callable[[Demo], list[Expectation]]] = [
    accounts,
    billing,
    github,
    reports,
    schedules,
    engine,
]
