"""export_data: declared filters only, CSV/JSON/JSON Lines, scoping, progress, empty and unicode."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import FileSystemStorage

from django_qstash_jobs import (
    JOB_TYPES,
    JobContext,
    get_job_execution_by_job_id,
    job_dispatcher,
    register_export,
)
from django_qstash_jobs.exceptions import JobValidationError, PermanentJobError
from django_qstash_jobs.execution import Delivery, execute
from django_qstash_jobs.exports import export_registry
from django_qstash_jobs.jobs import export_formats, exports
from django_qstash_jobs.jobs.reports import render_csv
from django_qstash_jobs.jobs.schemas import ExportDataPayload
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.reports import Report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("storage")]


def joined(day: int) -> datetime:
    return datetime(2025, 1, day, 9, 30, tzinfo=dt_timezone.utc)


@pytest.fixture
def users() -> None:
    User.objects.create(username="old", email="old@example.com", date_joined=joined(1))
    User.objects.create(
        username="zoe",
        email="zoe@example.com",
        first_name="Zoë",
        last_name='Ångström, "Jr"',
        date_joined=joined(15),
        password="pbkdf2_sha256$secret-hash",
    )
    User.objects.create(username="li", first_name="李", last_name="✓ 😀", date_joined=joined(20))


def export(payload: dict[str, Any], metadata: dict[str, Any] | None = None) -> JobExecution:
    execution = get_job_execution_by_job_id(
        job_dispatcher.enqueue(JOB_TYPES.EXPORT_DATA, payload, metadata)
    )
    assert execution is not None
    return execution


def read(storage: FileSystemStorage, execution: JobExecution) -> str:
    assert execution.status == JobStatus.COMPLETED, execution.error
    result = execution.result
    assert set(result) == {"file", "url", "size", "rows"}
    with storage.open(result["file"]) as stored:
        content: bytes = stored.read()
    assert result["size"] == len(content)
    assert result["url"] == storage.url(result["file"])
    return content.decode("utf-8")


@pytest.mark.usefixtures("users")
def test_users_csv_with_a_date_filter(storage: FileSystemStorage) -> None:
    execution = export(
        {"entityType": "users", "format": "csv", "filters": {"createdAfter": "2025-01-10"}},
        {"user_id": 123},
    )

    content = read(storage, execution)
    assert execution.result["rows"] == 2
    assert execution.result["file"].startswith("qstash_jobs/exports/")
    assert execution.result["file"].endswith(f"/users-{execution.job_id}.csv")
    assert execution.payload["filters"] == {"created_after": "2025-01-10"}
    rows = list(csv.DictReader(io.StringIO(content, newline="")))
    assert [row["username"] for row in rows] == ["zoe", "li"]
    assert rows[0]["date_joined"] == "2025-01-15T09:30:00+00:00"
    assert rows[0]["last_login"] == ""
    assert rows[0]["last_name"] == 'Ångström, "Jr"'
    assert rows[1]["first_name"] == "李"
    assert rows[1]["last_name"] == "✓ 😀"
    assert "password" not in rows[0]
    assert "secret-hash" not in content


@pytest.mark.usefixtures("users")
def test_json_and_json_lines_hold_the_same_objects(storage: FileSystemStorage) -> None:
    as_json = read(storage, export({"entity_type": "users", "format": "json"}))
    as_jsonl = read(storage, export({"entity_type": "users", "format": "jsonl"}))

    objects = json.loads(as_json)
    assert [json.loads(line) for line in as_jsonl.splitlines()] == objects
    assert [item["username"] for item in objects] == ["old", "zoe", "li"]
    assert objects[1]["date_joined"] == "2025-01-15T09:30:00Z"
    assert objects[2]["first_name"] == "李"
    assert "李" in as_json  # Written as UTF-8, not \u escapes.
    assert objects[0]["is_active"] is True


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            {"password": "x"},
            "unknown filter 'password' for export 'users'; allowed filters: "
            "created_after, created_before, is_active, is_staff",
        ),
        ({"username": "zoe"}, "unknown filter 'username'"),
        ({"created_after": "last tuesday"}, "filter 'created_after': 'last tuesday' is not a date"),
        ({"created_after": 20250101}, "filter 'created_after': 20250101 is not a date"),
        ({"is_active": "maybe"}, "filter 'is_active': “maybe” value must be either True or False"),
    ],
)
def test_a_forbidden_filter_or_bad_value_is_refused_at_enqueue(
    filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(JobValidationError) as caught:
        export({"entity_type": "users", "filters": filters})

    assert message in str(caught.value)
    assert caught.value.errors[0]["field"] == "filters"
    assert not JobExecution.objects.exists()


def test_an_unknown_export_is_refused_at_enqueue() -> None:
    with pytest.raises(JobValidationError, match="unknown export 'orders'; registered exports:"):
        export({"entity_type": "orders"})


@pytest.mark.parametrize(
    ("file_format", "expected"),
    [
        (
            "csv",
            "id,username,email,first_name,last_name,is_active,is_staff,date_joined,last_login\r\n",
        ),
        ("json", "[]\n"),
        ("jsonl", ""),
    ],
)
@pytest.mark.usefixtures("users")
def test_an_empty_result_is_a_valid_empty_file(
    storage: FileSystemStorage, file_format: str, expected: str
) -> None:
    execution = export(
        {"entity_type": "users", "format": file_format, "filters": {"created_after": "2030-01-01"}}
    )
    assert read(storage, execution) == expected
    assert execution.result["rows"] == 0


def test_job_executions_of_an_organisation_hold_only_its_rows(storage: FileSystemStorage) -> None:
    for organization in ("456", "456", "789", None):
        JobExecution.objects.create(
            job_type="echo", status="completed", organization_id=organization
        )

    scoped = export({"entity_type": "job_executions", "format": "jsonl"}, {"organization_id": 456})
    everything = export({"entity_type": "job_executions", "format": "jsonl"})

    # The organisation's two jobs, and the export's own (running) job, enqueued for it too.
    assert scoped.result["rows"] == 3
    lines = [json.loads(line) for line in read(storage, scoped).splitlines()]
    assert {line["organization_id"] for line in lines} == {"456"}
    # In the model's order, newest first.
    assert lines[0]["job_id"] == scoped.job_id
    assert lines[0]["status"] == "running"
    # Unscoped: the four rows and the two export jobs.
    assert everything.result["rows"] == 6


@pytest.mark.usefixtures("users")
def test_an_export_without_scope_refuses_a_job_for_an_organisation() -> None:
    # Users have no organisation here: the file would hold every organisation's accounts.
    execution = export({"entity_type": "users", "format": "csv"}, {"organization_id": 456})

    assert execution.status == JobStatus.FAILED
    assert "Export 'users' has no scope, and this job is for organisation '456'" in (
        execution.error
    )
    assert execution.result is None


@pytest.mark.parametrize("escape", [True, False], ids=["escaped", "CSV_ESCAPE_FORMULAS off"])
def test_text_a_spreadsheet_would_run_as_a_formula_is_kept_text(
    storage: FileSystemStorage, settings: Any, escape: bool
) -> None:
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "CSV_ESCAPE_FORMULAS": escape}
    User.objects.create(username="mallory", first_name='=HYPERLINK("http://x.test","a")',
                        last_name="-5", email="@home")  # fmt: skip
    User.objects.create(username="ann", first_name="Ann", last_name="O'Neil-Smith")

    content = read(storage, export({"entity_type": "users", "format": "csv"}))
    rows = {row["username"]: row for row in csv.DictReader(io.StringIO(content, newline=""))}

    mallory = rows["mallory"]
    names = (mallory["first_name"], mallory["last_name"], mallory["email"])
    if escape:
        assert names == ('\'=HYPERLINK("http://x.test","a")', "'-5", "'@home")
    else:
        assert names == ('=HYPERLINK("http://x.test","a")', "-5", "@home")
    assert rows["ann"]["last_name"] == "O'Neil-Smith"  # only a cell's first character counts
    assert rows["ann"]["id"].isdigit()  # numbers are not text: left alone


def test_a_column_without_a_field_is_checked_for_formulas_too() -> None:
    # An annotation (a Concat of names, say) may well be text.
    assert export_formats.converter_for(None) is export_formats.escape_formula
    assert export_formats.converter_for(None, escape_formulas=False) is None


def test_a_report_csv_keeps_formulas_text() -> None:
    report = Report(title="t", columns=["name", "count"], rows=[["=1+1", -3], ["+ok", 2]])
    assert render_csv(report).decode().splitlines() == ["name,count", "'=1+1,-3", "'+ok,2"]


@pytest.fixture
def custom_export() -> Iterator[None]:
    register_export(
        "job-payloads",
        queryset=JobExecution.objects.filter(job_type="echo"),
        fields=["job_id", "payload", "schedule__name"],
        filters={"statuses": "status__in", "unscheduled": "schedule__isnull"},
        chunk_size=2,
    )
    yield
    export_registry.unregister("job-payloads")


@pytest.mark.usefixtures("custom_export")
def test_a_registered_export_with_list_and_null_filters(storage: FileSystemStorage) -> None:
    for status, message in (("completed", "héllo"), ("failed", "b"), ("queued", "c")):
        JobExecution.objects.create(job_type="echo", status=status, payload={"message": message})

    execution = export(
        {
            "entity_type": "job-payloads",
            "filters": {"statuses": ["completed", "failed"], "unscheduled": True},
        }
    )

    rows = list(csv.reader(io.StringIO(read(storage, execution), newline="")))
    assert rows[0] == ["job_id", "payload", "schedule__name"]
    # JSON columns are JSON in the CSV, not Python's repr.
    assert [json.loads(row[1]) for row in rows[1:]] == [{"message": "b"}, {"message": "héllo"}]
    assert all(row[2] == "" for row in rows[1:])
    with pytest.raises(JobValidationError, match="filter 'statuses': must be a list"):
        export({"entity_type": "job-payloads", "filters": {"statuses": "completed"}})
    with pytest.raises(JobValidationError, match="filter 'unscheduled': must be true or false"):
        export({"entity_type": "job-payloads", "filters": {"unscheduled": "yes"}})


def test_registering_an_export_twice_needs_replace() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_export("users", queryset=User.objects.all(), fields=["id"])
    with pytest.raises(ValueError, match="non-empty list of fields"):
        register_export("nothing", queryset=User.objects.all(), fields=[])


@pytest.mark.usefixtures("users")
def test_progress_is_reported_while_rows_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[tuple[int, str]] = []
    original = JobContext.set_progress

    def spy(self: JobContext, percent: float, message: str = "") -> None:
        reported.append((int(percent), message))
        original(self, percent, message)

    monkeypatch.setattr(JobContext, "set_progress", spy)
    monkeypatch.setattr(exports, "PROGRESS_INTERVAL", 0)
    monkeypatch.setattr(export_formats, "_CHUNK", 2)

    execution = export({"entity_type": "users"})

    assert execution.status == JobStatus.COMPLETED
    assert reported == [(0, "0/3 rows"), (66, "2/3 rows"), (99, "3/3 rows")]
    assert execution.progress == 100


@pytest.fixture
def year_export() -> Iterator[None]:
    register_export(
        "users-by-year",
        queryset=lambda: User.objects.all(),
        fields=["id", "username"],
        filters={"joined_year": "date_joined__year"},
    )
    yield
    export_registry.unregister("users-by-year")


@pytest.mark.usefixtures("year_export", "users")
def test_a_value_behind_a_transform_is_checked_by_the_orm_at_enqueue(
    storage: FileSystemStorage,
) -> None:
    execution = export({"entity_type": "users-by-year", "filters": {"joined_year": 2025}})
    assert execution.result["rows"] == 3

    for refused in ("abc", ["2025"]):
        with pytest.raises(JobValidationError, match=r"filter 'joined_year': .*expected a number"):
            export({"entity_type": "users-by-year", "filters": {"joined_year": refused}})
    assert JobExecution.objects.count() == 1


def test_an_export_whose_lookup_the_orm_does_not_know_is_refused_at_enqueue() -> None:
    register_export(
        "users-by-typo",
        queryset=lambda: User.objects.all(),
        fields=["id"],
        filters={"joined": "date_joined__yaer"},
    )
    try:
        with pytest.raises(JobValidationError) as caught:
            export({"entity_type": "users-by-typo", "filters": {"joined": 2025}})
    finally:
        export_registry.unregister("users-by-typo")

    assert "filter 'joined': the export's lookup 'date_joined__yaer' is invalid: " in str(
        caught.value
    )
    assert not JobExecution.objects.exists()


@pytest.mark.usefixtures("year_export")
def test_a_queued_job_with_a_value_the_orm_refuses_fails_at_its_first_attempt() -> None:
    # Enqueued before its value was checked: the same value would fail every attempt.
    execution = JobExecution.objects.create(
        job_type=JOB_TYPES.EXPORT_DATA,
        payload={"entity_type": "users-by-year", "filters": {"joined_year": "abc"}},
        status=JobStatus.QUEUED,
    )

    execute(Delivery(job_id=execution.job_id))

    execution.refresh_from_db()
    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1
    assert "filter 'joined_year'" in execution.error


@pytest.mark.usefixtures("year_export")
def test_the_export_fails_permanently_on_a_value_the_orm_refuses() -> None:
    # A payload that skipped validation: the handler itself must not leave it to retries.
    execution = JobExecution.objects.create(job_type=JOB_TYPES.EXPORT_DATA)
    ctx = JobContext(
        job_id=execution.job_id,
        job_type=execution.job_type,
        attempt=1,
        max_retries=3,
        metadata={},
        execution=execution,
    )
    payload = ExportDataPayload.model_construct(
        entity_type="users-by-year", format="csv", filters={"joined_year": "abc"}
    )

    with pytest.raises(PermanentJobError, match="Export 'users-by-year' refuses its filters"):
        exports.export_data(payload, ctx)


@pytest.mark.parametrize(
    ("entity_type", "filters", "message"),
    [
        (
            "job_executions",
            {"status": "done"},
            "filter 'status': 'done' is not one of: pending, queued, running, retrying, "
            "completed, failed, cancelled",
        ),
        ("job-payloads", {"statuses": ["completed", "done"]}, "'done' is not one of:"),
        (
            "job_executions",
            {"job_type": "x" * 101},
            "filter 'job_type': Ensure this value has at most 100 characters (it has 101).",
        ),
    ],
    ids=["exact", "in", "validator"],
)
@pytest.mark.usefixtures("custom_export")
def test_a_value_the_field_could_never_hold_is_refused_at_enqueue(
    entity_type: str, filters: dict[str, Any], message: str
) -> None:
    # Accepted, it would only ever give an empty export.
    with pytest.raises(JobValidationError) as caught:
        export({"entity_type": entity_type, "filters": filters})

    assert message in str(caught.value)
    assert not JobExecution.objects.exists()


@pytest.mark.parametrize(
    ("zone", "filters"),
    [
        ("Europe/Paris", {"created_after": "0001-01-01"}),
        ("America/New_York", {"created_before": "9999-12-31T23:00:00"}),
    ],
    ids=["year one, east of UTC", "year 9999, west of UTC"],
)
def test_a_date_without_a_utc_equivalent_is_refused_at_enqueue(
    settings: Any, zone: str, filters: dict[str, Any]
) -> None:
    settings.TIME_ZONE = zone
    (name,) = filters

    with pytest.raises(JobValidationError) as caught:
        export({"entity_type": "job_executions", "filters": filters})

    assert f"filter {name!r}: {filters[name]!r} in time zone {zone}" in str(caught.value)
    assert "is outside the dates UTC can hold" in str(caught.value)
    assert not JobExecution.objects.exists()


def test_the_first_day_is_accepted_where_its_midnight_exists_in_utc(
    storage: FileSystemStorage, settings: Any
) -> None:
    settings.TIME_ZONE = "America/New_York"

    execution = export(
        {"entity_type": "job_executions", "filters": {"created_after": "0001-01-01"}}
    )

    assert execution.result["rows"] == 1  # the export's own job
