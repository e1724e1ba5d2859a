"""The built-in job types: their names and payload schemas are registered at start-up."""

from __future__ import annotations

from typing import Any

from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.jobs import schemas
from django_qstash_jobs.jobs.schemas import Payload
from django_qstash_jobs.registry import JOB_TYPES, register_job

BUILTIN_SCHEMAS: dict[str, type[Payload]] = {
    JOB_TYPES.SEND_EMAIL: schemas.SendEmailPayload,
    JOB_TYPES.SEND_BATCH_EMAILS: schemas.SendBatchEmailsPayload,
    JOB_TYPES.PROCESS_WEBHOOK: schemas.ProcessWebhookPayload,
    JOB_TYPES.PROCESS_STRIPE_WEBHOOK: schemas.ProcessStripeWebhookPayload,
    JOB_TYPES.GENERATE_REPORT: schemas.GenerateReportPayload,
    JOB_TYPES.EXPORT_DATA: schemas.ExportDataPayload,
    JOB_TYPES.CLEANUP_OLD_DATA: schemas.CleanupOldDataPayload,
}


def _not_available(payload: Any, ctx: JobContext) -> None:
    raise PermanentJobError(
        f"The built-in job type {ctx.job_type!r} has no handler in this version; "
        "register one with @register_job(..., replace=True)."
    )


for _name, _schema in BUILTIN_SCHEMAS.items():
    register_job(_name, schema=_schema)(_not_available)
