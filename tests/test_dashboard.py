"""The admin dashboard: its numbers, computed by the database, and the page."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_qstash_jobs import stats
from django_qstash_jobs.admin.dashboard import format_duration, format_rate
from django_qstash_jobs.models import JobExecution, JobStatus

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:django_qstash_jobs_jobexecution_dashboard"


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def rows(
    job_type: str,
    status: str,
    *,
    count: int = 1,
    durations: list[float] | None = None,
    age: timedelta = timedelta(hours=1),
) -> list[JobExecution]:
    """Jobs created ``age`` ago; with ``durations``, one job per duration (in seconds)."""
    now = timezone.now()
    created = now - age
    jobs = []
    for duration in durations if durations is not None else [None] * count:
        started = finished = None
        if duration is not None:
            started = created + seconds(1)
            finished = started + seconds(duration)
        jobs.append(
            JobExecution(
                job_type=job_type,
                status=status,
                created_at=created,
                started_at=started,
                finished_at=finished,
                error="RuntimeError: boom\nmore detail" if status == JobStatus.FAILED else "",
            )
        )
    return JobExecution.objects.bulk_create(jobs)


@pytest.fixture
def known_jobs() -> None:
    """echo: 10 completed of 1..10 s, 2 failed, 1 running; flaky: 1 completed of 4 s, 3 failed.

    Plus older rows: 2 echo completed 3 days ago (7-day window only) and 5 failed 10 days ago
    (outside both windows).
    """
    rows("echo", JobStatus.COMPLETED, durations=[float(n) for n in range(1, 11)])
    rows("echo", JobStatus.FAILED, durations=[100.0, 200.0])
    rows("echo", JobStatus.RUNNING)
    rows("flaky", JobStatus.COMPLETED, durations=[4.0])
    rows("flaky", JobStatus.FAILED, count=3)
    rows("echo", JobStatus.COMPLETED, durations=[11.0, 12.0], age=timedelta(days=3))
    rows("echo", JobStatus.FAILED, count=5, age=timedelta(days=10))


# -- the numbers -----------------------------------------------------------------------------


def test_status_counts_over_24_hours_and_7_days(known_jobs: None) -> None:
    counts = {count.status: (count.last_day, count.last_week) for count in stats.status_counts()}
    assert counts == {
        "pending": (0, 0),
        "queued": (0, 0),
        "running": (1, 1),
        "retrying": (0, 0),
        "completed": (11, 13),
        "failed": (5, 5),
        "cancelled": (0, 0),
    }
    assert stats.totals(stats.status_counts()) == (17, 19)


def test_type_stats_counts_failure_rate_and_percentiles(known_jobs: None) -> None:
    by_type = {item.job_type: item for item in stats.type_stats(timezone.now() - timedelta(days=7))}
    echo, flaky = by_type["echo"], by_type["flaky"]

    assert (echo.total, echo.completed, echo.failed, echo.timed) == (15, 12, 2, 12)
    assert echo.failure_rate == pytest.approx(2 / 14)
    # percentile_cont over 1..12 s: position 0.5 * 11 = 5.5 -> 6.5 s; 0.95 * 11 = 10.45 -> 11.45 s.
    assert echo.p50 == seconds(6.5)
    assert echo.p95 == seconds(11.45)

    assert (flaky.total, flaky.completed, flaky.failed) == (4, 1, 3)
    assert flaky.failure_rate == pytest.approx(0.75)
    assert flaky.p50 == flaky.p95 == seconds(4)


def test_a_type_without_completed_jobs_has_no_percentiles() -> None:
    rows("permanent", JobStatus.FAILED, count=2)
    rows("sleep", JobStatus.RUNNING)
    (permanent, sleep) = stats.type_stats(timezone.now() - timedelta(days=1))
    assert (permanent.job_type, permanent.failure_rate, permanent.p50) == ("permanent", 1.0, None)
    assert (sleep.job_type, sleep.failure_rate, sleep.p95) == ("sleep", None, None)


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        ([7.0], {0.5: 7.0, 0.95: 7.0}),
        ([1.0, 3.0], {0.5: 2.0, 0.95: 2.9}),
        ([5.0, 1.0, 4.0, 2.0, 3.0], {0.5: 3.0, 0.95: 4.8}),
        ([0.25] * 4 + [60.0], {0.5: 0.25, 0.95: 48.05}),
    ],
)
def test_portable_percentiles_match_percentile_cont(
    durations: list[float], expected: dict[float, float]
) -> None:
    rows("echo", JobStatus.COMPLETED, durations=durations)
    timed = JobExecution.objects.filter(started_at__isnull=False)
    found = stats.percentiles_by_offset(timed, {"echo": len(durations)}, (0.5, 0.95))
    assert found == {"echo": {fraction: seconds(value) for fraction, value in expected.items()}}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="percentile_cont is PostgreSQL's")
def test_postgresql_percentiles_agree_with_the_portable_ones() -> None:
    for index, job_type in enumerate(["echo", "flaky", "sleep"]):
        rows(job_type, JobStatus.COMPLETED, durations=[(n * 37 % 23) + index for n in range(41)])
    timed = JobExecution.objects.filter(started_at__isnull=False)
    counts = {"echo": 41, "flaky": 41, "sleep": 41}
    in_sql = stats.percentiles_in_sql(timed, (0.1, 0.5, 0.95))
    by_offset = stats.percentiles_by_offset(timed, counts, (0.1, 0.5, 0.95))
    assert in_sql == by_offset
    assert in_sql["flaky"][0.5] == seconds(12)


def test_percentile_fraction_is_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.PercentileCont(stats.DURATION, 95)


def test_latest_failures_newest_first_without_large_fields() -> None:
    old, new = rows("echo", JobStatus.FAILED, durations=[1.0, 50.0])
    rows("echo", JobStatus.COMPLETED, durations=[99.0])
    failures = stats.latest_failures(limit=5)
    assert [job.pk for job in failures] == [new.pk, old.pk]
    assert failures[0].get_deferred_fields() >= {"payload", "result", "traceback"}


def test_format_helpers() -> None:
    assert format_duration(None) == "\u2014"
    assert format_duration(timedelta(milliseconds=350)) == "350 ms"
    assert format_duration(seconds(5.5)) == "5.5 s"
    assert format_duration(seconds(125)) == "2 min 5 s"
    assert format_duration(seconds(3780)) == "1 h 3 min"
    assert format_duration(timedelta(days=2, hours=4)) == "2 d 4 h"
    assert format_rate(None) == "\u2014"
    assert format_rate(2 / 14) == "14.3%"


# -- the page --------------------------------------------------------------------------------


def test_dashboard_page_shows_the_numbers(admin_client: Client, known_jobs: None) -> None:
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Jobs dashboard" in content
    echo = next(row for row in response.context["type_rows"] if row.job_type == "echo")
    assert (echo.total.count, echo.completed, echo.failed.count) == (15, 12, 2)
    assert (echo.failure_rate, echo.p50, echo.p95) == ("14.3%", "6.5 s", "11.4 s")
    assert echo.alarming
    for text in ("14.3%", "6.5 s", "75.0%", "4.0 s", 'class="qstash-badge qstash-badge--failed"'):
        assert text in content
    failures = response.context["failures"]
    assert len(failures) == 5
    assert failures[0].error == "RuntimeError: boom"
    change_url = reverse(
        "admin:django_qstash_jobs_jobexecution_change",
        args=[JobExecution.objects.get(job_id=failures[0].job_id).pk],
    )
    assert f'href="{change_url}"' in content


def test_dashboard_counts_link_to_the_matching_list(admin_client: Client, known_jobs: None) -> None:
    response = admin_client.get(reverse(DASHBOARD))
    completed = next(row for row in response.context["status_rows"] if "completed" in row.badge)
    for link in (completed.last_day, completed.last_week):
        listed = admin_client.get(link.url)
        assert listed.status_code == 200
        assert listed.context["cl"].result_count == link.count
    echo = next(row for row in response.context["type_rows"] if row.job_type == "echo")
    assert admin_client.get(echo.failed.url).context["cl"].result_count == 2


def test_dashboard_with_no_jobs(admin_client: Client) -> None:
    content = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert "No jobs in the last 7 days." in content
    assert "No failures in the last 7 days." in content


def test_dashboard_queries_do_not_grow_with_rows(admin_client: Client) -> None:
    def queries_with(per_type: int) -> int:
        JobExecution.objects.all().delete()
        for job_type in ("echo", "flaky"):
            rows(job_type, JobStatus.COMPLETED, durations=[float(n) for n in range(per_type)])
            rows(job_type, JobStatus.FAILED, durations=[1.0] * per_type)
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(DASHBOARD)).status_code == 200
        return len(captured)

    assert queries_with(5) == queries_with(50)


def test_dashboard_is_linked_from_the_list_and_the_app_index(admin_client: Client) -> None:
    url = reverse(DASHBOARD)
    changelist = admin_client.get(reverse("admin:django_qstash_jobs_jobexecution_changelist"))
    assert f'href="{url}"' in changelist.content.decode()
    app_index = admin_client.get(reverse("admin:app_list", args=["django_qstash_jobs"]))
    assert f'href="{url}"' in app_index.content.decode()


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user("viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_dashboard_needs_the_view_permission(client: Client) -> None:
    client.force_login(staff_with())
    assert client.get(reverse(DASHBOARD)).status_code == 403
    app_index = client.get(reverse("admin:index")).content.decode()
    assert reverse(DASHBOARD) not in app_index


def test_dashboard_for_a_viewer(client: Client) -> None:
    client.force_login(staff_with("view_jobexecution"))
    assert client.get(reverse(DASHBOARD)).status_code == 200


def test_dashboard_sends_anonymous_users_to_log_in(client: Client) -> None:
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def _now_between(value: datetime, before: datetime, after: datetime) -> bool:
    return before <= value <= after


def test_dashboard_says_when_it_was_computed(admin_client: Client) -> None:
    before = timezone.now()
    response = admin_client.get(reverse(DASHBOARD))
    context: Any = response.context
    assert _now_between(context["now"], before, timezone.now())
