"""``manage.py sync_schedules``: make QStash and the JobSchedule rows match the declarations."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_qstash_jobs.exceptions import ScheduleError
from django_qstash_jobs.management.table import column_widths, table_line
from django_qstash_jobs.schedules import (
    CREATE,
    DELETE,
    PAUSE,
    RESUME,
    UNCHANGED,
    UPDATE,
    SyncAction,
    SyncPlan,
    apply_action,
    plan_sync,
)

_COLUMNS = ("ACTION", "NAME", "SCHEDULE ID", "CRON", "DETAILS")
_VERBS = (
    (CREATE, "created", "to create"),
    (UPDATE, "updated", "to update"),
    (DELETE, "deleted", "to delete"),
    (PAUSE, "paused", "to pause"),
    (RESUME, "resumed", "to resume"),
    (UNCHANGED, "unchanged", "unchanged"),
)


class Command(BaseCommand):
    help = (
        "Reconcile QSTASH_JOBS['SCHEDULES'], the JobSchedule rows and the QStash schedules "
        "that fire to this site: create, update, pause, resume, and delete this site's stale "
        "ones. Schedules of other sites and tools are left alone. Safe to run at every deploy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be done and change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        try:
            plan = plan_sync()
        except ScheduleError as exc:
            raise CommandError(f"Nothing was synced: {exc}") from exc

        widths = column_widths([_COLUMNS, *(_row(action) for action in plan.actions)])
        if plan.actions:
            self.stdout.write(table_line(_COLUMNS, widths))
        done: list[SyncAction] = []
        for action in plan.actions:
            if not dry_run:
                try:
                    apply_action(action)
                except ScheduleError as exc:
                    self.stdout.write(self._summary(plan, done, dry_run=False))
                    raise CommandError(
                        f"Stopped at {action.action} {action.name or action.schedule_id}: {exc} "
                        "Run sync_schedules again once QStash can be reached."
                    ) from exc
            done.append(action)
            self.stdout.write(table_line(_row(action), widths))
        self.stdout.write(self._summary(plan, done, dry_run=dry_run))

    def _summary(self, plan: SyncPlan, actions: list[SyncAction], *, dry_run: bool) -> str:
        """What was done (or would be), out of ``plan``; ``actions`` may stop short of it."""
        counts = Counter(action.action for action in actions)
        if not plan.actions:
            text = "No schedules declared, saved or on QStash for this site"
        elif dry_run:
            text = "Dry run, nothing changed: " + ", ".join(
                f"{counts[action]} {future}" for action, _past, future in _VERBS
            )
        else:
            text = ", ".join(f"{counts[action]} {past}" for action, past, _future in _VERBS)
            text = text[0].upper() + text[1:]
        if actions and counts[UNCHANGED] == len(actions):
            text += " (no changes)"
        text += "."
        if foreign := plan.foreign:
            text += (
                f" {foreign} QStash schedule{'s' if foreign != 1 else ''} of other sites or "
                "tools left alone."
            )
        return text


def _row(action: SyncAction) -> tuple[str, ...]:
    return (action.action, action.name or "-", action.schedule_id, action.cron, action.details)
