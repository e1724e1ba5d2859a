"""``export_data``: stream a registered export to a file in storage; the built-in exports."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet

from django_qstash_jobs.conf import get_config
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.exports import (
    ExportDefinition,
    export_registry,
    field_for,
    register_export,
)
from django_qstash_jobs.jobs import files
from django_qstash_jobs.jobs.export_formats import WRITERS, converter_for
from django_qstash_jobs.jobs.schemas import ExportDataPayload
from django_qstash_jobs.models import JobExecution
from django_qstash_jobs.registry import JOB_TYPES, register_job

#: Seconds between progress updates: each one is a write, and renews the job's lease.
PROGRESS_INTERVAL = 1.0


class _Progress:
    """Reports rows written as the job's progress, at most once per interval."""

    def __init__(self, ctx: JobContext, total: int) -> None:
        self.ctx, self.total = ctx, total
        self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            # 99 at most: the file is not in storage yet.
            percent = min(99, count * 100 // self.total) if self.total else 99
            self.ctx.set_progress(percent, f"{count}/{self.total} rows")


@register_job(JOB_TYPES.EXPORT_DATA, schema=ExportDataPayload)
def export_data(payload: ExportDataPayload, ctx: JobContext) -> dict[str, Any]:
    """Write the export's rows, filtered and scoped, to storage; the result counts them."""
    try:
        definition = export_registry.get(payload.entity_type)
        lookups = definition.lookups(payload.filters)
    except (KeyError, ValueError) as exc:
        raise PermanentJobError(str(exc.args[0])) from None
    organization_id = ctx.execution.organization_id
    if definition.scope is None and organization_id is not None:
        # Fail closed: the file would hold every organisation's rows, for one organisation.
        raise PermanentJobError(
            f"Export {definition.name!r} has no scope, and this job is for organisation "
            f"{organization_id!r}: it would hold every organisation's rows. Register it again "
            f"with a scope (register_export({definition.name!r}, ..., scope=..., replace=True)), "
            "or enqueue it without an organization_id."
        )
    queryset = _filtered(definition, lookups)
    try:
        if definition.scope is not None:
            queryset = definition.scope(queryset, ctx)
        total = queryset.count()
        rows = queryset.values_list(*definition.fields)
    except FieldError as exc:
        raise PermanentJobError(f"Export {definition.name!r} is misconfigured: {exc}") from exc
    ctx.set_progress(0, f"0/{total} rows")
    escape = get_config().csv_escape_formulas
    converters = [
        converter_for(field_for(queryset.model, name), escape_formulas=escape)
        for name in definition.fields
    ]
    write = WRITERS[payload.format]
    # On disk, not in memory: the storage then copies it in chunks.
    with tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR) as stream:
        count = write(
            stream,
            definition.fields,
            rows.iterator(chunk_size=definition.chunk_size),
            converters,
            _Progress(ctx, total),
        )
        size = stream.tell()
        name = files.file_name("exports", payload.entity_type, ctx.job_id, payload.format)
        result = files.save(name, stream, size)
    return {**result, "rows": count}


def _filtered(definition: ExportDefinition, lookups: dict[str, Any]) -> QuerySet[Any]:
    """The export's rows that match ``lookups``; a permanent failure for a lookup refused."""
    try:
        return definition.get_queryset().filter(**lookups)
    except FieldError as exc:
        raise PermanentJobError(f"Export {definition.name!r} is misconfigured: {exc}") from exc
    except (DjangoValidationError, ValueError, TypeError) as exc:
        # Enqueue refuses such a value (check_filters); one that got this far anyway would
        # fail the same way on every attempt.
        raise PermanentJobError(f"Export {definition.name!r} refuses its filters: {exc}") from exc


def _organization_scope(queryset: QuerySet[Any], ctx: JobContext) -> QuerySet[Any]:
    # A job enqueued for an organisation exports that organisation's jobs only.
    organization_id = ctx.execution.organization_id
    if organization_id is None:
        return queryset
    return queryset.filter(organization_id=organization_id)


register_export(
    "job_executions",
    queryset=lambda: JobExecution.objects.all(),
    fields=[
        "job_id",
        "job_type",
        "status",
        "user_id",
        "organization_id",
        "attempts",
        "max_retries",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ],
    filters={
        "created_after": "created_at__gte",
        "created_before": "created_at__lt",
        "status": "status",
        "job_type": "job_type",
        "user_id": "user_id",
    },
    scope=_organization_scope,
)


def _register_users() -> None:
    """The ``users`` export, over whatever user model the project has (only its own fields)."""
    try:
        user_model = get_user_model()
    except ImproperlyConfigured:
        return  # django.contrib.auth is not installed: nothing to export.
    present = {field.name for field in user_model._meta.get_fields()}
    wanted = [
        user_model._meta.pk.name if user_model._meta.pk else "id",
        user_model.USERNAME_FIELD,
        user_model.get_email_field_name(),
        "first_name",
        "last_name",
        "is_active",
        "is_staff",
        "date_joined",
        "last_login",
    ]
    # Named fields only, never the password: a new field is not exported until it is listed.
    fields = [name for name in dict.fromkeys(wanted) if name in present]
    filters = {
        name: lookup
        for name, lookup in {
            "created_after": "date_joined__gte",
            "created_before": "date_joined__lt",
            "is_active": "is_active",
            "is_staff": "is_staff",
        }.items()
        if lookup.split("__")[0] in present
    }
    register_export(
        "users",
        queryset=lambda: get_user_model()._default_manager.all(),
        fields=fields,
        filters=filters,
    )


_register_users()
