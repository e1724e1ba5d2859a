from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_qstash_jobs.conf import get_config
from django_qstash_jobs.jobs.cleanup import cleanup
from django_qstash_jobs.jobs.schemas import MAX_RETENTION_DAYS
from django_qstash_jobs.management.arguments import whole_number


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than the retention, with their report and export files, "
        "and run the registered cleanup hooks. Runs here and now, not through QStash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention",
            type=whole_number(1, MAX_RETENTION_DAYS),
            default=None,
            metavar="DAYS",
            help='Days to keep (default: QSTASH_JOBS["RETENTION_DAYS"]).',
        )
        parser.add_argument(
            "--batch-size",
            type=whole_number(1),
            default=1000,
            help="Rows deleted per transaction (default: 1000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        retention = options["retention"]
        if retention is None:
            retention = get_config().retention_days
            if not 1 <= retention <= MAX_RETENTION_DAYS:
                raise CommandError(
                    f'QSTASH_JOBS["RETENTION_DAYS"] is {retention!r}; it must be 1 to '
                    f"{MAX_RETENTION_DAYS} days (or pass --retention)."
                )
        report = cleanup(retention, batch_size=options["batch_size"])
        self.stdout.write(
            f"Deleted {report.executions_deleted} finished jobs and {report.files_deleted} "
            f"files older than {retention} days (before {report.cutoff:%Y-%m-%d %H:%M %Z})."
        )
        for name, count in report.hooks.items():
            self.stdout.write(f"  {name}: {count} deleted")
