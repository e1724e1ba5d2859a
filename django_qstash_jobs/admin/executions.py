"""Admin for job executions: the list, a read-only detail page, retry and cancel, the dashboard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin import ListFilter
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_qstash_jobs.admin.dashboard import (
    EMPTY,
    dashboard_view,
    format_duration,
    status_badge,
)
from django_qstash_jobs.admin.pagination import LimitedCountPaginator
from django_qstash_jobs.admin.read_only import ACTION_PLACES, ReadOnlyWithActions, pretty_json
from django_qstash_jobs.dispatcher import job_dispatcher
from django_qstash_jobs.exceptions import EnqueueError, JobStateError
from django_qstash_jobs.jobs.cleanup import delete_files_of
from django_qstash_jobs.models import (
    CLAIMABLE_STATUSES,
    FINISHED_STATUSES,
    JobExecution,
    JobStatus,
)
from django_qstash_jobs.registry import registry
from django_qstash_jobs.stats import DURATION

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    _Base = admin.ModelAdmin[JobExecution]
else:
    # ModelAdmin is generic only for type checkers.
    _Base = admin.ModelAdmin

#: Fields the list never shows; deferred so a page of large payloads stays cheap to load.
LARGE_FIELDS = ("payload", "metadata", "options", "result", "traceback")
#: An action reports this many rows one by one, then sums up the rest in one message.
MAX_ROW_MESSAGES = 20
#: Where the list keeps the user a row's ``user_id`` names (loaded for the page in one query).
LISTED_USER = "_qstash_listed_user"


def users_by_id(user_ids: Iterable[str]) -> dict[str, AbstractBaseUser]:
    """The users whose primary keys are among ``user_ids``, in one query, keyed by ``str(pk)``.

    ``user_id`` is free text in job metadata; ids that cannot be a user's key are skipped.
    """
    user_model = get_user_model()
    pk_field = user_model._meta.pk
    assert pk_field is not None
    manager = user_model._default_manager
    keys = []
    for user_id in set(user_ids):
        try:
            key = pk_field.to_python(user_id)
        except ValidationError:
            continue
        if _fits(key, pk_field, manager.db):
            keys.append(key)
    if not keys:
        return {}
    users = manager.filter(pk__in=keys).only("pk", user_model.USERNAME_FIELD)
    return {str(user.pk): user for user in users}


def _fits(key: Any, field: Field[Any, Any], alias: str) -> bool:
    # An integer beyond the column's range (an external id of 20 digits) is no user's key, and
    # the database would refuse it in the query.
    if not isinstance(key, int):
        return True
    try:
        low, high = connections[alias].ops.integer_field_range(field.get_internal_type())
    except KeyError:  # an integer key of a type the backend has no range for
        return True
    return (low is None or key >= low) and (high is None or key <= high)


class JobChangeList(ChangeList):
    """The job list: large fields deferred, the page's users read in one query."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).defer(*LARGE_FIELDS)

    def get_filters(
        self, request: HttpRequest
    ) -> tuple[list[ListFilter], bool, dict[str, bool | str], bool, bool]:
        # The search term is not among these: the admin's search form refuses a NUL itself.
        refuse_nul_characters(self.get_filters_params())
        return super().get_filters(request)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Iterating fills the page queryset's cache, which the template then reuses.
        jobs: list[JobExecution] = list(self.result_list)
        users = users_by_id(job.user_id for job in jobs if job.user_id)
        for job in jobs:
            setattr(job, LISTED_USER, users.get(job.user_id or ""))


def refuse_nul_characters(filter_params: Mapping[str, list[str]]) -> None:
    """Refuse a filter value holding NUL, which PostgreSQL rejects with an error.

    :exc:`IncorrectLookupParameters` has the admin show its "invalid parameters" page.
    """
    for name, values in filter_params.items():
        if any("\x00" in value for value in values):
            raise IncorrectLookupParameters(f"{name!r} holds a NUL character.")


class CreatedDateFilter(admin.DateFieldListFilter):
    """The admin's date filter, refusing a date that leaves the calendar.

    "9999-12-31T23:59:59-01:00" is a valid date, but it is past year 9999 once converted to
    the database's UTC, which raises OverflowError when the query is built.
    """

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        connection = connections[queryset.db]
        for lookup, values in self.used_parameters.items():
            if not lookup.endswith("__isnull"):
                # Lists since Django 5.0: a parameter may be given more than once.
                self._refuse_beyond_the_calendar(lookup, cast(list[str], values), connection)
        return super().queryset(request, queryset)

    def _refuse_beyond_the_calendar(
        self, lookup: str, values: list[str], connection: BaseDatabaseWrapper
    ) -> None:
        for value in values:
            try:
                # What building the query does to the value, without building it.
                self.field.get_db_prep_value(value, connection)
            except OverflowError as exc:
                raise IncorrectLookupParameters(f"{lookup}={value!r}: {exc}") from exc
            except (ValueError, ValidationError):
                pass  # not a date at all: Django's own filter refuses it


class RegisteredJobTypeFilter(admin.SimpleListFilter):
    """By job type, among those registered: listing the types found would read every row."""

    title = gettext_lazy("job type")
    parameter_name = "job_type__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(job_type.name for job_type in registry)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(job_type=value)


@admin.register(JobExecution)
class JobExecutionAdmin(ReadOnlyWithActions, _Base):
    """Job executions: read, retried or cancelled here, never edited.

    Only the dispatcher and the receiver write a job, so the detail page is read-only.
    """

    list_display = [
        "short_job_id",
        "status_badge",
        "job_type",
        "user",
        "organization",
        "attempts_display",
        "duration_display",
        "created",
    ]
    list_display_links = ["short_job_id"]
    empty_value_display = EMPTY
    # No filter or count reads the whole table on each page: the job types come from the
    # registry (not a DISTINCT over every row), there is no date hierarchy (another DISTINCT;
    # the created filter has the same dates), and no count of all rows beside a filtered one.
    list_filter = ["status", RegisteredJobTypeFilter, ("created_at", CreatedDateFilter)]
    show_full_result_count = False
    # Nor does the page's own count, which Django's paginator takes over the whole table.
    paginator = LimitedCountPaginator
    search_fields = ["=job_id", "=idempotency_key", "=message_id"]
    search_help_text = gettext_lazy("An exact job id, idempotency key or QStash message id.")
    list_per_page = 50
    actions = ["retry_jobs", "cancel_jobs"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "job_id",
                    "status_detail",
                    "job_type",
                    "progress_bar",
                    "attempts_display",
                    "schedule",
                ]
            },
        ),
        # What someone opening a failed job looks for first.
        (gettext_lazy("Outcome"), {"fields": ["result_json", "error", "traceback_display"]}),
        (
            gettext_lazy("Origin"),
            {"fields": ["user", "organization_id", "idempotency_key", "message_id"]},
        ),
        (
            gettext_lazy("Timing"),
            {
                "fields": [
                    "created_at",
                    "started_at",
                    "finished_at",
                    "duration_display",
                    "updated_at",
                    "lease_expires_at",
                ]
            },
        ),
        (gettext_lazy("Input"), {"fields": ["payload_json", "metadata_json", "options_json"]}),
    ]

    class Media:
        css = {"all": ["django_qstash_jobs/admin.css"]}
        js = ["django_qstash_jobs/job_live.js"]

    # -- deleting --------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A job still waiting or running belongs to its delivery, which would record its
        # outcome into nothing. Django's delete action asks this of each selected row, and
        # refuses the whole selection if any is not finished.
        if obj is not None and obj.status not in FINISHED_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: JobExecution) -> None:
        delete_files_of(JobExecution.objects.filter(pk=obj.pk))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[JobExecution]) -> None:
        # A report's or export's file would stay in storage for good: cleanup finds files
        # only through their rows.
        delete_files_of(queryset)
        super().delete_queryset(request, queryset)

    # -- list ------------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[JobExecution], search_term: str
    ) -> tuple[QuerySet[JobExecution], bool]:
        # Exact, case-sensitive matches, so each lookup uses its column's unique index (the
        # admin's own "=" search is case-insensitive and scans the table on PostgreSQL).
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q(job_id=term) | Q(idempotency_key=term) | Q(message_id=term)
        return queryset.filter(matches), False

    @admin.display(description=gettext_lazy("job id"), ordering="job_id")
    def short_job_id(self, obj: JobExecution) -> SafeString:
        # A whole UUID would take a third of the table; the detail page and search have it all.
        short = obj.job_id if len(obj.job_id) <= 12 else f"{obj.job_id[:8]}\u2026"
        return format_html('<code class="qstash-id" title="{}">{}</code>', obj.job_id, short)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, obj: JobExecution) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description=gettext_lazy("user"), ordering="user_id")
    def user(self, obj: JobExecution) -> str:
        if not obj.user_id:
            return EMPTY
        if hasattr(obj, LISTED_USER):
            user = getattr(obj, LISTED_USER)
        else:
            user = users_by_id([obj.user_id]).get(obj.user_id)
        return f"{user.get_username()} ({obj.user_id})" if user else obj.user_id

    @admin.display(description=gettext_lazy("organization"), ordering="organization_id")
    def organization(self, obj: JobExecution) -> str:
        return obj.organization_id or EMPTY

    @admin.display(description=gettext_lazy("attempts"), ordering="attempts")
    def attempts_display(self, obj: JobExecution) -> str:
        return f"{obj.attempts} / {obj.max_retries + 1}"

    @admin.display(description=gettext_lazy("duration"), ordering=DURATION)
    def duration_display(self, obj: JobExecution) -> str:
        return format_duration(obj.duration)

    @admin.display(description=gettext_lazy("created"), ordering="created_at")
    def created(self, obj: JobExecution) -> str:
        # Compact and sortable by eye; the locale's long format would not fit beside the rest.
        created_at = obj.created_at
        if timezone.is_aware(created_at):  # naive with USE_TZ = False: already local time
            created_at = timezone.localtime(created_at)
        return created_at.strftime("%Y-%m-%d %H:%M")

    # -- detail ----------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("status"))
    def status_detail(self, obj: JobExecution) -> SafeString:
        badge = status_badge(obj.status)
        if obj.is_finished:
            return badge
        try:
            events = reverse("django_qstash_jobs:status-events", args=[obj.job_id])
        except NoReverseMatch:
            return badge  # The project does not route the status endpoints.
        # job_live.js follows the job through the events endpoint while the page is open.
        return format_html(
            '<span data-qstash-events="{}" data-qstash-status="{}">{}</span>',
            events,
            obj.status,
            badge,
        )

    @admin.display(description=gettext_lazy("progress"))
    def progress_bar(self, obj: JobExecution) -> SafeString:
        return format_html(
            '<span class="qstash-progress"><progress max="100" value="{}" '
            'aria-labelledby="qstash-progress-text"></progress> '
            '<span id="qstash-progress-text" class="qstash-progress__text">{}%</span> '
            '<span class="qstash-progress__message">{}</span></span>',
            obj.progress,
            obj.progress,
            obj.progress_message,
        )

    @admin.display(description=gettext_lazy("payload"))
    def payload_json(self, obj: JobExecution) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description=gettext_lazy("metadata"))
    def metadata_json(self, obj: JobExecution) -> SafeString:
        return pretty_json(obj.metadata)

    @admin.display(description=gettext_lazy("options"))
    def options_json(self, obj: JobExecution) -> SafeString:
        return pretty_json(obj.options)

    @admin.display(description=gettext_lazy("result"))
    def result_json(self, obj: JobExecution) -> SafeString | str:
        return EMPTY if obj.result is None else pretty_json(obj.result)

    @admin.display(description=gettext_lazy("traceback"))
    def traceback_display(self, obj: JobExecution) -> SafeString | str:
        if not obj.traceback:
            return EMPTY
        return format_html('<pre class="qstash-traceback">{}</pre>', obj.traceback)

    # -- actions ---------------------------------------------------------------------------

    @admin.action(
        description=gettext_lazy("Retry selected failed or cancelled jobs"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[JobExecution]) -> None:
        report = _ActionReport(self, request)
        for job_id, status in queryset.order_by("pk").values_list("job_id", "status"):
            if status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                report.skipped(
                    _("Job %(job)s is %(status)s: only failed or cancelled jobs can be retried.")
                    % {"job": job_id, "status": status}
                )
                continue
            try:
                job_dispatcher.retry(job_id)
            except (JobStateError, JobExecution.DoesNotExist) as exc:
                report.skipped(_("Job %(job)s was not retried: %(error)s") % _err(job_id, exc))
                continue
            except EnqueueError as exc:
                report.skipped(
                    _(
                        "Job %(job)s is reset but could not be published (%(error)s); "
                        "republish_jobs will publish it."
                    )
                    % _err(job_id, exc)
                )
                continue
            # The immediate transport has run it already; QStash leaves it queued.
            report.done(
                _("Job %(job)s retried: now %(status)s.")
                % {"job": job_id, "status": _current_status(job_id, _("gone"))}
            )
        report.send(_("Retried %(done)d of %(total)d selected jobs."))

    @admin.action(
        description=gettext_lazy("Cancel selected jobs that have not started"),
        permissions=["operate"],
        **ACTION_PLACES,
    )
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[JobExecution]) -> None:
        report = _ActionReport(self, request)
        for job_id, status in queryset.order_by("pk").values_list("job_id", "status"):
            try:
                cancelled = status in CLAIMABLE_STATUSES and job_dispatcher.cancel(job_id)
            except JobExecution.DoesNotExist:
                cancelled = False
            if cancelled:
                report.done(_("Job %(job)s cancelled.") % {"job": job_id})
            else:
                report.skipped(
                    _(
                        "Job %(job)s is %(status)s: only pending, queued or retrying jobs "
                        "can be cancelled."
                    )
                    % {"job": job_id, "status": _current_status(job_id, status)}
                )
        report.send(_("Cancelled %(done)d of %(total)d selected jobs."))

    # -- dashboard -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_dashboard"
        dashboard = path("dashboard/", self.admin_site.admin_view(self.dashboard), name=name)
        # Before the inherited "<path:object_id>/" patterns, which would take "dashboard/".
        return [dashboard, *super().get_urls()]

    def dashboard(self, request: HttpRequest) -> TemplateResponse:
        """Counts by status, failure rates and durations per job type, latest failures."""
        return dashboard_view(self, request)


def _err(job_id: str, exc: Exception) -> dict[str, str]:
    return {"job": job_id, "error": str(exc)}


def _current_status(job_id: str, fallback: str) -> str:
    # What an action reports is the row's state now, not the one read before it acted.
    status = JobExecution.objects.filter(job_id=job_id).values_list("status", flat=True).first()
    return status or fallback


class _ActionReport:
    """Collects what an action did to each row and tells the user, one message per row."""

    def __init__(self, model_admin: JobExecutionAdmin, request: HttpRequest) -> None:
        self.model_admin = model_admin
        self.request = request
        self.rows: list[tuple[int, str]] = []
        self.done_count = 0

    def done(self, text: str) -> None:
        self.done_count += 1
        self.rows.append((messages.SUCCESS, text))

    def skipped(self, text: str) -> None:
        self.rows.append((messages.WARNING, text))

    def send(self, summary: str) -> None:
        total = len(self.rows)
        level = messages.SUCCESS if self.done_count == total else messages.WARNING
        self.model_admin.message_user(
            self.request, summary % {"done": self.done_count, "total": total}, level
        )
        # Messages live in the session or a cookie: a thousand rows must not make a thousand.
        for row_level, text in self.rows[:MAX_ROW_MESSAGES]:
            self.model_admin.message_user(self.request, text, row_level)
        if total > MAX_ROW_MESSAGES:
            self.model_admin.message_user(
                self.request,
                _("…and %(count)d more.") % {"count": total - MAX_ROW_MESSAGES},
                messages.INFO,
            )
