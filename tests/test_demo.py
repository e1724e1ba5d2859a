"""``make demo``, non-interactively: every scenario of the usage guide must end as expected.

The demo command is what ``make demo`` runs once the virtualenv exists; it is started here with
this interpreter (``make`` could decide to rebuild the virtualenv), in a temporary var directory
(its own SQLite database, emails and files) and on ports picked for this run, so that runs in
parallel never meet. With ``TEST_DB=postgres`` the site runs on a PostgreSQL database made for
the run (``EXAMPLE_DB=postgres``) and dropped after it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from django_qstash_jobs.jobs.schemas import EMAIL_TEMPLATES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_project"
TIMEOUT = 120


@contextmanager
def example_database() -> Iterator[dict[str, str]]:
    """The environment that selects the example's database: SQLite, or a scratch PostgreSQL."""
    if os.environ.get("TEST_DB") != "postgres":
        yield {}
        return
    import psycopg

    name = f"{os.environ.get('PGDATABASE', 'qstash_jobs')}_demo_{os.getpid()}"
    server = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"EXAMPLE_DB": "postgres", "PGDATABASE": name}
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_demo(var_dir: Path, database: dict[str, str]) -> tuple[int, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        # The suite's own settings and any QStash account of the caller stay out of it.
        if not name.startswith(("QSTASH_", "DJANGO_", "EXAMPLE_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_VAR_DIR=str(var_dir),
        DEMO_NO_SERVE="1",
        PYTHONUNBUFFERED="1",
        **database,
    )
    command = [
        sys.executable,
        "manage.py",
        "demo",
        # 0: any free port, so that runs side by side never collide.
        "--port=0",
        "--qstash-port=0",
    ]
    process = subprocess.Popen(
        command,
        cwd=EXAMPLE,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the demo stop the servers it started.
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        pytest.fail(f"the demo did not finish within {TIMEOUT} s:\n{output}")
    return process.returncode, output


def table_rows(output: str) -> list[list[str]]:
    """The table's rows, split on its runs of two or more spaces."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SCENARIO"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(re.split(r" {2,}", line.strip()))
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    var_dir = tmp_path_factory.mktemp("demo-var")
    with example_database() as database:
        code, output = run_demo(var_dir, database)
    return code, output, var_dir


def test_the_demo_exits_zero_and_says_so(demo: tuple[int, str, Path]) -> None:
    code, output, _ = demo
    assert code == 0, output
    assert re.search(r"All \d+ jobs ended as expected", output), output


def test_every_row_of_the_table_is_ok(demo: tuple[int, str, Path]) -> None:
    _, output, _ = demo
    rows = table_rows(output)
    assert len(rows) >= 20, output
    for row in rows:
        assert row[-1] == "ok", f"{row}\n{output}"


def test_the_table_covers_the_usage_guide(demo: tuple[int, str, Path]) -> None:
    _, output, _ = demo
    by_type: dict[str, list[list[str]]] = {}
    for row in table_rows(output):
        by_type.setdefault(row[2], []).append(row)

    emails = " ".join(row[5] for row in by_type["send_email"])
    for template in EMAIL_TEMPLATES:
        assert f"{template} to " in emails
    assert by_type["process_webhook"][0][0].startswith("GitHub")
    stripe_events = " ".join(row[0] for row in by_type["process_stripe_webhook"])
    assert "subscription.updated" in stripe_events
    assert "invoice.payment_failed" in stripe_events
    assert "pdf" in by_type["generate_report"][0][5]
    assert "csv" in by_type["export_data"][0][5]
    assert by_type["cleanup_old_data"][0][0].startswith("nightly-cleanup")
    assert any(row[0].startswith("idempotency key") for row in by_type["resize_image"])
    failed = [row for row in by_type["unreliable"] if row[3] == "failed"]
    assert failed
    assert failed[0][4] == "3"  # the first attempt and both retries
    assert "send_batch_emails" in by_type


def test_emails_and_files_are_where_the_demo_says(demo: tuple[int, str, Path]) -> None:
    _, output, var_dir = demo
    assert f"Emails:  {var_dir / 'emails'}/" in output
    emails = "".join(path.read_text() for path in (var_dir / "emails").iterdir())
    assert "Subject:" in emails
    assert "ada@example.com" in emails
    files = [path for path in (var_dir / "media" / "qstash_jobs").rglob("*") if path.is_file()]
    assert {path.suffix for path in files} == {".pdf", ".csv"}
    assert f"Logs:    {var_dir / 'logs' / 'site.log'}" in output


def test_the_makefile_runs_this_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    assert "manage.py demo" in recipe.group(1)
