"""Cron expressions: five fields, day of week 0-7, an optional ``CRON_TZ=<zone>`` prefix."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from django_qstash_jobs.exceptions import ScheduleError

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def split_timezone(cron: str) -> tuple[str, ZoneInfo | dt_timezone]:
    """Return the bare expression and its time zone (UTC unless ``CRON_TZ=`` names one)."""
    cron = cron.strip()
    if cron.startswith("CRON_TZ="):
        zone_name, _, rest = cron[len("CRON_TZ=") :].partition(" ")
        try:
            return rest.strip(), ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"Unknown time zone {zone_name!r} in CRON_TZ=.") from None
    return cron, dt_timezone.utc


def validate_cron(cron: str) -> str:
    """Return the expression unchanged, or raise :class:`ScheduleError` naming the bad field."""
    expression, _zone = split_timezone(cron)
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(
            f"Cron expression {cron!r} has {len(fields)} fields; it needs 5: "
            "minute hour day-of-month month day-of-week."
        )
    for value, (name, low, high) in zip(fields, _FIELDS, strict=True):
        if not croniter.is_valid(_single_field(value, name)):
            raise ScheduleError(
                f"Invalid {name} field {value!r} in cron expression {cron!r}: "
                f"allowed values are {low}-{high}, '*', lists (a,b), ranges (a-b) and steps (*/n)."
            )
    if not croniter.is_valid(expression):
        raise ScheduleError(f"Invalid cron expression {cron!r}.")
    return cron


def _single_field(value: str, name: str) -> str:
    # Check one field in isolation by padding the others with '*', so the error can name it.
    position = [field_name for field_name, _low, _high in _FIELDS].index(name)
    parts = ["*"] * len(_FIELDS)
    parts[position] = value
    return " ".join(parts)


def next_runs(cron: str, n: int = 5, *, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` firing times after ``after`` (default: now)."""
    expression, zone = split_timezone(cron)
    start = (after or datetime.now(dt_timezone.utc)).astimezone(zone)
    iterator = croniter(expression, start)
    return [iterator.get_next(datetime) for _ in range(n)]
