"""Start a report or an export, follow it live, download the file.

Staff only: exports hold every user's data. The job records who started it (``user_id``), which
is also what lets that user read its status stream.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.contrib.auth.decorators import user_passes_test
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from django_qstash_jobs import JOB_TYPES, job_dispatcher
from django_qstash_jobs.exceptions import EnqueueError, JobValidationError
from django_qstash_jobs.jobs.files import get_storage
from django_qstash_jobs.models import JobExecution, JobStatus
from reports.forms import ExportForm, ReportForm

FILE_JOB_TYPES = (JOB_TYPES.GENERATE_REPORT, JOB_TYPES.EXPORT_DATA)
staff_required = user_passes_test(lambda user: user.is_active and user.is_staff)


def _page(
    request: HttpRequest, report_form: ReportForm, export_form: ExportForm, status: int = 200
) -> HttpResponse:
    jobs = JobExecution.objects.filter(
        user_id=str(request.user.pk), job_type__in=FILE_JOB_TYPES
    ).order_by("-created_at")[:10]
    context = {"report_form": report_form, "export_form": export_form, "jobs": jobs}
    return render(request, "reports/index.html", context, status=status)


@staff_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return _page(request, ReportForm(), ExportForm())


def _start(request: HttpRequest, job_type: str, payload: dict[str, object]) -> str | None:
    try:
        return job_dispatcher.enqueue(job_type, payload, {"user_id": request.user.pk})
    except JobValidationError:
        raise  # the caller shows it on the form (it is an EnqueueError too)
    except EnqueueError as exc:
        # The job is recorded; `republish_jobs` publishes it once QStash is reachable again.
        return exc.job_ids[0] if exc.job_ids else None


@staff_required
@require_POST
def start_report(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        payload = {
            "report_type": data["report_type"],
            "start_date": data["start_date"].isoformat(),
            "end_date": data["end_date"].isoformat(),
            "format": data["format"],
        }
        try:
            job_id = _start(request, JOB_TYPES.GENERATE_REPORT, payload)
        except JobValidationError as exc:  # end date before start date, for one
            form.add_error(None, str(exc))
        else:
            if job_id is not None:
                return redirect("reports:job", job_id=job_id)
    return _page(request, form, ExportForm(), status=400)


@staff_required
@require_POST
def start_export(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        filters = {}
        if data["created_after"]:
            filters["created_after"] = data["created_after"].isoformat()
        payload = {"entity_type": data["entity_type"], "format": data["format"], "filters": filters}
        try:
            job_id = _start(request, JOB_TYPES.EXPORT_DATA, payload)
        except JobValidationError as exc:
            form.add_error(None, str(exc))
        else:
            if job_id is not None:
                return redirect("reports:job", job_id=job_id)
    return _page(request, ReportForm(), form, status=400)


def _file_job(job_id: str) -> JobExecution:
    # Any staff member may follow and download any report, as in the admin and the status API.
    return get_object_or_404(JobExecution, job_id=job_id, job_type__in=FILE_JOB_TYPES)


@staff_required
@require_GET
def job(request: HttpRequest, job_id: str) -> HttpResponse:
    """The page follows the job through ``jobs/status/<job_id>/events/`` (reports/follow.js)."""
    return render(request, "reports/job.html", {"job": _file_job(job_id)})


@staff_required
@require_GET
def download(request: HttpRequest, job_id: str) -> FileResponse:
    job = _file_job(job_id)
    result = job.result if isinstance(job.result, dict) else {}
    name = result.get("file")
    if job.status != JobStatus.COMPLETED or not isinstance(name, str):
        raise Http404
    storage = get_storage()
    if not storage.exists(name):
        raise Http404  # deleted by the nightly cleanup
    return FileResponse(storage.open(name), as_attachment=True, filename=PurePosixPath(name).name)
