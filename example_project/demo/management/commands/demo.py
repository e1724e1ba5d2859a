"""Run the demo: the local QStash server, this site, and real jobs end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.exceptions import EnqueueError
from django_qstash_jobs.models import JobExecution, JobStatus

TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


@dataclass
class Scenario:
    title: str
    run: Callable[[], list[str]]
    expected: str


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def pick_port(preferred: int) -> int:
    if port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, what: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, headers=headers, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise CommandError(f"{what} did not start at {url}")


class Command(BaseCommand):
    help = "Start the local QStash server and this site, and run real jobs through them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-serve",
            action="store_true",
            default=os.environ.get("DEMO_NO_SERVE") == "1",
            help="Stop after the scenarios instead of leaving the site running.",
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--qstash-port", type=int, default=8080)

    def handle(self, *args: Any, **options: Any) -> None:
        var_dir = Path(settings.VAR_DIR)
        call_command("migrate", verbosity=0)
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "admin@example.com", "admin")

        site_port = pick_port(options["port"])
        qstash_port = pick_port(options["qstash_port"])
        qstash_url = f"http://127.0.0.1:{qstash_port}"
        receiver_url = f"http://127.0.0.1:{site_port}/jobs/receive/"
        environment = {
            **os.environ,
            "QSTASH_URL": qstash_url,
            "QSTASH_RECEIVER_URL": receiver_url,
        }
        with ExitStack() as stack:
            # Retry backoffs are hours long in production; a hundredth of that keeps the demo brisk.
            qstash = subprocess.Popen(
                [
                    sys.executable, "-m", "django_qstash_jobs.devserver",
                    f"--port={qstash_port}", f"--db={var_dir / 'qstash-dev.sqlite3'}",
                    "--backoff-scale=0.01",
                ],
                env=environment,
            )  # fmt: skip
            stack.callback(self._stop, qstash)
            token = settings.QSTASH_JOBS["TOKEN"]
            wait_http(
                f"{qstash_url}/v2/keys", "the QStash server", {"Authorization": f"Bearer {token}"}
            )

            site = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"127.0.0.1:{site_port}", "--noreload"],
                env=environment,
                cwd=settings.BASE_DIR,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(self._stop, site)
            wait_http(f"http://127.0.0.1:{site_port}/admin/login/", "the site")

            jobs_settings = {
                **settings.QSTASH_JOBS,
                "URL": qstash_url,
                "RECEIVER_URL": receiver_url,
            }
            with override_settings(QSTASH_JOBS=jobs_settings):
                ok = self._run_scenarios()
            if not ok:
                raise CommandError("A demo scenario did not end as expected (see the table).")
            self.stdout.write(self.style.SUCCESS("\nEvery scenario ended as expected."))
            if options["no_serve"]:
                return
            self.stdout.write(
                f"\nThe site runs at http://127.0.0.1:{site_port}/admin/ (login admin / admin); "
                f"QStash at {qstash_url}.\nPress Ctrl-C to stop everything."
            )
            try:
                while site.poll() is None and qstash.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                self.stdout.write("\nStopping.")

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def _run_scenarios(self) -> bool:
        def cancel_delayed() -> list[str]:
            job_id = job_dispatcher.enqueue(
                "resize_image", {"image_id": 9}, options={"delay": 3_600_000}
            )
            job_dispatcher.cancel(job_id)
            return [job_id]

        scenarios = [
            Scenario(
                "custom job type (resize_image)",
                lambda: [job_dispatcher.enqueue("resize_image", {"image_id": 1, "width": 640})],
                JobStatus.COMPLETED,
            ),
            Scenario(
                "fails once, succeeds on QStash's retry",
                lambda: [job_dispatcher.enqueue("unreliable", {"fail_times": 1})],
                JobStatus.COMPLETED,
            ),
            Scenario(
                "fails every attempt: retried to failure",
                lambda: [job_dispatcher.enqueue("unreliable", {"fail_times": 99})],
                JobStatus.FAILED,
            ),
            Scenario(
                "same idempotency key twice: one job",
                lambda: list(
                    {
                        job_dispatcher.enqueue(
                            "resize_image", {"image_id": 2}, {"idempotency_key": "demo-op-1"}
                        )
                        for _ in range(2)
                    }
                ),
                JobStatus.COMPLETED,
            ),
            Scenario(
                "enqueue_many: five jobs, one batch publish",
                lambda: job_dispatcher.enqueue_many(
                    [{"job_type": "resize_image", "payload": {"image_id": i}} for i in range(5)]
                ),
                JobStatus.COMPLETED,
            ),
            Scenario("delayed one hour, then cancelled", cancel_delayed, JobStatus.CANCELLED),
        ]
        started: list[tuple[Scenario, list[str]]] = []
        for scenario in scenarios:
            try:
                started.append((scenario, scenario.run()))
            except EnqueueError as exc:
                self.stderr.write(f"{scenario.title}: {exc}")
                return False
        all_ids = [job_id for _, ids in started for job_id in ids]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(
                status in TERMINAL
                for status in JobExecution.objects.filter(job_id__in=all_ids).values_list(
                    "status", flat=True
                )
            ):
                break
            time.sleep(0.1)
        return self._print_table(started)

    def _print_table(self, started: list[tuple[Scenario, list[str]]]) -> bool:
        rows = [("SCENARIO", "JOB ID", "TYPE", "STATUS", "ATTEMPTS", "RESULT / ERROR", "OK")]
        all_ok = True
        for scenario, ids in started:
            for job_id in ids:
                execution = JobExecution.objects.get(job_id=job_id)
                ok = execution.status == scenario.expected
                all_ok &= ok
                outcome = execution.error or (
                    "" if execution.result is None else str(execution.result)
                )
                rows.append(
                    (
                        scenario.title,
                        job_id[:8],
                        execution.job_type,
                        execution.status,
                        str(execution.attempts),
                        outcome[:48],
                        "yes" if ok else f"NO (expected {scenario.expected})",
                    )
                )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.stdout.write("")
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        return all_ok
