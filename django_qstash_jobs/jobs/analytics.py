"""The built-in ``monthly-analytics`` report: job counts, failure rates and durations per type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, Max, Q

from django_qstash_jobs.context import JobContext
from django_qstash_jobs.jobs.charts import Bar, BarChart, Segment, bar_chart
from django_qstash_jobs.jobs.schemas import GenerateReportPayload
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.reports import Report, local_midnight
from django_qstash_jobs.stats import DURATION, TIMED

COLUMNS = (
    "job_type",
    "total",
    "completed",
    "failed",
    "cancelled",
    "other",
    "failure_rate_percent",
    "average_duration_seconds",
    "longest_duration_seconds",
)


@dataclass(frozen=True)
class TypeStatistics:
    """One job type's figures over the report's dates."""

    job_type: str
    total: int
    completed: int
    failed: int
    cancelled: int
    average_duration: timedelta | None
    longest_duration: timedelta | None

    @property
    def other(self) -> int:
        """Jobs not finished yet (pending, queued, running, retrying)."""
        return self.total - self.completed - self.failed - self.cancelled

    @property
    def failure_rate(self) -> float | None:
        """Failed jobs as a percentage of finished ones that ran (completed + failed)."""
        finished = self.completed + self.failed
        return round(100 * self.failed / finished, 1) if finished else None

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.job_type,
            self.total,
            self.completed,
            self.failed,
            self.cancelled,
            self.other,
            self.failure_rate,
            _seconds(self.average_duration),
            _seconds(self.longest_duration),
        )


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else round(duration.total_seconds(), 3)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """From the start of ``start`` to the end of ``end`` (both included), in the current zone."""
    return local_midnight(start), local_midnight(end + timedelta(days=1))


def statistics(
    start: date, end: date, *, organization_id: str | None = None, exclude_pk: int | None = None
) -> list[TypeStatistics]:
    """Figures per job type for jobs created between ``start`` and ``end`` (inclusive)."""
    since, until = day_bounds(start, end)
    queryset = JobExecution.objects.filter(created_at__gte=since, created_at__lt=until)
    if organization_id is not None:
        queryset = queryset.filter(organization_id=organization_id)
    if exclude_pk is not None:
        queryset = queryset.exclude(pk=exclude_pk)
    duration = ExpressionWrapper(DURATION, output_field=DurationField())
    rows = (
        queryset.values("job_type")
        .annotate(
            total=Count("pk"),
            completed=Count("pk", filter=Q(status=JobStatus.COMPLETED)),
            failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
            cancelled=Count("pk", filter=Q(status=JobStatus.CANCELLED)),
            average_duration=Avg(duration, filter=TIMED),
            longest_duration=Max(duration, filter=TIMED),
        )
        .order_by("job_type")
    )
    return [TypeStatistics(**row) for row in rows]


def chart_of(types: list[TypeStatistics]) -> BarChart:
    """Completed, failed and other jobs per type, as stacked horizontal bars."""
    return bar_chart(
        [
            Bar(
                label=item.job_type,
                segments=(
                    Segment("Completed", item.completed),
                    Segment("Failed", item.failed),
                    Segment("Cancelled or unfinished", item.cancelled + item.other),
                ),
            )
            for item in types
        ],
        title="Jobs per type",
    )


def monthly_analytics(payload: GenerateReportPayload, ctx: JobContext) -> Report:
    """Jobs per type between the payload's dates, limited to the job's organisation if any."""
    organization_id = ctx.execution.organization_id
    # The report's own job is running and would count as one more unfinished job.
    types = statistics(
        payload.start_date,
        payload.end_date,
        organization_id=organization_id,
        exclude_pk=ctx.execution.pk,
    )
    totals = TypeStatistics(
        job_type="All types",
        total=sum(item.total for item in types),
        completed=sum(item.completed for item in types),
        failed=sum(item.failed for item in types),
        cancelled=sum(item.cancelled for item in types),
        average_duration=None,
        longest_duration=max(
            (item.longest_duration for item in types if item.longest_duration), default=None
        ),
    )
    return Report(
        title="Job analytics",
        columns=COLUMNS,
        rows=[item.as_row() for item in types],
        template_name="django_qstash_jobs/reports/monthly_analytics.html",
        context={
            "types": types,
            "totals": totals,
            "chart": chart_of(types),
            "organization_id": organization_id,
        },
    )
