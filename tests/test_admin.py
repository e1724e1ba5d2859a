"""The job admin: list, search, filters, the read-only detail page, retry and cancel."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.admin import executions, pagination
from django_qstash_jobs.exceptions import EnqueueError, JobStateError
from django_qstash_jobs.models import JobExecution, JobStatus
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_qstash_jobs_jobexecution_changelist"

# A project that routes the admin but not the app's URLs (see the status events test below).
urlpatterns = [path("admin/", django_admin.site.urls)]


def change_url(job: JobExecution) -> str:
    return reverse("admin:django_qstash_jobs_jobexecution_change", args=[job.pk])


def job(status: str = JobStatus.QUEUED, job_type: str = "echo", **fields: Any) -> JobExecution:
    fields.setdefault("payload", {"message": "hi"})
    return JobExecution.objects.create(job_type=job_type, status=status, **fields)


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def run_action(client: Client, action: str, jobs: list[JobExecution]) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [item.pk for item in jobs]},
        follow=True,
    )


# -- the list --------------------------------------------------------------------------------


def test_list_shows_badges_types_users_attempts_and_durations(admin_client: Client) -> None:
    alice = User.objects.create_user("alice")
    start = timezone.now() - timedelta(minutes=5)
    completed = job(
        JobStatus.COMPLETED,
        user_id=str(alice.pk),
        organization_id="org-7",
        attempts=2,
        max_retries=3,
        started_at=start,
        finished_at=start + timedelta(seconds=2.5),
    )
    job(JobStatus.FAILED, job_type="flaky", user_id="external-42")

    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<span class="qstash-badge qstash-badge--completed" data-job-status="completed">' in (
        content
    )
    assert ">Failed</span>" in content
    assert f"alice ({alice.pk})" in content
    assert "external-42" in content  # Not a user of this site: shown as it is.
    assert "org-7" in content
    assert "2 / 4" in content
    assert "2.5 s" in content
    short = completed.job_id[:8]
    assert f'<code class="qstash-id" title="{completed.job_id}">{short}\u2026</code>' in content
    assert timezone.localtime(completed.created_at).strftime("%Y-%m-%d %H:%M") in content
    assert "django_qstash_jobs/admin.css" in content


def test_a_user_id_too_large_for_a_key_is_shown_as_it_is(admin_client: Client) -> None:
    # An external id of 30 digits: no user's key, and out of range for the database.
    row = job(user_id="9" * 30)

    for url in (reverse(CHANGELIST), change_url(row)):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert "9" * 30 in response.content.decode()


def test_list_filters_by_status_type_and_date(admin_client: Client) -> None:
    failed = job(JobStatus.FAILED)
    job(JobStatus.COMPLETED)
    job(JobStatus.FAILED, job_type="flaky")
    job(JobStatus.FAILED, created_at=timezone.now() - timedelta(days=30))
    url = reverse(CHANGELIST)

    def listed(query: dict[str, str]) -> int:
        response = admin_client.get(url, query)
        assert response.status_code == 200
        return int(response.context["cl"].result_count)

    assert listed({"status__exact": "failed"}) == 3
    assert listed({"status__exact": "failed", "job_type__exact": "echo"}) == 2
    week_ago = timezone.now() - timedelta(days=7)
    assert listed({"status__exact": "failed", "created_at__gte": week_ago.isoformat()}) == 2
    assert listed({"job_type__exact": failed.job_type, "status__exact": "completed"}) == 1


def test_the_list_reads_no_more_of_the_table_than_its_filter(admin_client: Client) -> None:
    # The job type filter offers the registered types, not a DISTINCT over every row; no date
    # hierarchy, and no count of every row beside the filtered one.
    job(JobStatus.FAILED)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
    assert response.status_code == 200
    table = JobExecution._meta.db_table
    reads = [q["sql"] for q in captured if f'"{table}"' in q["sql"]]
    assert reads and all("WHERE" in sql and "DISTINCT" not in sql for sql in reads)
    offered = [choice["display"] for choice in response.context["cl"].filter_specs[1].choices(
        response.context["cl"]
    )]  # fmt: skip
    assert {"echo", "flaky", "send_email", "django_task"} <= set(offered)


def count_reads(captured: CaptureQueriesContext) -> list[str]:
    table = JobExecution._meta.db_table
    return [q["sql"] for q in captured if "COUNT(" in q["sql"] and f'"{table}"' in q["sql"]]


def test_the_unfiltered_list_counts_no_further_than_the_count_limit(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination, "COUNT_LIMIT", 2)
    for _ in range(3):
        job()
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    [count] = count_reads(captured)
    assert "LIMIT" in count and "ORDER BY" not in count


def test_a_list_under_the_count_limit_is_counted_exactly(admin_client: Client) -> None:
    for _ in range(3):
        job()
    job(JobStatus.FAILED)
    assert admin_client.get(reverse(CHANGELIST)).context["cl"].result_count == 4
    failed = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
    assert failed.context["cl"].result_count == 1


def test_a_large_table_is_counted_by_the_planners_estimate(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination, "planner_row_estimate", lambda queryset: 1_000_000)
    job()
    job(JobStatus.FAILED)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 1_000_000
    assert len(response.context["cl"].result_list) == 2
    assert count_reads(captured) == []
    # The estimate is of the whole table: a filtered list is counted.
    failed = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
    assert failed.context["cl"].result_count == 1


@pytest.mark.parametrize("estimate", [None, 5])
def test_an_unknown_or_small_estimate_is_replaced_by_a_count(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, estimate: int | None
) -> None:
    monkeypatch.setattr(pagination, "planner_row_estimate", lambda queryset: estimate)
    job()
    assert admin_client.get(reverse(CHANGELIST)).context["cl"].result_count == 1


@pytest.mark.skipif(connection.vendor == "postgresql", reason="PostgreSQL has the estimate")
def test_there_is_no_planner_estimate_off_postgresql() -> None:
    job()
    assert pagination.planner_row_estimate(JobExecution.objects.all()) is None


@pytest.mark.parametrize(
    "query",
    [
        {"created_at__gte": "9999-12-31T23:59:59-01:00"},  # past year 9999 in UTC
        {"created_at__lt": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
    ],
)
def test_a_date_filter_beyond_the_calendar_is_refused_where_the_database_cannot_hold_it(
    admin_client: Client, query: dict[str, str]
) -> None:
    job()
    response = admin_client.get(reverse(CHANGELIST), query)
    if connection.vendor == "postgresql":
        # Its timestamps reach far past year 9999: the filter simply matches nothing.
        assert response.status_code == 200
        assert response.context["cl"].result_count == 0
        return
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")  # the admin's "invalid parameters" page


@pytest.mark.parametrize("name", ["job_type__exact", "status__exact"])
def test_a_filter_value_with_a_nul_is_refused(admin_client: Client, name: str) -> None:
    # PostgreSQL refuses a NUL even in a query.
    job()
    response = admin_client.get(reverse(CHANGELIST), {name: "echo\x00"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_a_search_with_a_nul_is_answered(admin_client: Client) -> None:
    # PostgreSQL refuses a NUL even in a query; the admin's search form turns it away first.
    job()
    assert admin_client.get(reverse(CHANGELIST), {"q": "job\x00id"}).status_code == 200


@pytest.mark.parametrize("field", ["job_id", "idempotency_key", "message_id"])
def test_search_matches_ids_exactly(admin_client: Client, field: str) -> None:
    wanted = job(idempotency_key="order-1234", message_id="msg_abc123")
    job(idempotency_key="order-12345", message_id="msg_abc1234")
    term = getattr(wanted, field)
    response = admin_client.get(reverse(CHANGELIST), {"q": f"  {term} "})
    assert [item.pk for item in response.context["cl"].result_list] == [wanted.pk]
    partial = admin_client.get(reverse(CHANGELIST), {"q": term[:-1]})
    assert partial.context["cl"].result_count == 0


@override_settings(USE_TZ=False)
def test_the_list_shows_creation_times_without_time_zone_support(admin_client: Client) -> None:
    job(created_at=datetime(2024, 5, 17, 9, 30))  # naive, as Django stores it without USE_TZ
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert "2024-05-17 09:30" in response.content.decode()


def test_list_leaves_large_fields_unread(admin_client: Client) -> None:
    job(payload={"big": "x" * 1000}, result={"r": 1}, traceback="tb")
    response = admin_client.get(reverse(CHANGELIST))
    (listed,) = response.context["cl"].result_list
    assert listed.get_deferred_fields() == set(executions.LARGE_FIELDS)


@pytest.mark.parametrize("rows", [5, 50])
def test_list_queries_do_not_grow_with_rows(
    admin_client: Client, rows: int, django_assert_max_num_queries: Any
) -> None:
    users = User.objects.bulk_create([User(username=f"user{n}") for n in range(rows)])
    JobExecution.objects.bulk_create(
        JobExecution(
            job_type="echo",
            status=JobStatus.COMPLETED if n % 2 else JobStatus.FAILED,
            user_id=str(users[n].pk),
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
        for n in range(rows)
    )
    # Session, user, count, page, users of the page...
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.content.decode().count("qstash-badge--") == rows


def test_list_queries_are_the_same_for_5_and_50_rows(admin_client: Client) -> None:
    def queries_for(rows: int) -> int:
        JobExecution.objects.all().delete()
        User.objects.filter(username__startswith="user").delete()
        users = User.objects.bulk_create([User(username=f"user{n}") for n in range(rows)])
        JobExecution.objects.bulk_create(
            JobExecution(job_type="echo", user_id=str(user.pk), organization_id="o")
            for user in users
        )
        with CaptureQueriesContext(connection) as captured:
            admin_client.get(reverse(CHANGELIST))
        return len(captured)

    assert queries_for(5) == queries_for(50)


def test_nothing_can_be_added_or_edited(admin_client: Client) -> None:
    item = job(JobStatus.FAILED)
    assert admin_client.get(reverse("admin:django_qstash_jobs_jobexecution_add")).status_code == 403
    response = admin_client.post(change_url(item), {"job_type": "other", "_save": "Save"})
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.job_type == "echo"


# -- the detail page -------------------------------------------------------------------------


def test_detail_shows_pretty_json_error_traceback_and_progress(admin_client: Client) -> None:
    item = job(
        JobStatus.FAILED,
        payload={"message": "<b>hi</b>", "times": 2},
        result={"partial": [1, 2]},
        options={"retries": 5},
        metadata={"user_id": 3},
        error="RuntimeError: boom",
        traceback='Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom',
        progress=40,
        progress_message="resizing",
    )
    response = admin_client.get(change_url(item))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<pre class="qstash-json">{\n  &quot;message&quot;: &quot;&lt;b&gt;hi&lt;/b&gt;' in (
        content
    )
    assert "&quot;partial&quot;: [\n    1,\n    2\n  ]" in content
    assert "&quot;retries&quot;: 5" in content
    assert "RuntimeError: boom" in content
    assert '<pre class="qstash-traceback">Traceback (most recent call last):' in content
    assert '<progress max="100" value="40"' in content
    assert "resizing" in content
    assert 'name="_save"' not in content  # Read-only: no save buttons.
    assert "data-qstash-events" not in content  # Finished: nothing to follow.


def test_detail_of_an_unfinished_job_follows_its_events(admin_client: Client) -> None:
    item = job(JobStatus.RUNNING)
    content = admin_client.get(change_url(item)).content.decode()
    events = reverse("django_qstash_jobs:status-events", args=[item.job_id])
    assert f'data-qstash-events="{events}" data-qstash-status="running"' in content
    assert "django_qstash_jobs/job_live.js" in content


def test_detail_of_a_job_with_nothing_yet(admin_client: Client) -> None:
    item = job(JobStatus.PENDING, payload={})
    response = admin_client.get(change_url(item))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<progress max="100" value="0"' in content
    assert '<pre class="qstash-json">{}</pre>' in content
    assert "qstash-traceback" not in content
    assert '<div class="readonly">\u2014</div>' in content  # No result yet.


@override_settings(ROOT_URLCONF="tests.test_admin")
def test_detail_without_the_apps_urls_shows_a_plain_badge(admin_client: Client) -> None:
    item = job(JobStatus.RUNNING)
    content = admin_client.get(change_url(item)).content.decode()
    assert "qstash-badge--running" in content
    assert "data-qstash-events" not in content


# -- actions ---------------------------------------------------------------------------------

transactional = pytest.mark.django_db(transaction=True)


@transactional
def test_retry_runs_a_failed_job_to_completion(admin_client: Client) -> None:
    failed = job(JobStatus.FAILED, error="RuntimeError: outage", attempts=3)
    response = run_action(admin_client, "retry_jobs", [failed])
    failed.refresh_from_db()
    assert failed.status == JobStatus.COMPLETED
    assert failed.result == {"echo": "hi", "attempt": 1}
    assert failed.error == ""
    assert SideEffect.objects.filter(job_id=failed.job_id).count() == 1
    assert messages_of(response) == [
        ("success", "Retried 1 of 1 selected jobs."),
        ("success", f"Job {failed.job_id} retried: now completed."),
    ]


@transactional
def test_retry_tells_which_rows_cannot_be_retried(admin_client: Client) -> None:
    failed = job(JobStatus.FAILED)
    running = job(JobStatus.RUNNING)
    completed = job(JobStatus.COMPLETED)
    response = run_action(admin_client, "retry_jobs", [failed, running, completed])
    assert messages_of(response) == [
        ("warning", "Retried 1 of 3 selected jobs."),
        ("success", f"Job {failed.job_id} retried: now completed."),
        (
            "warning",
            f"Job {running.job_id} is running: only failed or cancelled jobs can be retried.",
        ),
        (
            "warning",
            f"Job {completed.job_id} is completed: only failed or cancelled jobs can be retried.",
        ),
    ]
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING


@transactional
def test_retry_that_cannot_publish_says_the_job_waits(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = job(JobStatus.CANCELLED)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise EnqueueError("QStash is down")

    monkeypatch.setattr("django_qstash_jobs.outbox.publish", refuse)
    response = run_action(admin_client, "retry_jobs", [cancelled])
    (summary, row) = messages_of(response)
    assert summary == ("warning", "Retried 0 of 1 selected jobs.")
    assert row[0] == "warning"
    assert "could not be published (QStash is down)" in row[1]
    cancelled.refresh_from_db()
    assert cancelled.status == JobStatus.PENDING


@transactional
def test_retry_that_loses_a_race_says_so(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = job(JobStatus.FAILED)

    def raced(job_id: str) -> str:
        raise JobStateError(f"Job {job_id} changed state while being retried; try again.")

    monkeypatch.setattr(job_dispatcher, "retry", raced)
    response = run_action(admin_client, "retry_jobs", [failed])
    assert messages_of(response)[1] == (
        "warning",
        f"Job {failed.job_id} was not retried: "
        f"Job {failed.job_id} changed state while being retried; try again.",
    )


@transactional
def test_cancel_that_loses_a_race_reports_the_state_that_won(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = job(JobStatus.QUEUED)

    def raced(job_id: str) -> bool:
        # A delivery claims the job between the list's read and the cancel.
        JobExecution.objects.filter(job_id=job_id).update(status=JobStatus.RUNNING)
        return False

    monkeypatch.setattr(job_dispatcher, "cancel", raced)
    response = run_action(admin_client, "cancel_jobs", [queued])
    assert messages_of(response)[1] == (
        "warning",
        f"Job {queued.job_id} is running: only pending, queued or retrying jobs can be cancelled.",
    )


@transactional
def test_cancel_a_queued_job_and_report_the_others(admin_client: Client) -> None:
    queued = job(JobStatus.QUEUED)
    running = job(JobStatus.RUNNING)
    response = run_action(admin_client, "cancel_jobs", [queued, running])
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, running.status) == (JobStatus.CANCELLED, JobStatus.RUNNING)
    assert messages_of(response) == [
        ("warning", "Cancelled 1 of 2 selected jobs."),
        ("success", f"Job {queued.job_id} cancelled."),
        (
            "warning",
            f"Job {running.job_id} is running: only pending, queued or retrying jobs "
            "can be cancelled.",
        ),
    ]


@transactional
def test_many_rows_are_summed_up_after_a_few_messages(admin_client: Client) -> None:
    jobs = [job(JobStatus.QUEUED) for _ in range(executions.MAX_ROW_MESSAGES + 5)]
    response = run_action(admin_client, "cancel_jobs", jobs)
    found = messages_of(response)
    assert found[0] == ("success", "Cancelled 25 of 25 selected jobs.")
    assert len(found) == 1 + executions.MAX_ROW_MESSAGES + 1
    assert found[-1] == ("info", "…and 5 more.")
    assert JobExecution.objects.filter(status=JobStatus.CANCELLED).count() == 25


@pytest.mark.skipif(
    not hasattr(django_admin, "ActionLocation"), reason="actions on the change form: Django 6.1+"
)
@transactional
def test_retry_from_the_detail_page(admin_client: Client) -> None:
    failed = job(JobStatus.FAILED)
    response = admin_client.post(
        change_url(failed),
        {"CHANGE_FORM-action": "retry_jobs", "_selected_action": [failed.pk]},
        follow=True,
    )
    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.status == JobStatus.COMPLETED


def test_viewers_get_no_actions(client: Client) -> None:
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_jobexecution"))
    client.force_login(viewer)
    failed = job(JobStatus.FAILED)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert "retry_jobs" not in response.content.decode()
    run_action(client, "retry_jobs", [failed])
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED


def test_staff_who_may_change_jobs_get_the_actions(client: Client) -> None:
    operator = User.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename="change_jobexecution"))
    client.force_login(operator)
    job(JobStatus.FAILED)
    content = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="retry_jobs"' in content
    assert 'value="cancel_jobs"' in content


# -- deleting --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_not_finished_cannot_be_deleted(admin_client: Client, status: str) -> None:
    # Its delivery would record the outcome into nothing.
    unfinished, done = job(status), job(JobStatus.COMPLETED)
    delete_url = reverse("admin:django_qstash_jobs_jobexecution_delete", args=[unfinished.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [unfinished.pk, done.pk], "post": "yes"},
    )
    assert response.status_code == 403  # the whole selection is refused
    assert JobExecution.objects.count() == 2


def test_deleting_a_finished_report_deletes_its_file(
    admin_client: Client, storage: FileSystemStorage
) -> None:
    name = storage.save("qstash_jobs/reports/old.pdf", ContentFile(b"pdf"))
    report = job(JobStatus.COMPLETED, job_type="generate_report", result={"file": name})
    other = storage.save("qstash_jobs/exports/kept.csv", ContentFile(b"csv"))
    job(JobStatus.COMPLETED, job_type="export_data", result={"file": other})

    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [report.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert not JobExecution.objects.filter(pk=report.pk).exists()
    assert not storage.exists(name)
    assert storage.exists(other)

    single = job(JobStatus.FAILED, job_type="generate_report", result={"file": other})
    delete_url = reverse("admin:django_qstash_jobs_jobexecution_delete", args=[single.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not storage.exists(other)
