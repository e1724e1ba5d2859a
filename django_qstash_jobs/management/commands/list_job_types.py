from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_qstash_jobs.registry import qualified_name, registry


class Command(BaseCommand):
    help = "List the registered job types with their handler, schema and retries."

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [
            (
                job_type.name,
                qualified_name(job_type.handler),
                job_type.schema.__name__ if job_type.schema else "-",
                str(job_type.max_retries),
            )
            for job_type in registry
        ]
        header = ("JOB TYPE", "HANDLER", "SCHEMA", "RETRIES")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
