"""The demo's report: one row per job, and where its emails and files are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django_qstash_jobs import JOB_TYPES
from django_qstash_jobs.models import JobExecution

COLUMNS = ("SCENARIO", "JOB", "TYPE", "STATUS", "TRIES", "OUTCOME", "OK")
OUTCOME_WIDTH = 56


@dataclass(frozen=True)
class Row:
    scenario: str
    execution: JobExecution | None
    #: "" when the job ended as expected, else what is wrong.
    problem: str

    def cells(self) -> tuple[str, ...]:
        ok = "ok" if not self.problem else f"NO: {self.problem}"
        job = self.execution
        if job is None:
            return (self.scenario, "-", "-", "-", "-", "", ok)
        return (
            self.scenario,
            job.job_id[:8],
            job.job_type,
            job.status,
            str(job.attempts),
            _clip(outcome(job)),
            ok,
        )


def _size(result: dict[str, Any]) -> str:
    return f"{result.get('size', 0) / 1024:.1f} KB"


def outcome(job: JobExecution) -> str:
    """The gist of a job's result (or its error), in a few words."""
    if job.error:
        return job.error
    result: Any = job.result
    payload = job.payload
    if job.job_type == JOB_TYPES.SEND_EMAIL:
        return f"{payload.get('template')} to {payload.get('to')}: {(result or {}).get('status')}"
    if not isinstance(result, dict):
        return "" if result is None else str(result)
    if job.job_type == JOB_TYPES.SEND_BATCH_EMAILS:
        return f"{result.get('sent')} of {result.get('total')} sent"
    if job.job_type in (JOB_TYPES.PROCESS_WEBHOOK, JOB_TYPES.PROCESS_STRIPE_WEBHOOK):
        handlers = ", ".join(name.rsplit(".", 1)[-1] for name in result.get("handlers", []))
        return job.progress_message or f"{result.get('event')} -> {handlers or 'no handler'}"
    if job.job_type == JOB_TYPES.GENERATE_REPORT:
        return f"{payload.get('report_type')}.{payload.get('format')}, {_size(result)}"
    if job.job_type == JOB_TYPES.EXPORT_DATA:
        return f"{payload.get('entity_type')}.{payload.get('format')}, {result.get('rows')} rows"
    if job.job_type == JOB_TYPES.CLEANUP_OLD_DATA:
        return (
            f"{result.get('executions_deleted')} jobs, {result.get('files_deleted')} files "
            f"older than {result.get('retention_days')} days deleted"
        )
    return ", ".join(f"{key}={value}" for key, value in result.items())


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= OUTCOME_WIDTH else text[: OUTCOME_WIDTH - 1] + "…"


def render(rows: list[Row]) -> list[str]:
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def count_files(directory: Path) -> int:
    return sum(1 for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0
