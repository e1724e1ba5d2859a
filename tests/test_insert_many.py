"""``statements.insert_many``: the rows it records are the rows ``bulk_create`` would record."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from django_qstash_jobs import statements
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)

#: Text that must arrive as written: quotes, backslashes, a newline, and characters past ASCII.
AWKWARD = 'it\'s "quoted", a\\b, a\nnew line, żółw 🐢'


def full_row(schedule: JobSchedule, **overrides: Any) -> JobExecution:
    """A row with every column set to something other than its default."""
    values: dict[str, Any] = {
        "job_type": "echo",
        "status": JobStatus.QUEUED,
        "payload": {"text": AWKWARD, "list": [1, 2.5, None, True], "empty": {}},
        "user_id": "user-1",
        "organization_id": "org-1",
        "idempotency_key": None,
        "metadata": {"user_id": "user-1", "note": AWKWARD},
        "message_id": "msg_1",
        "schedule": schedule,
        "attempts": 2,
        "max_retries": 7,
        "result": ["a", {"b": None}],
        "error": AWKWARD,
        "traceback": "Traceback\n  line",
        "progress": 42,
        "progress_message": AWKWARD,
        "options": {"delay_seconds": 5, "headers": {"X-A": "b"}},
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=ZoneInfo("Asia/Kolkata")),
        "started_at": datetime(2026, 1, 2, 3, 4, 6, 1, tzinfo=ZoneInfo("UTC")),
        "finished_at": None,
        "lease_expires_at": datetime(2027, 6, 30, 23, 59, 59, 999999, tzinfo=ZoneInfo("UTC")),
        "publish_claimed_at": None,
    }
    values.update(overrides)
    return JobExecution(**values)


def stored(execution: JobExecution) -> dict[str, Any]:
    return {
        field.attname: getattr(execution, field.attname)
        for field in JobExecution._meta.concrete_fields
    }


def test_each_row_is_stored_as_the_object_holds_it_and_gets_its_key() -> None:
    schedule = JobSchedule.objects.create(name="nightly", job_type="echo", cron="0 3 * * *")
    rows = [full_row(schedule), JobExecution(job_type="echo")]

    statements.insert_many(rows)

    for row in rows:
        assert row.pk is not None
        assert not row._state.adding
        assert row._state.db == connection.alias
        assert stored(JobExecution.objects.get(pk=row.pk)) == stored(row)
    # The defaults of a bare row are stored as defaults, not as JSON nulls.
    bare = JobExecution.objects.get(pk=rows[1].pk)
    assert (bare.payload, bare.result, bare.user_id, bare.schedule_id) == ({}, None, None, None)
    assert JobExecution.objects.filter(pk=bare.pk, result__isnull=True).exists()  # SQL NULL


def test_rows_are_those_bulk_create_records() -> None:
    schedule = JobSchedule.objects.create(name="nightly", job_type="echo", cron="0 3 * * *")
    ours, orms = [full_row(schedule)], [full_row(schedule, message_id="msg_2")]

    statements.insert_many(ours)
    JobExecution.objects.bulk_create(orms)

    def comparable(row: JobExecution) -> dict[str, Any]:
        values = stored(JobExecution.objects.get(job_id=row.job_id))
        for differs in ("id", "job_id", "message_id", "updated_at"):
            del values[differs]
        return values

    assert comparable(ours[0]) == comparable(orms[0])


def test_a_conflicting_idempotency_key_is_skipped_when_asked_and_keeps_no_key() -> None:
    JobExecution.objects.create(job_type="echo", idempotency_key="taken")
    taken = JobExecution(job_type="echo", idempotency_key="taken")
    free = JobExecution(job_type="echo", idempotency_key="free")

    statements.insert_many([taken, free], ignore_conflicts=True)

    assert taken.pk is None
    assert taken._state.adding
    assert free.pk == JobExecution.objects.get(idempotency_key="free").pk
    assert JobExecution.objects.count() == 2


def test_a_conflict_is_an_error_unless_asked_to_ignore_it() -> None:
    from django.db import IntegrityError

    JobExecution.objects.create(job_type="echo", idempotency_key="taken")
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.insert_many([JobExecution(job_type="echo", idempotency_key="taken")])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce lengths")
def test_a_value_too_long_for_its_column_is_refused_not_cut_short() -> None:
    with pytest.raises(DataError), transaction.atomic():
        statements.insert_many([JobExecution(job_type="x" * 101)])
    assert not JobExecution.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the JSON route is PostgreSQL's")
def test_thousands_of_rows_take_one_statement_on_postgresql() -> None:
    rows = [JobExecution(job_type="echo", payload={"n": index}) for index in range(2000)]
    with CaptureQueriesContext(connection) as queries:
        statements.insert_many(rows)
    assert len(queries.captured_queries) == 1
    by_pk = dict(JobExecution.objects.values_list("pk", "payload"))
    assert [by_pk[row.pk] for row in rows] == [{"n": index} for index in range(2000)]


def test_nothing_to_insert_runs_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        statements.insert_many([])
    assert not queries.captured_queries


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce lengths")
def test_a_failed_chunk_records_none_of_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statements, "_INSERT_CHUNK", 1)
    with pytest.raises(DataError):
        statements.insert_many([JobExecution(job_type="echo"), JobExecution(job_type="x" * 101)])
    assert not JobExecution.objects.exists()
