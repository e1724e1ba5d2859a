from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_qstash_jobs.management.table import column_widths, table_line
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
        table = [("JOB TYPE", "HANDLER", "SCHEMA", "RETRIES"), *rows]
        widths = column_widths(table)
        for row in table:
            self.stdout.write(table_line(row, widths))
