"""Admin for job schedules: what runs when, and actions to sync, pause, resume and run now.

Schedules are defined in settings or with ``job_dispatcher.schedule``, so the admin shows them
read-only; its actions go through :mod:`django_qstash_jobs.schedules`, which keeps QStash in
step with the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_qstash_jobs import schedules
from django_qstash_jobs.admin.read_only import ACTION_PLACES, ReadOnlyWithActions, pretty_json
from django_qstash_jobs.cron import describe_cron
from django_qstash_jobs.exceptions import EnqueueError, ScheduleError
from django_qstash_jobs.models import JobSchedule

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[JobSchedule]
else:
    # ModelAdmin is generic only for type checkers.
    _Base = admin.ModelAdmin

#: How many upcoming runs the detail page lists.
UPCOMING_RUNS = 5
#: An action reports this many failures one by one, then sums up the rest.
MAX_ERROR_MESSAGES = 10


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")


@admin.register(JobSchedule)
class JobScheduleAdmin(ReadOnlyWithActions, _Base):
    """Read-only schedules with actions; edits happen in settings or code."""

    list_display = [
        "name",
        "job_type",
        "cron",
        "cron_description",
        "next_run",
        "paused",
        "source",
        "last_synced_at",
    ]
    list_filter = ["paused", "source", "job_type"]
    search_fields = ["name", "schedule_id", "job_type"]
    actions = [
        "sync_selected",
        "pause_selected",
        "resume_selected",
        "run_selected_now",
        "unschedule_selected",
    ]
    fieldsets = [
        (None, {"fields": ["name", "schedule_id", "job_type", "source", "executions_link"]}),
        (
            gettext_lazy("When"),
            {"fields": ["cron", "cron_description", "upcoming_runs", "paused", "last_synced_at"]},
        ),
        (gettext_lazy("Input"), {"fields": ["payload_json", "user_id", "organization_id"]}),
        (gettext_lazy("Record"), {"fields": ["created_at", "updated_at"]}),
    ]

    # -- permissions: read-only (ReadOnlyWithActions), and not deleted here either ---------

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A plain delete would leave the schedule firing on QStash: the unschedule action
        # deletes it from both.
        return False

    # -- columns ---------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("runs"))
    def cron_description(self, obj: JobSchedule) -> str:
        try:
            return describe_cron(obj.cron)
        except ScheduleError as exc:
            return _("Invalid: %(error)s") % {"error": exc}

    @admin.display(description=gettext_lazy("next run"))
    def next_run(self, obj: JobSchedule) -> str:
        if obj.paused:
            return _("paused")
        try:
            return _when(obj.next_runs(1)[0])
        except ScheduleError:
            return "-"

    @admin.display(description=gettext_lazy("next runs"))
    def upcoming_runs(self, obj: JobSchedule) -> SafeString | str:
        try:
            runs = obj.next_runs(UPCOMING_RUNS)
        except ScheduleError as exc:
            return str(exc)
        items = format_html_join("", "<li>{}</li>", ((_when(run),) for run in runs))
        note = _(" (not while paused)") if obj.paused else ""
        return format_html('<ul class="qstash-next-runs">{}</ul>{}', items, note)

    @admin.display(description=gettext_lazy("payload"))
    def payload_json(self, obj: JobSchedule) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description=gettext_lazy("jobs"))
    def executions_link(self, obj: JobSchedule) -> SafeString:
        url = reverse(f"admin:{obj._meta.app_label}_jobexecution_changelist")
        query = urlencode({"schedule__id__exact": obj.pk})
        count = _("%(count)d jobs") % {"count": obj.executions.count()}
        return format_html('<a href="{}?{}">{}</a>', url, query, count)

    # -- actions ---------------------------------------------------------------------------

    @admin.action(
        description=gettext_lazy("Sync selected schedules with QStash"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def sync_selected(self, request: HttpRequest, queryset: QuerySet[JobSchedule]) -> None:
        self._each(request, queryset, schedules.push, _("Synced %(names)s with QStash."))

    @admin.action(
        description=gettext_lazy("Pause selected schedules"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[JobSchedule]) -> None:
        self._each(
            request,
            queryset,
            lambda row: schedules.pause_schedule(row.schedule_id),
            _("Paused %(names)s."),
        )

    @admin.action(
        description=gettext_lazy("Resume selected schedules"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[JobSchedule]) -> None:
        self._each(
            request,
            queryset,
            lambda row: schedules.resume_schedule(row.schedule_id),
            _("Resumed %(names)s."),
        )

    @admin.action(
        description=gettext_lazy("Run selected schedules now"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def run_selected_now(self, request: HttpRequest, queryset: QuerySet[JobSchedule]) -> None:
        job_ids: list[str] = []

        def run(row: JobSchedule) -> None:
            job_ids.append(schedules.run_schedule_now(row.schedule_id))

        self._each(request, queryset, run, _("Enqueued a job now for %(names)s."))
        if job_ids:
            self.message_user(request, _("Job ids: %(ids)s") % {"ids": ", ".join(job_ids)})

    @admin.action(
        description=gettext_lazy("Unschedule selected schedules (QStash and here)"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def unschedule_selected(self, request: HttpRequest, queryset: QuerySet[JobSchedule]) -> None:
        self._each(
            request,
            queryset,
            lambda row: schedules.unschedule(row.schedule_id),
            _("Unscheduled %(names)s."),
        )

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[JobSchedule],
        operation: Callable[[JobSchedule], None],
        success: str,
    ) -> None:
        """Apply ``operation`` to each row; one message for the successes, one per failure."""
        done: list[str] = []
        failures: list[str] = []
        for row in queryset.order_by("name"):
            try:
                operation(row)
            except (ScheduleError, EnqueueError) as exc:
                failures.append(f"{row.name}: {exc}")
            else:
                done.append(row.name)
        if done:
            self.message_user(request, success % {"names": ", ".join(done)}, messages.SUCCESS)
        for failure in failures[:MAX_ERROR_MESSAGES]:
            self.message_user(request, failure, messages.ERROR)
        if len(failures) > MAX_ERROR_MESSAGES:
            self.message_user(
                request,
                _("%(count)d more schedules failed the same way.")
                % {"count": len(failures) - MAX_ERROR_MESSAGES},
                messages.ERROR,
            )
