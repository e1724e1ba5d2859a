"""Asynchronous jobs for Django through Upstash QStash.

The public names are importable from here; they load lazily so that importing the package (in
settings, say) never touches the app registry.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_qstash_jobs.context import JobContext
    from django_qstash_jobs.dispatcher import get_job_execution_by_job_id, job_dispatcher
    from django_qstash_jobs.exports import register_export
    from django_qstash_jobs.jobs.cleanup import register_cleanup
    from django_qstash_jobs.jobs.webhooks import stripe_handler, webhook_handler, webhook_received
    from django_qstash_jobs.options import EnqueueOptions, JobMetadata
    from django_qstash_jobs.registry import JOB_TYPES, register_job
    from django_qstash_jobs.reports import register_report

__all__ = [
    "JOB_TYPES",
    "EnqueueOptions",
    "JobContext",
    "JobMetadata",
    "get_job_execution_by_job_id",
    "job_dispatcher",
    "register_cleanup",
    "register_export",
    "register_job",
    "register_report",
    "stripe_handler",
    "webhook_handler",
    "webhook_received",
]

_LOCATIONS = {
    "JOB_TYPES": "django_qstash_jobs.registry",
    "register_job": "django_qstash_jobs.registry",
    "JobContext": "django_qstash_jobs.context",
    "JobMetadata": "django_qstash_jobs.options",
    "EnqueueOptions": "django_qstash_jobs.options",
    "job_dispatcher": "django_qstash_jobs.dispatcher",
    "get_job_execution_by_job_id": "django_qstash_jobs.dispatcher",
    "webhook_handler": "django_qstash_jobs.jobs.webhooks",
    "stripe_handler": "django_qstash_jobs.jobs.webhooks",
    "webhook_received": "django_qstash_jobs.jobs.webhooks",
    "register_report": "django_qstash_jobs.reports",
    "register_export": "django_qstash_jobs.exports",
    "register_cleanup": "django_qstash_jobs.jobs.cleanup",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LOCATIONS[name]
    except KeyError:
        raise AttributeError(f"module 'django_qstash_jobs' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
