"""The job admin in a real browser: log in, filter failed jobs, retry one, watch a job, dashboard.

Screenshots of each step land in var/screenshots/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_qstash_jobs import status_views
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.status_views import StreamTiming
from tests.browser.conftest import SKIP_REASON, outside_loop

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
    pytest.mark.django_db(transaction=True),
]

Screenshot = Callable[[str], Path]


@pytest.fixture
def admin_login(settings: Any) -> tuple[str, str]:
    # A fast hasher: the password is only typed into the login form.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.create_superuser("admin", "admin@example.com", "admin-password")
    return "admin", "admin-password"


@pytest.fixture
def jobs(admin_login: tuple[str, str]) -> dict[str, JobExecution]:
    """A small history: completed jobs with durations, two failures, one running job."""
    owner = str(User.objects.get(username=admin_login[0]).pk)
    now = timezone.now()
    made: dict[str, JobExecution] = {}
    for n in range(6):
        started = now - timedelta(hours=n + 1)
        JobExecution.objects.create(
            job_type="echo" if n % 2 else "send_email",
            status=JobStatus.COMPLETED,
            payload={"message": f"hello {n}"},
            user_id=owner,
            organization_id="acme",
            attempts=1,
            progress=100,
            result={"echo": f"hello {n}"},
            created_at=started - timedelta(seconds=2),
            started_at=started,
            finished_at=started + timedelta(seconds=n + 0.5),
        )
    for name, message in (("outage", "db down"), ("typo", "bad input")):
        made[name] = JobExecution.objects.create(
            job_type="echo",
            status=JobStatus.FAILED,
            payload={"message": message},
            user_id=owner,
            attempts=3,
            max_retries=2,
            error=f"RuntimeError: {message}",
            traceback=f"Traceback (most recent call last):\n  ...\nRuntimeError: {message}",
            created_at=now - timedelta(minutes=30),
            started_at=now - timedelta(minutes=29),
            finished_at=now - timedelta(minutes=20),
        )
    made["running"] = JobExecution.objects.create(
        job_type="generate_report",
        status=JobStatus.RUNNING,
        payload={"report_type": "monthly-analytics", "format": "pdf"},
        attempts=1,
        progress=20,
        progress_message="collecting rows",
        started_at=now - timedelta(seconds=30),
    )
    return made


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


# The database fixtures come before the browser's: they run before Playwright's event loop.


def test_admin_retry_and_dashboard(
    admin_login: tuple[str, str],
    jobs: dict[str, JobExecution],
    live_server: Any,
    served_static: None,
    page: Page,
    screenshot: Screenshot,
) -> None:
    log_in(page, live_server.url, *admin_login)
    screenshot("01-admin-index")

    page.click("a[href$='/admin/django_qstash_jobs/jobexecution/']")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 9
    screenshot("02-job-list")

    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url("**status__exact=failed**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    screenshot("03-failed-jobs")

    outage = jobs["outage"]
    row = page.locator("#result_list tbody tr", has=page.locator(f"[title='{outage.job_id}']"))
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist")
    messages = page.locator("ul.messagelist").inner_text()
    assert f"Job {outage.job_id} retried: now completed." in messages
    # Still filtered on failed jobs: only the one not retried is left.
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot("04-after-retry")

    outside_loop(outage.refresh_from_db)
    assert outage.status == JobStatus.COMPLETED
    page.goto(f"{live_server.url}/admin/django_qstash_jobs/jobexecution/{outage.pk}/change/")
    assert page.locator(".qstash-badge").first.inner_text() == "Completed"
    screenshot("05-retried-job-detail")

    # The app's index page links to the dashboard (the job list does too).
    page.get_by_role("link", name="QStash jobs").first.click()
    page.wait_for_selector("text=Monitoring")
    screenshot("06-app-index")
    page.get_by_role("link", name="Jobs dashboard").click()
    page.wait_for_selector("#qstash-type-stats")
    echo = page.locator("#qstash-type-stats tr[data-job-type=echo]").inner_text()
    # echo: 3 completed + the retried one; one failure left: 1 of 5 decided = 20 %.
    assert "20.0%" in echo
    failures = page.locator("#qstash-latest-failures tbody tr")
    assert failures.count() == 1
    assert "RuntimeError: bad input" in failures.inner_text()
    screenshot("07-dashboard")

    page.emulate_media(color_scheme="dark")
    page.reload()
    screenshot("08-dashboard-dark")
    page.goto(f"{live_server.url}/admin/django_qstash_jobs/jobexecution/")
    screenshot("09-job-list-dark")


def test_job_page_follows_a_running_job(
    admin_login: tuple[str, str],
    jobs: dict[str, JobExecution],
    live_server: Any,
    served_static: None,
    monkeypatch: pytest.MonkeyPatch,
    page: Page,
    screenshot: Screenshot,
) -> None:
    # Quick polls, and streams that end soon even if a browser leaves one open.
    monkeypatch.setattr(
        status_views,
        "STREAM_TIMING",
        StreamTiming(poll_interval=0.1, keepalive_interval=1, max_duration=20),
    )
    running = jobs["running"]
    log_in(page, live_server.url, *admin_login)
    page.goto(f"{live_server.url}/admin/django_qstash_jobs/jobexecution/{running.pk}/change/")
    assert page.locator(".qstash-progress__text").inner_text() == "20%"
    screenshot("10-running-job")

    def progress() -> int:
        return JobExecution.objects.filter(pk=running.pk).update(
            progress=60, progress_message="drawing charts", updated_at=timezone.now()
        )

    def complete() -> int:
        return JobExecution.objects.filter(pk=running.pk).update(
            status=JobStatus.COMPLETED,
            progress=100,
            result={"file": "reports/monthly.pdf", "size": 5120},
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )

    outside_loop(progress)
    page.wait_for_function("document.querySelector('.qstash-progress__text').textContent === '60%'")
    assert page.locator(".qstash-progress progress").get_attribute("value") is not None
    assert page.locator(".qstash-progress__message").inner_text() == "drawing charts"
    screenshot("11-running-job-progress")

    outside_loop(complete)
    # A change of status reloads the page, which then shows the result.
    page.wait_for_selector(".qstash-badge--completed")
    page.wait_for_selector("text=reports/monthly.pdf")
    assert page.locator("[data-qstash-events]").count() == 0
    screenshot("12-finished-job")
