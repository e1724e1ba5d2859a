"""``generate_report``: run a registered report and write it as HTML, PDF or CSV to storage."""

from __future__ import annotations

import csv
import importlib
import io
from datetime import date, datetime, timedelta
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from django_qstash_jobs.conf import get_config
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.jobs import analytics, files
from django_qstash_jobs.jobs.export_formats import escape_formula
from django_qstash_jobs.jobs.schemas import GenerateReportPayload
from django_qstash_jobs.registry import JOB_TYPES, register_job
from django_qstash_jobs.reports import Report, register_report, report_registry

_INSTALL_WEASYPRINT = (
    "PDF reports need WeasyPrint: install django-qstash-jobs[reports] "
    "(pip install 'django-qstash-jobs[reports]')"
)


def render_html(report: Report, payload: GenerateReportPayload) -> str:
    """The report's HTML page, from its template."""
    context = {
        **report.context,
        "report": report,
        "payload": payload,
        "generated_at": timezone.now(),
    }
    return render_to_string(report.template_name, context)


def render_pdf(html: str) -> bytes:
    """The HTML laid out as a PDF by WeasyPrint."""
    try:  # WeasyPrint is optional: only PDF reports need it.
        weasyprint = importlib.import_module("weasyprint")
    except ImportError as exc:
        raise PermanentJobError(f"{_INSTALL_WEASYPRINT}.") from exc
    except OSError as exc:  # WeasyPrint is there but Pango, its layout library, is not.
        raise PermanentJobError(f"{_INSTALL_WEASYPRINT} and its system libraries: {exc}") from exc
    document = weasyprint.HTML(string=html, url_fetcher=_inline_only_fetcher(weasyprint))
    pdf: bytes = document.write_pdf()
    return pdf


def _inline_only_fetcher(weasyprint: Any) -> Any:
    # A report holds data from the database; the renderer must not follow a URL in it to the
    # network or the local disk. Images and charts are inline (SVG, data: URIs).
    fetcher_class = getattr(weasyprint, "URLFetcher", None)
    if fetcher_class is not None:
        return fetcher_class(allowed_protocols={"data"})

    def fetch(url: str) -> Any:  # WeasyPrint before the URLFetcher class.
        if not url.startswith("data:"):
            raise ValueError(f"Reports load inline resources only, not {url[:40]!r}.")
        return weasyprint.default_url_fetcher(url)

    return fetch


def render_csv(report: Report) -> bytes:
    """The report's table as CSV (UTF-8, header row first)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(report.columns)
    escape = get_config().csv_escape_formulas
    writer.writerows([_csv_cell(value, escape) for value in row] for row in report.rows)
    return buffer.getvalue().encode()


def _csv_cell(value: Any, escape_formulas: bool) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    return escape_formula(value) if escape_formulas else value


@register_job(JOB_TYPES.GENERATE_REPORT, schema=GenerateReportPayload)
def generate_report(payload: GenerateReportPayload, ctx: JobContext) -> dict[str, Any]:
    """Gather the report's data, render it in the requested format, write it to storage."""
    try:
        build = report_registry.get(payload.report_type)
    except KeyError as exc:
        raise PermanentJobError(exc.args[0]) from None
    ctx.set_progress(10, "gathering data")
    report = build(payload, ctx)
    ctx.set_progress(50, f"rendering {payload.format}")
    if payload.format == "csv":
        content = render_csv(report)
    else:
        html = render_html(report, payload)
        content = html.encode() if payload.format == "html" else render_pdf(html)
    ctx.set_progress(90, "saving")
    stem = f"{payload.report_type}-{payload.start_date}-{payload.end_date}"
    name = files.file_name("reports", stem, ctx.job_id, payload.format)
    return files.save(name, io.BytesIO(content), len(content))


register_report("monthly-analytics")(analytics.monthly_analytics)
