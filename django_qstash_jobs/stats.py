"""Numbers about jobs for the admin dashboard, computed by the database.

Every figure is an aggregate query, so the cost does not grow with the rows Python sees: counts
and rates are ``COUNT ... GROUP BY``; duration percentiles use PostgreSQL's ``percentile_cont``
and, elsewhere, read the two rows around each percentile with ``ORDER BY ... LIMIT/OFFSET``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router
from django.db.models import Aggregate, Count, DurationField, F, Q, QuerySet
from django.utils import timezone

from django_qstash_jobs.models import JobExecution, JobStatus

#: The percentiles the dashboard shows, as fractions.
PERCENTILES: tuple[float, ...] = (0.5, 0.95)

#: Time from the first start to the end of a job, computed in SQL.
DURATION = F("finished_at") - F("started_at")

#: Completed jobs with both a start and an end: the ones whose duration means something.
TIMED = Q(status=JobStatus.COMPLETED, started_at__isnull=False, finished_at__isnull=False)


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()

    def __init__(self, expression: Any, fraction: float) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError(f"A percentile fraction is between 0 and 1, not {fraction}.")
        # Written into the SQL as a literal (the template has no parameter slot for it); a
        # float rendered by repr() cannot carry anything but a number.
        super().__init__(expression, fraction=repr(float(fraction)))


@dataclass(frozen=True)
class StatusCount:
    """How many jobs created in each window are in one status."""

    status: str
    label: str
    last_day: int
    last_week: int


@dataclass
class TypeStats:
    """One job type's outcomes and completed-job durations over a window."""

    job_type: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    #: Completed jobs that have both a start and an end, the population of the percentiles.
    timed: int = 0
    #: Duration of completed jobs at each of :data:`PERCENTILES`, or None without any.
    percentiles: dict[float, timedelta | None] = field(default_factory=dict)

    @property
    def failure_rate(self) -> float | None:
        """Failed jobs among those that reached an outcome (completed or failed), 0 to 1."""
        decided = self.completed + self.failed
        return self.failed / decided if decided else None

    @property
    def p50(self) -> timedelta | None:
        return self.percentiles.get(0.5)

    @property
    def p95(self) -> timedelta | None:
        return self.percentiles.get(0.95)


def status_counts(now: datetime | None = None) -> list[StatusCount]:
    """Jobs created in the last 24 hours and 7 days, per status (every status listed), one query."""
    now = now or timezone.now()
    day_ago, week_ago = now - timedelta(days=1), now - timedelta(days=7)
    rows = (
        JobExecution.objects.filter(created_at__gte=week_ago)
        .values("status")
        .annotate(week=Count("pk"), day=Count("pk", filter=Q(created_at__gte=day_ago)))
        .order_by("status")
    )
    found = {row["status"]: (row["day"], row["week"]) for row in rows}
    return [
        StatusCount(status.value, str(status.label), *found.get(status.value, (0, 0)))
        for status in JobStatus
    ]


def type_stats(
    since: datetime, percentiles: Sequence[float] = PERCENTILES, *, using: str | None = None
) -> list[TypeStats]:
    """Per job type, for jobs created since ``since``: counts, failure rate and percentiles."""
    jobs = JobExecution.objects.using(using).filter(created_at__gte=since)
    rows = (
        jobs.values("job_type")
        .annotate(
            total=Count("pk"),
            completed=Count("pk", filter=Q(status=JobStatus.COMPLETED)),
            failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
            timed=Count("pk", filter=TIMED),
        )
        .order_by("job_type")
    )
    stats = [TypeStats(**row) for row in rows]
    completed = jobs.filter(TIMED)
    alias = using or router.db_for_read(JobExecution)
    if connections[alias].vendor == "postgresql":
        found = percentiles_in_sql(completed, percentiles)
    else:
        counts = {item.job_type: item.timed for item in stats}
        found = percentiles_by_offset(completed, counts, percentiles)
    for item in stats:
        item.percentiles = found.get(item.job_type, dict.fromkeys(percentiles))
    return stats


def percentiles_in_sql(
    timed_jobs: QuerySet[JobExecution], percentiles: Sequence[float]
) -> dict[str, dict[float, timedelta | None]]:
    """Duration percentiles per job type with ``percentile_cont``: one query (PostgreSQL)."""
    names = {fraction: f"p{index}" for index, fraction in enumerate(percentiles)}
    rows = (
        timed_jobs.values("job_type")
        .annotate(**{name: PercentileCont(DURATION, fraction) for fraction, name in names.items()})
        .order_by("job_type")
    )
    found: dict[str, dict[float, timedelta | None]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        found[values["job_type"]] = {fraction: values[name] for fraction, name in names.items()}
    return found


def percentiles_by_offset(
    timed_jobs: QuerySet[JobExecution],
    counts: dict[str, int],
    percentiles: Sequence[float],
) -> dict[str, dict[float, timedelta | None]]:
    """Duration percentiles per job type on any database, as ``percentile_cont`` computes them.

    ``counts`` is the number of timed jobs of each type (known from the counting query). For each
    type and percentile, the database sorts that type's durations and returns the one or two
    rows around the percentile's position, which are interpolated here; Python never sees more
    than two rows per query.
    """
    found: dict[str, dict[float, timedelta | None]] = {}
    for job_type, count in counts.items():
        ordered = timed_jobs.filter(job_type=job_type).order_by(DURATION.asc(), "pk")
        durations = ordered.annotate(elapsed=DURATION).values_list("elapsed", flat=True)
        found[job_type] = {
            fraction: _interpolated(durations, count, fraction) for fraction in percentiles
        }
    return found


def _interpolated(durations: QuerySet[Any, Any], count: int, fraction: float) -> timedelta | None:
    if count <= 0:
        return None
    # percentile_cont's definition: position fraction * (n - 1) in the sorted values, linear
    # interpolation between the two values around it.
    position = fraction * (count - 1)
    low = math.floor(position)
    high = min(math.ceil(position), count - 1)
    values: list[timedelta] = list(durations[low : high + 1])
    if not values:
        return None  # Rows changed between the count and this query.
    if len(values) == 1:
        return values[0]
    return values[0] + (values[1] - values[0]) * (position - low)


def latest_failures(limit: int = 10, since: datetime | None = None) -> list[JobExecution]:
    """The most recently failed jobs, without their large fields (payload, result, traceback)."""
    failed = JobExecution.objects.filter(status=JobStatus.FAILED)
    if since is not None:
        # Bounded by creation time so the (status, created_at) index narrows the sort.
        failed = failed.filter(created_at__gte=since)
    return list(
        failed.order_by(F("finished_at").desc(nulls_last=True), "-pk").only(
            "pk", "job_id", "job_type", "error", "attempts", "created_at", "finished_at"
        )[:limit]
    )


def totals(counts: Iterable[StatusCount]) -> tuple[int, int]:
    """The sum of the 24-hour and of the 7-day counts."""
    day = week = 0
    for count in counts:
        day += count.last_day
        week += count.last_week
    return day, week
