"""generate_report: the built-in monthly-analytics report as HTML, CSV and PDF, and custom ones."""

from __future__ import annotations

import csv
import http.server
import importlib
import io
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher
from django_qstash_jobs.exceptions import JobValidationError
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.reports import Report, register_report, report_registry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("storage")]

JANUARY = {"report_type": "monthly-analytics", "start_date": "2025-01-01", "end_date": "2025-01-31"}


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 1, day, hour, tzinfo=dt_timezone.utc)


def job(
    job_type: str, status: str, *, day: int = 10, seconds: float | None = None, **fields: Any
) -> None:
    started = at(day) if seconds is not None else None
    JobExecution.objects.create(
        job_type=job_type,
        status=status,
        created_at=at(day),
        started_at=started,
        finished_at=started + timedelta(seconds=seconds) if started and seconds else None,
        **fields,
    )


@pytest.fixture
def january_jobs() -> None:
    for seconds in (1, 2, 3):
        job("send_email", JobStatus.COMPLETED, seconds=seconds)
    job("send_email", JobStatus.FAILED, seconds=0.5)
    job("export_data", JobStatus.CANCELLED)
    job("export_data", JobStatus.QUEUED, day=31, organization_id="456")
    job("send_email", JobStatus.COMPLETED, day=1, seconds=4, organization_id="456")
    # Outside the range: the day before and the day after.
    JobExecution.objects.create(
        job_type="send_email", status="failed", created_at=at(1, 0) - timedelta(seconds=1)
    )
    JobExecution.objects.create(
        job_type="send_email", status="failed", created_at=at(31) + timedelta(hours=12)
    )


@pytest.fixture
def weasyprint() -> None:
    """Skip a PDF test where WeasyPrint (django-qstash-jobs[reports]) or Pango is missing."""
    try:
        importlib.import_module("weasyprint")
    except (ImportError, OSError) as exc:
        pytest.skip(f"WeasyPrint is not usable here: {exc}")


def generate(payload: dict[str, Any], metadata: dict[str, Any] | None = None) -> JobExecution:
    execution = get_job_execution_by_job_id(
        job_dispatcher.enqueue(JOB_TYPES.GENERATE_REPORT, payload, metadata)
    )
    assert execution is not None
    return execution


def read(storage: FileSystemStorage, execution: JobExecution) -> bytes:
    assert execution.status == JobStatus.COMPLETED, execution.error
    result = execution.result
    assert set(result) == {"file", "url", "size"}
    with storage.open(result["file"]) as stored:
        content: bytes = stored.read()
    assert result["size"] == len(content)
    assert result["url"] == storage.url(result["file"])
    return content


@pytest.mark.usefixtures("january_jobs")
def test_the_csv_has_counts_failure_rates_and_durations_per_type(
    storage: FileSystemStorage,
) -> None:
    execution = generate({**JANUARY, "format": "csv"})

    content = read(storage, execution).decode()
    assert execution.result["file"].startswith("qstash_jobs/reports/")
    assert execution.result["file"].endswith(
        f"monthly-analytics-2025-01-01-2025-01-31-{execution.job_id}.csv"
    )
    rows = list(csv.DictReader(io.StringIO(content)))
    by_type = {row["job_type"]: row for row in rows}
    assert set(by_type) == {"send_email", "export_data"}
    email = by_type["send_email"]
    assert (email["total"], email["completed"], email["failed"]) == ("5", "4", "1")
    assert email["failure_rate_percent"] == "20.0"
    assert email["average_duration_seconds"] == "2.5"
    assert email["longest_duration_seconds"] == "4.0"
    exports = by_type["export_data"]
    assert (exports["cancelled"], exports["other"], exports["failure_rate_percent"]) == (
        "1",
        "1",
        "",
    )


@pytest.mark.usefixtures("january_jobs")
def test_the_html_has_the_figures_and_an_accessible_inline_svg_chart(
    storage: FileSystemStorage,
) -> None:
    page = read(storage, generate({**JANUARY, "format": "html"})).decode()

    assert "<title>Job analytics, 2025-01-01 to 2025-01-31</title>" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page
    assert 'role="img" aria-labelledby="chart-title chart-description"' in page
    assert "send_email: 4 completed, 1 failed, 0 cancelled or unfinished" in page
    assert "<title>send_email: 1 failed</title>" in page
    assert "20.0%" in page
    assert "2.50 s" in page
    assert "<script" not in page


@pytest.mark.usefixtures("january_jobs")
def test_a_report_for_an_organisation_counts_its_jobs_only(storage: FileSystemStorage) -> None:
    execution = generate({**JANUARY, "format": "csv"}, {"organization_id": 456})

    rows = list(csv.DictReader(io.StringIO(read(storage, execution).decode())))
    assert [(row["job_type"], row["total"]) for row in rows] == [
        ("export_data", "1"),
        ("send_email", "1"),
    ]


def test_a_period_without_jobs_says_so(storage: FileSystemStorage) -> None:
    page = read(storage, generate({**JANUARY, "format": "html"})).decode()
    assert "No jobs were created in this period." in page
    assert "<svg" not in page


@pytest.mark.usefixtures("january_jobs", "weasyprint")
def test_the_pdf_is_a_real_pdf(storage: FileSystemStorage) -> None:
    pdf = read(storage, generate({**JANUARY, "format": "pdf"}))

    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert len(pdf) > 5000  # Fonts, the table and the chart, not an empty page.


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils is not installed")
@pytest.mark.usefixtures("january_jobs", "weasyprint")
def test_the_pdf_text_holds_the_report(storage: FileSystemStorage, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(read(storage, generate({**JANUARY, "format": "pdf"})))

    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    assert re.search(r"^Pages:\s+1$", info.stdout, re.MULTILINE), info.stdout
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Job analytics" in text
    assert "1 January 2025 to 31 January 2025" in text
    assert "send_email" in text and "export_data" in text
    assert "20.0%" in text
    assert "Page 1 of 1" in text
    # The chart's legend is drawn text: the SVG made it into the PDF.
    assert "Cancelled or unfinished" in text


def test_without_weasyprint_a_pdf_report_fails_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # Makes `import weasyprint` fail.

    execution = generate({**JANUARY, "format": "pdf"}, None)

    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1  # Permanent: retrying cannot install it.
    assert "PermanentJobError: PDF reports need WeasyPrint" in execution.error
    assert "django-qstash-jobs[reports]" in execution.error


@pytest.fixture
def signups_report() -> Iterator[list[Any]]:
    calls: list[Any] = []

    @register_report("signups")
    def signups(payload: Any, ctx: Any) -> Report:
        calls.append((payload.start_date.isoformat(), ctx.metadata))
        return Report(
            title="Sign-ups",
            columns=["day", "count"],
            rows=[("2025-01-01", 3), ("2025-01-02", 5), ("Zürich ✓", None)],
        )

    yield calls
    report_registry.unregister("signups")


def test_a_registered_report_renders_with_the_default_template(
    storage: FileSystemStorage, signups_report: list[Any]
) -> None:
    payload = {"reportType": "signups", "startDate": "2025-01-01", "endDate": "2025-01-02"}

    csv_file = read(storage, generate({**payload, "format": "csv"}, {"user_id": 1})).decode()
    page = read(storage, generate({**payload, "format": "html"})).decode()

    assert csv_file.splitlines() == ["day,count", "2025-01-01,3", "2025-01-02,5", "Zürich ✓,"]
    assert signups_report[0] == ("2025-01-01", {"user_id": 1})
    assert "<h1>Sign-ups</h1>" in page
    assert '<th scope="col">count</th>' in page
    assert "<td>Zürich ✓</td>" in page


def test_an_unknown_report_or_a_reversed_range_is_refused_at_enqueue() -> None:
    with pytest.raises(
        JobValidationError, match=r"unknown report 'nope'; registered reports: .*monthly-analytics"
    ):
        generate({**JANUARY, "report_type": "nope"})
    with pytest.raises(JobValidationError, match="end_date is before start_date"):
        generate({**JANUARY, "end_date": "2024-12-31"})
    # The last day there is: the report would run past it, and fail on every attempt.
    with pytest.raises(JobValidationError, match="end_date must be before 9999-12-31"):
        generate({**JANUARY, "end_date": "9999-12-31"})
    assert not JobExecution.objects.exists()


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.usefixtures("weasyprint")
def test_the_pdf_renderer_fetches_nothing(
    storage: FileSystemStorage, settings: Any, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret.css"
    secret.write_text("body { color: red }")
    template = tmp_path / "templates" / "hostile.html"
    template.parent.mkdir()
    template.write_text(
        f'<link rel="stylesheet" href="file://{secret}">'
        f'<img src="http://127.0.0.1:{server.server_port}/tracker.png">'
        "<p>{{ report.title }}</p>"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(template.parent)]}]

    @register_report("hostile")
    def hostile(payload: Any, ctx: Any) -> Report:
        return Report(title="Hostile", columns=[], rows=[], template_name="hostile.html")

    try:
        pdf = read(storage, generate({**JANUARY, "report_type": "hostile", "format": "pdf"}))
    finally:
        report_registry.unregister("hostile")
        server.shutdown()
    assert pdf.startswith(b"%PDF-")
    assert _CountingHandler.hits == []


def test_a_start_date_whose_midnight_has_no_utc_equivalent_is_refused_at_enqueue(
    settings: Any,
) -> None:
    # Midnight of 0001-01-01 in Paris is still 31 December of year 0 in UTC.
    settings.TIME_ZONE = "Europe/Paris"

    with pytest.raises(JobValidationError) as caught:
        generate({**JANUARY, "start_date": "0001-01-01", "format": "csv"})

    assert caught.value.errors[0]["field"] == "start_date"
    assert (
        "start_date: Value error, midnight of 0001-01-01 in time zone Europe/Paris "
        "is outside the dates UTC can hold"
    ) in str(caught.value)
    assert not JobExecution.objects.exists()


def test_a_report_from_the_first_day_runs_where_its_midnight_exists_in_utc(
    storage: FileSystemStorage, settings: Any
) -> None:
    settings.TIME_ZONE = "America/New_York"

    execution = generate({**JANUARY, "start_date": "0001-01-01", "format": "csv"})

    assert read(storage, execution).decode().startswith("job_type,total,")
