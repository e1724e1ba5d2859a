"""The jobs dashboard, an admin page: counts by status, rates and durations per type, failures.

Also the small display helpers the job admin shares with it (status badge, durations, rates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from django_qstash_jobs import stats
from django_qstash_jobs.models import JobExecution, JobStatus

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

#: How many of the latest failures the dashboard lists.
LATEST_FAILURES = 10
EMPTY = "\u2014"


def status_badge(status: str) -> SafeString:
    """A status as a coloured badge; the text says the status, so colour is never the only cue."""
    label = JobStatus(status).label if status in JobStatus.values else status
    return format_html(
        '<span class="qstash-badge qstash-badge--{}" data-job-status="{}">{}</span>',
        status,
        status,
        label,
    )


def format_duration(value: timedelta | None) -> str:
    """A duration for people: ``350 ms``, ``5.5 s``, ``2 min 5 s``, ``1 h 3 min``, ``2 d 4 h``."""
    if value is None:
        return EMPTY
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_rate(rate: float | None) -> str:
    """A 0-1 rate as a percentage with one decimal, or a dash when there is nothing to rate."""
    return EMPTY if rate is None else f"{rate * 100:.1f}%"


@dataclass(frozen=True)
class _Link:
    count: int
    url: str


@dataclass(frozen=True)
class _StatusRow:
    badge: SafeString
    last_day: _Link
    last_week: _Link


@dataclass(frozen=True)
class _TypeRow:
    job_type: str
    total: _Link
    completed: int
    failed: _Link
    failure_rate: str
    #: The failure rate is worth a second look (over 10 %).
    alarming: bool
    p50: str
    p95: str


@dataclass(frozen=True)
class _FailureRow:
    url: str
    job_id: str
    job_type: str
    error: str
    attempts: int
    finished_at: datetime | None


def dashboard_view(model_admin: ModelAdmin[Any], request: HttpRequest) -> TemplateResponse:
    """The dashboard page, for anyone who may view jobs in the admin."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    now = timezone.now()
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    site = model_admin.admin_site.name
    changelist = reverse("admin:django_qstash_jobs_jobexecution_changelist", current_app=site)

    def link(count: int, since: datetime, **filters: str) -> _Link:
        query = urlencode({**filters, "created_at__gte": since.isoformat()})
        return _Link(count, f"{changelist}?{query}")

    counts = stats.status_counts(now)
    status_rows = [
        _StatusRow(
            badge=status_badge(count.status),
            last_day=link(count.last_day, day_ago, status__exact=count.status),
            last_week=link(count.last_week, week_ago, status__exact=count.status),
        )
        for count in counts
    ]
    day_total, week_total = stats.totals(counts)
    type_rows = [
        _TypeRow(
            job_type=item.job_type,
            total=link(item.total, week_ago, job_type=item.job_type),
            completed=item.completed,
            failed=link(
                item.failed, week_ago, job_type=item.job_type, status__exact=JobStatus.FAILED
            ),
            failure_rate=format_rate(item.failure_rate),
            alarming=(item.failure_rate or 0) > 0.1,
            p50=format_duration(item.p50),
            p95=format_duration(item.p95),
        )
        for item in stats.type_stats(week_ago)
    ]
    failures = [
        _FailureRow(
            url=reverse(
                "admin:django_qstash_jobs_jobexecution_change", args=[job.pk], current_app=site
            ),
            job_id=job.job_id,
            job_type=job.job_type,
            error=Truncator(job.error.strip().splitlines()[0] if job.error.strip() else "").chars(
                140
            ),
            attempts=job.attempts,
            finished_at=job.finished_at,
        )
        for job in stats.latest_failures(LATEST_FAILURES, since=week_ago)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Jobs dashboard"),
        "opts": JobExecution._meta,
        "now": now,
        "status_rows": status_rows,
        "totals": (
            _Link(day_total, link(day_total, day_ago).url),
            _Link(week_total, link(week_total, week_ago).url),
        ),
        "type_rows": type_rows,
        "failures": failures,
        "failures_url": link(0, week_ago, status__exact=JobStatus.FAILED).url,
        "media": model_admin.media,
    }
    request.current_app = site
    return TemplateResponse(
        request, "admin/django_qstash_jobs/jobexecution/dashboard.html", context
    )
