from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_qstash_jobs.management.arguments import seconds, whole_number
from django_qstash_jobs.outbox import republish_pending


class Command(BaseCommand):
    help = (
        "Publish jobs left pending because QStash was unreachable or refused them. "
        "Safe to run from cron, and to run twice at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=seconds,
            default=None,
            metavar="SECONDS",
            help="Only rows pending for longer than this (default: "
            "QSTASH_JOBS['REPUBLISH_GRACE_SECONDS'], 60), so publishes in flight are left alone.",
        )
        parser.add_argument(
            "--limit", type=whole_number(1), default=None, help="Publish at most this many."
        )
        parser.add_argument("--batch-size", type=whole_number(1), default=100)

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = options["older_than"]
        report = republish_pending(
            older_than=None if older_than is None else timedelta(seconds=older_than),
            batch_size=options["batch_size"],
            limit=options["limit"],
        )
        self.stdout.write(
            f"Published {report.published}, failed {report.failed}, "
            f"skipped {report.skipped} (claimed by another run or no longer pending)."
        )
        if report.refused:
            self.stdout.write(
                f"QStash refused {report.refused} jobs; they are failed, with its answer as "
                "their error."
            )
        if report.failed:
            raise CommandError(
                f"{report.failed} jobs could not be published; they stay pending. "
                "See the log for the reason."
            )
