"""cleanup_old_data and manage.py cleanup_jobs: old finished jobs, their files, and hooks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_qstash_jobs import (
    JOB_TYPES,
    get_job_execution_by_job_id,
    job_dispatcher,
    register_cleanup,
)
from django_qstash_jobs.jobs import cleanup
from django_qstash_jobs.models import EmailDelivery, JobExecution, JobStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("storage")]


def old(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def finished(days_ago: int, status: str = JobStatus.COMPLETED, **fields: Any) -> JobExecution:
    return JobExecution.objects.create(
        job_type=fields.pop("job_type", "echo"),
        status=status,
        created_at=old(days_ago + 1),
        finished_at=old(days_ago),
        **fields,
    )


def with_file(storage: FileSystemStorage, job_type: str, days_ago: int, name: str) -> str:
    stored = storage.save(f"qstash_jobs/{name}", ContentFile(b"data"))
    finished(days_ago, job_type=job_type, result={"file": stored, "url": "", "size": 4})
    return stored


@pytest.fixture
def hooks() -> Iterator[list[datetime]]:
    cutoffs: list[datetime] = []

    @register_cleanup("audit-log")
    def purge(cutoff: datetime) -> int:
        cutoffs.append(cutoff)
        return 7

    yield cutoffs
    cleanup.unregister_cleanup("audit-log")


def run(payload: dict[str, Any]) -> JobExecution:
    execution = get_job_execution_by_job_id(
        job_dispatcher.enqueue(JOB_TYPES.CLEANUP_OLD_DATA, payload)
    )
    assert execution is not None
    assert execution.status == JobStatus.COMPLETED, execution.error
    return execution


def test_old_finished_jobs_and_their_files_are_deleted(
    storage: FileSystemStorage, hooks: list[datetime]
) -> None:
    expired = [
        finished(40),
        finished(31, JobStatus.FAILED),
        finished(60, JobStatus.CANCELLED),
    ]
    EmailDelivery.objects.create(
        execution=expired[0],
        position=0,
        recipient="a@example.com",
        template="welcome",
        status="sent",
    )
    report = with_file(storage, JOB_TYPES.GENERATE_REPORT, 45, "reports/old.pdf")
    export = with_file(storage, JOB_TYPES.EXPORT_DATA, 45, "exports/old.csv")
    recent_export = with_file(storage, JOB_TYPES.EXPORT_DATA, 5, "exports/new.csv")
    kept = [
        finished(29),
        # Old but not finished: a job still waiting or running is never deleted.
        JobExecution.objects.create(job_type="echo", status=JobStatus.QUEUED, created_at=old(90)),
        JobExecution.objects.create(job_type="echo", status=JobStatus.RUNNING, created_at=old(90)),
    ]

    execution = run({"retention": 30})

    assert execution.result["retention_days"] == 30
    assert execution.result["executions_deleted"] == 5
    assert execution.result["files_deleted"] == 2
    assert execution.result["hooks"] == {"audit-log": 7}
    assert not storage.exists(report) and not storage.exists(export)
    assert storage.exists(recent_export)
    remaining = set(JobExecution.objects.values_list("pk", flat=True))
    assert {job.pk for job in kept} <= remaining
    assert not remaining & {job.pk for job in expired}
    assert not EmailDelivery.objects.exists()
    cutoff = datetime.fromisoformat(execution.result["cutoff"])
    assert abs((timezone.now() - cutoff) - timedelta(days=30)) < timedelta(minutes=1)
    assert hooks == [cutoff]


def test_the_retention_defaults_to_the_setting(settings: Any) -> None:
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "RETENTION_DAYS": 10}
    finished(11)
    finished(9)

    execution = run({})

    assert execution.result["retention_days"] == 10
    assert execution.result["executions_deleted"] == 1


def test_a_job_retried_while_its_batch_is_cleaned_up_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retried, gone = finished(40, JobStatus.FAILED), finished(40)
    delete_files = cleanup.files.delete

    def retried_meanwhile(names: list[str]) -> int:
        # Between the batch's selection and its deletion: job_dispatcher.retry, then a claim.
        JobExecution.objects.filter(pk=retried.pk).update(
            status=JobStatus.RUNNING, finished_at=None
        )
        return delete_files(names)

    monkeypatch.setattr(cleanup.files, "delete", retried_meanwhile)
    report = cleanup.cleanup(30)

    assert report.executions_deleted == 1
    assert list(JobExecution.objects.values_list("pk", flat=True)) == [retried.pk]
    assert not JobExecution.objects.filter(pk=gone.pk).exists()


def test_rows_are_deleted_in_batches() -> None:
    for _ in range(7):
        finished(40)

    with CaptureQueriesContext(connection) as queries:
        report = cleanup.cleanup(30, batch_size=3)

    assert report.executions_deleted == 7
    assert not JobExecution.objects.exists()
    table = JobExecution._meta.db_table
    deletes = [q for q in queries if q["sql"].startswith("DELETE") and f'"{table}"' in q["sql"]]
    assert len(deletes) == 3


def test_a_file_outside_the_package_folder_is_never_deleted(storage: FileSystemStorage) -> None:
    precious = storage.save("contracts/signed.pdf", ContentFile(b"keep me"))
    finished(40, job_type=JOB_TYPES.EXPORT_DATA, result={"file": precious})
    finished(
        40, job_type=JOB_TYPES.EXPORT_DATA, result={"file": "qstash_jobs/../contracts/signed.pdf"}
    )

    report = cleanup.cleanup(30)

    assert report.executions_deleted == 2
    assert report.files_deleted == 0
    assert storage.exists(precious)


def test_the_command_runs_the_cleanup_directly(hooks: list[datetime]) -> None:
    finished(40)
    finished(3)
    out = StringIO()

    call_command("cleanup_jobs", "--retention", "30", stdout=out)

    assert JobExecution.objects.count() == 1
    assert "Deleted 1 finished jobs and 0 files older than 30 days" in out.getvalue()
    assert "audit-log: 7 deleted" in out.getvalue()


def test_the_command_refuses_a_retention_out_of_range(settings: Any) -> None:
    from django.core.management import CommandError

    finished(3)
    for days in ("0", "-1", "1000000", "x"):
        with pytest.raises(CommandError, match="--retention"):
            call_command("cleanup_jobs", "--retention", days)
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "RETENTION_DAYS": 0}
    with pytest.raises(CommandError, match='RETENTION_DAYS"] is 0'):
        call_command("cleanup_jobs")
    assert JobExecution.objects.count() == 1


def test_a_retention_setting_of_zero_deletes_nothing(settings: Any) -> None:
    # The check refuses it; a site that runs anyway must not lose what finished a second ago.
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "RETENTION_DAYS": 0}
    kept = finished(0)
    execution = get_job_execution_by_job_id(job_dispatcher.enqueue(JOB_TYPES.CLEANUP_OLD_DATA))
    assert execution is not None
    assert execution.status == JobStatus.FAILED
    assert "RETENTION_DAYS" in execution.error
    assert JobExecution.objects.filter(pk=kept.pk).exists()


def test_files_no_row_names_are_deleted_once_their_day_is_past_retention(
    storage: FileSystemStorage,
) -> None:
    # The file of a run that lost its claim, or of a worker killed after the upload: no row
    # names it, so only the day folder it was written in tells its age.
    def written(days_ago: int, name: str) -> str:
        day = timezone.now() - timedelta(days=days_ago)
        return storage.save(f"qstash_jobs/exports/{day:%Y/%m/%d}/{name}", ContentFile(b"x"))

    orphans = [written(45, "lost-claim.csv"), written(32, "killed.csv")]
    # A day's margin: a job that finished just after the cutoff may have saved its file the
    # day before.
    recent = [written(31, "day-before-the-cutoff.csv"), written(2, "recent.csv")]
    not_ours = [
        storage.save("qstash_jobs/exports/notes/old.csv", ContentFile(b"x")),
        storage.save("elsewhere/2020/01/01/contract.pdf", ContentFile(b"x")),
    ]

    report = cleanup.cleanup(30)

    assert report.files_deleted == 2
    assert not any(storage.exists(name) for name in orphans)
    assert all(storage.exists(name) for name in recent + not_ours)
