"""What an ``export_data`` job costs over a bare ``csv.writer``, and the memory it holds.

    python bench/export.py [--db sqlite|postgres] [--rows 200000] [--rounds 3]

Both contenders read the same users, in the same order, with ``values_list().iterator()`` and
write CSV to a temporary file. The job goes the whole way a user's export goes: the job row,
the claim, the count, the file written and copied to storage, the result; the bare writer does
nothing but write. Memory is the peak that tracemalloc sees during one more export, run apart
from the timed ones (tracing slows Python down). Exits non-zero when a target is missed: at
most 1.3x the bare writer's time, and under 50 MB of peak memory.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
import tempfile
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, scratch_dir, setup_django, summarize

TIME_TARGET = 1.3
MEMORY_TARGET_MB = 50.0
NAMES = ["Zoë", "李", "Ångström", 'O\'Brien, "Jr"', "Émile", "Łukasz", "José", "Ann"]


def populate(count: int) -> None:
    """``count`` users with varied, partly non-ASCII names, in batches."""
    from django.contrib.auth.models import User

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    batch = 5000
    for offset in range(0, count, batch):
        User.objects.bulk_create(
            User(
                username=f"user{number}",
                email=f"user{number}@example.com",
                first_name=NAMES[number % len(NAMES)],
                last_name=f"Nachname {number}",
                password="!",
                date_joined=start + timedelta(minutes=number),
                is_staff=number % 97 == 0,
            )
            for number in range(offset, min(offset + batch, count))
        )


def bare_export(fields: tuple[str, ...]) -> int:
    """The floor: csv.writer over values_list().iterator(), into a temporary file."""
    from django.contrib.auth.models import User

    rows = User.objects.order_by("pk").values_list(*fields).iterator(chunk_size=2000)
    with tempfile.TemporaryFile() as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(fields)
        writer.writerows(rows)
        text.flush()
        return stream.tell()


def job_export() -> int:
    """An export_data job, through the immediate transport (the receiver's execution path)."""
    from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher

    job_id = job_dispatcher.enqueue(JOB_TYPES.EXPORT_DATA, {"entity_type": "users"})
    execution = get_job_execution_by_job_id(job_id)
    if execution is None or execution.status != "completed":
        raise SystemExit(f"The export failed: {execution and execution.error}")
    return int(execution.result["rows"])


def peak_mb(call: object) -> float:
    assert callable(call)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    workdir = scratch_dir()
    try:
        return run(arguments, workdir)
    finally:
        # The scratch database and the export files take a few hundred MB.
        shutil.rmtree(workdir, ignore_errors=True)


def run(arguments: argparse.Namespace, workdir: Path) -> int:
    """Populate, check, time and measure; print the figures; 1 if a target is missed."""
    setup_django(arguments.db, workdir)
    from django.test import override_settings

    from django_qstash_jobs.exports import export_registry

    storages = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(workdir / "media")},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        populate(arguments.rows)
        fields = export_registry.get("users").fields
        if job_export() != arguments.rows:
            raise SystemExit("The export did not write every row.")
        timings = interleaved(
            {"bare csv.writer": lambda: bare_export(fields), "export_data job": job_export},
            rounds=arguments.rounds,
            per_round=1,
        )
        bare_mb = peak_mb(lambda: bare_export(fields))
        job_mb = peak_mb(job_export)

    bare, job = timings["bare csv.writer"], timings["export_data job"]
    ratio = job.median / bare.median
    print(f"{arguments.rows} users, {len(fields)} columns, CSV, {arguments.db}")
    print(f"  bare csv.writer   median {bare.median:7.3f} s   peak memory {bare_mb:6.1f} MB")
    print(f"  export_data job   median {job.median:7.3f} s   peak memory {job_mb:6.1f} MB")
    print(f"  time ratio {ratio:.2f}x (target <= {TIME_TARGET}x)")
    print(f"  peak memory {job_mb:.1f} MB (target < {MEMORY_TARGET_MB:.0f} MB)")
    missed = ratio > TIME_TARGET or job_mb >= MEMORY_TARGET_MB
    summarize(
        "export",
        [
            (f"export {arguments.rows} rows vs bare csv.writer", f"{ratio:.2f}x",
             f"<= {TIME_TARGET}x", ratio <= TIME_TARGET),
            ("export peak memory", f"{job_mb:.1f} MB", f"< {MEMORY_TARGET_MB:.0f} MB",
             job_mb < MEMORY_TARGET_MB),
        ],
    )  # fmt: skip
    if missed:
        print("TARGET MISSED")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
