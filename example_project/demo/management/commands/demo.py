"""Run the demo: the local QStash server, this site, and the usage guide's jobs end to end."""

from __future__ import annotations

import os
import secrets
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings
from django.utils import timezone

from demo import processes, table
from demo.scenarios import ADA, ADA_NEW_PASSWORD, SCENARIOS, Demo, Expectation
from demo.site import DemoError
from django_qstash_jobs.exceptions import EnqueueError, ScheduleError
from django_qstash_jobs.models import FINISHED_STATUSES, JobExecution

#: Seconds the jobs of all scenarios get to finish (the slowest is retried twice).
WAIT_SECONDS = 45
#: What a scenario raises when the site or QStash does not do what it should.
SCENARIO_ERRORS = (DemoError, EnqueueError, ScheduleError, requests.RequestException)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # `kill` or a test's timeout: unwind, so that the servers are stopped on the way out.
    raise SystemExit(128 + signum)


class Command(BaseCommand):
    help = "Start the local QStash server and this site, and run real jobs through them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-serve",
            action="store_true",
            default=os.environ.get("DEMO_NO_SERVE") == "1",
            help="Stop after the scenarios instead of leaving the site running "
            "(also DEMO_NO_SERVE=1).",
        )
        parser.add_argument(
            "--port", type=int, default=8000, help="The site's port (another if busy; 0: any)."
        )
        parser.add_argument(
            "--qstash-port",
            type=int,
            default=8080,
            help="The QStash server's port (another if busy; 0: any).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        signal.signal(signal.SIGTERM, _terminate)
        try:
            self._demo(options)
        except KeyboardInterrupt:  # before the scenarios ended; the servers are stopped by now
            raise CommandError("Interrupted.", returncode=130) from None

    def _demo(self, options: dict[str, Any]) -> None:
        var_dir = Path(settings.VAR_DIR)
        call_command("migrate", verbosity=0)
        user_model = get_user_model()
        if not user_model.objects.filter(username="admin").exists():
            user_model.objects.create_superuser("admin", "", "admin")

        with ExitStack() as stack:
            servers = processes.start(
                stack,
                site_port=options["port"],
                qstash_port=options["qstash_port"],
                log_dir=var_dir / "logs",
            )
            self.stdout.write(
                f"The site runs at {servers.site_url}/, the QStash server at "
                f"{servers.qstash_url}.\nRunning the scenarios...\n"
            )
            # This process enqueues too: it must publish where the servers are.
            jobs_settings = {
                **settings.QSTASH_JOBS,
                "URL": servers.qstash_url,
                "RECEIVER_URL": servers.receiver_url,
            }
            demo = Demo(
                site_url=servers.site_url,
                qstash_url=servers.qstash_url,
                started_at=timezone.now(),
                run_id=secrets.token_hex(4),
            )
            started = time.monotonic()
            with override_settings(QSTASH_JOBS=jobs_settings, SITE_URL=servers.site_url):
                rows = self._run(demo)
            elapsed = time.monotonic() - started
            for line in ["", *table.render(rows), ""]:
                self.stdout.write(line)
            self._where(servers.logs)
            self.stdout.write("")
            failed = [row for row in rows if row.problem]
            if failed:
                raise CommandError(
                    f"{len(failed)} of {len(rows)} jobs did not end as expected (see the table)."
                )
            self.stdout.write(
                self.style.SUCCESS(f"All {len(rows)} jobs ended as expected, in {elapsed:.1f} s.")
            )
            if options["no_serve"]:
                return
            self.stdout.write(
                f"\nThe site: {servers.site_url}/   the admin: {servers.site_url}/admin/\n"
                f"Log in as admin / admin (staff: reports, admin) or "
                f"{ADA['username']} / {ADA_NEW_PASSWORD}.\n"
                "Press Ctrl-C to stop everything."
            )
            try:
                while servers.running():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                self.stdout.write("\nStopping the site and the QStash server.")
            else:
                raise CommandError("A server stopped on its own; see the logs.")

    def _run(self, demo: Demo) -> list[table.Row]:
        expectations: list[Expectation] = []
        rows: list[table.Row] = []
        for scenario in SCENARIOS:
            try:
                expectations.extend(scenario(demo))
            except SCENARIO_ERRORS as exc:
                rows.append(table.Row(scenario.__name__, None, f"{type(exc).__name__}: {exc}"))
        self._wait(expectations)
        for expectation in expectations:
            rows.append(self._outcome(expectation))
        return rows

    @staticmethod
    def _wait(expectations: list[Expectation]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            job_ids = [expectation.find() for expectation in expectations]
            if None not in job_ids:
                statuses = JobExecution.objects.filter(job_id__in=job_ids).values_list(
                    "status", flat=True
                )
                if all(status in FINISHED_STATUSES for status in statuses):
                    return
            time.sleep(0.1)

    @staticmethod
    def _outcome(expectation: Expectation) -> table.Row:
        job_id = expectation.find()
        execution = JobExecution.objects.filter(job_id=job_id).first() if job_id else None
        if execution is None:
            return table.Row(expectation.scenario, None, "no job was recorded")
        if execution.status != expectation.status:
            problem = f"expected {expectation.status}"
        elif expectation.check is not None:
            problem = expectation.check(execution)
        else:
            problem = ""
        return table.Row(expectation.scenario, execution, problem)

    def _where(self, logs: tuple[Path, ...]) -> None:
        emails = Path(settings.EMAIL_DIR)
        media = Path(settings.MEDIA_ROOT) / "qstash_jobs"
        self.stdout.write(
            f"Emails:  {table.shown(emails)}/ ({table.count_files(emails)} files)\n"
            f"Files:   {table.shown(media)}/ (reports and exports; "
            f"{table.count_files(media)} files)\n"
            f"Logs:    {', '.join(table.shown(log) for log in logs)}\n"
        )
