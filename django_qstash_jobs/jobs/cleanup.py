"""``cleanup_old_data``: delete finished jobs, their report and export files, and run hooks.

Projects add their own clean-up with :func:`register_cleanup`::

    @register_cleanup("audit-log")
    def purge_audit_log(cutoff):
        deleted, _ = AuditEntry.objects.filter(created_at__lt=cutoff).delete()
        return deleted
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db.models import Q, QuerySet
from django.utils import timezone

from django_qstash_jobs import statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.jobs import files
from django_qstash_jobs.jobs.schemas import MAX_RETENTION_DAYS, CleanupOldDataPayload
from django_qstash_jobs.models import FINISHED_STATUSES, JobExecution
from django_qstash_jobs.registry import JOB_TYPES, register_job

#: Deletes what is older than ``cutoff``; returns how many things it deleted.
CleanupHook = Callable[[datetime], int | None]
C = TypeVar("C", bound=CleanupHook)
Progress = Callable[[int, str], None]

#: Job types whose result names a file (``{"file": ...}``) that goes with the row.
FILE_JOB_TYPES = (JOB_TYPES.GENERATE_REPORT, JOB_TYPES.EXPORT_DATA)

_hooks: dict[str, CleanupHook] = {}
_hooks_lock = threading.Lock()


def register_cleanup(name: str) -> Callable[[C], C]:
    """Run the decorated ``hook(cutoff) -> count`` in every cleanup, after the job rows."""
    if not name:
        raise ValueError("register_cleanup needs a name.")

    def decorator(hook: C) -> C:
        with _hooks_lock:
            _hooks[name] = hook
        return hook

    return decorator


def unregister_cleanup(name: str) -> None:
    with _hooks_lock:
        _hooks.pop(name, None)


@dataclass
class CleanupReport:
    """What one cleanup deleted."""

    retention_days: int
    cutoff: datetime
    executions_deleted: int = 0
    files_deleted: int = 0
    #: Hook name -> what it reported deleting.
    hooks: dict[str, int] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        return {
            "retention_days": self.retention_days,
            "cutoff": self.cutoff.isoformat(),
            "executions_deleted": self.executions_deleted,
            "files_deleted": self.files_deleted,
            "hooks": dict(self.hooks),
        }


def expired(cutoff: datetime) -> QuerySet[JobExecution]:
    """Finished jobs that finished (or, lacking that, were created) before ``cutoff``."""
    # A job finishes after it is created, so ``created_at < cutoff`` always holds too; saying
    # so lets the (status, created_at) index find the rows.
    return JobExecution.objects.filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True),
        status__in=FINISHED_STATUSES,
        created_at__lt=cutoff,
    )


def delete_files_of(jobs: QuerySet[JobExecution]) -> int:
    """Delete the report and export files these jobs made; return how many were deleted."""
    results = jobs.filter(job_type__in=FILE_JOB_TYPES).values_list("result", flat=True)
    names = [
        result["file"]
        for result in results
        if isinstance(result, dict) and isinstance(result.get("file"), str)
    ]
    return files.delete(names)


def cleanup(
    retention_days: int, *, batch_size: int = 1000, progress: Progress | None = None
) -> CleanupReport:
    """Delete what is older than ``retention_days``, ``batch_size`` rows per transaction."""
    if not 1 <= retention_days <= MAX_RETENTION_DAYS:
        # 0 would delete what finished a second ago.
        raise ValueError(
            f"Retention must be 1 to {MAX_RETENTION_DAYS} days, not {retention_days!r}."
        )
    cutoff = timezone.now() - timedelta(days=retention_days)
    report = CleanupReport(retention_days=retention_days, cutoff=cutoff)
    total = expired(cutoff).count()
    while True:
        batch = list(expired(cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        # Files first: if deleting the rows then fails, the next run still finds the files.
        report.files_deleted += delete_files_of(JobExecution.objects.filter(pk__in=batch))
        with statements.jobs_transaction():
            # Checked again, and locked until deleted: a row retried by hand since it was
            # selected (pending, then running) is no longer expired and must stay.
            still_expired = expired(cutoff).filter(pk__in=batch).select_for_update()
            doomed = list(still_expired.values_list("pk", flat=True))
            _, per_model = JobExecution.objects.filter(pk__in=doomed).delete()
        report.executions_deleted += per_model.get(JobExecution._meta.label, 0)
        if progress is not None and total:
            done = min(report.executions_deleted, total)
            progress(min(90, done * 90 // total), f"{done}/{total} jobs deleted")
    # A day's margin: a file is written when its job finishes, and a job that finished after
    # the cutoff keeps its file.
    report.files_deleted += files.delete_written_before((cutoff - timedelta(days=1)).date())
    for name, hook in list(_hooks.items()):
        report.hooks[name] = int(hook(cutoff) or 0)
    return report


@register_job(JOB_TYPES.CLEANUP_OLD_DATA, schema=CleanupOldDataPayload)
def cleanup_old_data(payload: CleanupOldDataPayload, ctx: JobContext) -> dict[str, Any]:
    """Delete old finished jobs and their files; ``retention`` defaults to RETENTION_DAYS."""
    days = payload.retention or get_config().retention_days
    try:
        return cleanup(days, progress=ctx.set_progress).as_result()
    except ValueError as exc:  # RETENTION_DAYS out of range: the same on every attempt
        raise PermanentJobError(f'{exc} Fix QSTASH_JOBS["RETENTION_DAYS"].') from exc
