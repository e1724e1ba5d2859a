"""``manage.py qstash_dev``: the local QStash-compatible server."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_qstash_jobs.devserver.cli import add_arguments, serve


class Command(BaseCommand):
    help = (
        "Run the local QStash-compatible server (same options as "
        "`python -m django_qstash_jobs.devserver`) until Ctrl+C."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if serve(argparse.Namespace(**options)) != 0:
            raise CommandError("the QStash development server could not start")
