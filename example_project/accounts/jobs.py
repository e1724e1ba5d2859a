"""A project's own report, next to the built-in ``monthly-analytics``: sign-ups per day."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.db.models.functions import TruncDate

from django_qstash_jobs import JobContext, register_report
from django_qstash_jobs.jobs.analytics import day_bounds
from django_qstash_jobs.jobs.schemas import GenerateReportPayload
from django_qstash_jobs.reports import Report


@register_report("signups")
def signups(payload: GenerateReportPayload, ctx: JobContext) -> Report:
    start, end = day_bounds(payload.start_date, payload.end_date)
    per_day = (
        get_user_model()
        .objects.filter(date_joined__gte=start, date_joined__lt=end)
        .annotate(day=TruncDate("date_joined"))
        .values("day")
        .annotate(count=Count("pk"))
        .order_by("day")
    )
    return Report(
        title="Sign-ups",
        columns=["Day", "Sign-ups"],
        rows=[(row["day"], row["count"]) for row in per_day],
    )
