"""Cron expressions: five fields, day of week 0-7, an optional ``CRON_TZ=<zone>`` prefix.

The grammar is the common subset of what QStash and croniter both accept: numbers, ``*``,
ranges ``a-b``, steps ``*/n``, ``a/n`` and ``a-b/n``, and comma-separated lists of those.
croniter alone would also take names, ``L``, ``W``, ``#``, ``?`` and a seconds field, which
QStash may refuse at sync time; checking each field here catches them when the schedule is
written, with an error that names the field.

Where croniter reads a form of that grammar otherwise than cron does, the form is rewritten or
refused, so that croniter (``next_runs``, the admin, the local QStash server) and QStash fire
at the same times: an equal range ``a-a`` or ``a-a/n`` is written ``a`` (croniter reads the
whole field), and a day-of-week step from 7 (``7/n``, which croniter reads as ``*/n``) is
refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from django_qstash_jobs.exceptions import ScheduleError

_TZ_PREFIX = "CRON_TZ="
# ASCII: without it \d also matches other scripts' digits (Arabic-Indic, fullwidth), which int()
# reads but croniter and QStash refuse.
_ITEM = re.compile(
    r"^(?:(?P<star>\*)|(?P<start>\d+)(?:-(?P<end>\d+))?)(?:/(?P<step>\d+))?$", re.ASCII
)
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class CronField:
    """One of the five fields: its name and the numbers it allows."""

    name: str
    low: int
    high: int
    #: How many distinct values the field has: the largest step that still means something.
    span: int
    note: str = ""

    @property
    def allowed(self) -> str:
        return f"{self.low}-{self.high}{self.note}"


DAY_OF_WEEK = CronField("day of week", 0, 7, 7, " (0 and 7 are Sunday)")
FIELDS = (
    CronField("minute", 0, 59, 60),
    CronField("hour", 0, 23, 24),
    CronField("day of month", 1, 31, 31),
    CronField("month", 1, 12, 12),
    DAY_OF_WEEK,
)


@dataclass(frozen=True)
class CronItem:
    """One comma-separated part of a field: ``*``, ``n``, ``a-b``, each with an optional step."""

    #: As written in the normalised expression.
    text: str
    start: int | None  # None for '*'
    end: int | None  # None unless a range
    step: int | None

    @property
    def is_single(self) -> bool:
        return self.start is not None and self.end is None and self.step is None


@dataclass(frozen=True)
class CronExpression:
    """A validated expression: its normalised text, its five fields and its zone."""

    #: As sent to QStash: single spaces, with the ``CRON_TZ=`` prefix when one was given.
    text: str
    fields: tuple[str, ...]
    zone_name: str | None
    #: Each field's items, as :func:`parse_field` read them.
    items: tuple[tuple[CronItem, ...], ...]

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.zone_name) if self.zone_name else dt_timezone.utc

    @property
    def bare(self) -> str:
        """The five fields without the zone prefix, as croniter takes them."""
        return " ".join(self.fields)


def parse_cron(cron: str) -> CronExpression:
    """Parse and check ``cron``; raise :class:`ScheduleError` naming the field that is wrong."""
    if not isinstance(cron, str):
        raise ScheduleError(f"A cron expression must be a str, not {type(cron).__name__}.")
    return _parse_cron(cron)


# Cached: the admin's schedule list describes each expression and works out its next run,
# and a page shows the same few expressions again and again.
@functools.lru_cache(maxsize=256)
def _parse_cron(cron: str) -> CronExpression:
    text = cron.strip()
    zone_name: str | None = None
    if text.startswith(_TZ_PREFIX):
        zone_name, _, text = text[len(_TZ_PREFIX) :].partition(" ")
        _check_zone(zone_name, cron)
    written = text.split()
    if len(written) == 1 and written[0].startswith("@"):
        raise ScheduleError(
            f"Cron macros such as {written[0]!r} are not supported: write the five fields, "
            "e.g. '0 0 * * *' for daily at midnight."
        )
    if len(written) != len(FIELDS):
        raise ScheduleError(
            f"Cron expression {cron!r} has {len(written)} fields; it needs 5: "
            "minute hour day-of-month month day-of-week."
        )
    items = tuple(
        tuple(parse_field(value, field)) for value, field in zip(written, FIELDS, strict=True)
    )
    fields = tuple(",".join(item.text for item in field_items) for field_items in items)
    expression = CronExpression(
        text=" ".join(((f"{_TZ_PREFIX}{zone_name}",) if zone_name else ()) + fields),
        fields=fields,
        zone_name=zone_name,
        items=items,
    )
    _check_fires(expression)
    return expression


def validate_cron(cron: str) -> str:
    """Return the expression normalised, or raise :class:`ScheduleError`.

    Normalised: single spaces, and an equal range ``a-a`` or ``a-a/n`` written ``a``.
    """
    return parse_cron(cron).text


def parse_field(value: str, field: CronField) -> list[CronItem]:
    """The items of one field, each checked against the field's range, and normalised."""
    items = []
    for part in value.split(","):
        match = _ITEM.match(part)
        if match is None:
            raise ScheduleError(
                f"Invalid {field.name} field {value!r}: allowed are numbers {field.allowed}, "
                "'*', lists (1,2), ranges (1-5) and steps (*/15, 1-30/5)."
            )
        item = CronItem(
            text=part,
            start=_number(match["start"]),
            end=_number(match["end"]),
            step=_number(match["step"]),
        )
        for number in (item.start, item.end):
            if number is not None and not field.low <= number <= field.high:
                raise ScheduleError(
                    f"The {field.name} field {value!r} is out of range: {number} is not in "
                    f"{field.allowed}."
                )
        if item.start is not None and item.end is not None and item.start > item.end:
            raise ScheduleError(
                f"The {field.name} field {value!r} has a reversed range {part!r}: write the "
                f"smaller number first ({item.end}-{item.start})."
            )
        if item.step is not None and not 1 <= item.step <= field.span:
            raise ScheduleError(
                f"The {field.name} field {value!r} has a bad step {item.step}: a step must be "
                f"from 1 to {field.span}."
            )
        if field is DAY_OF_WEEK and item.start == 7 and item.end is None and item.step:
            # croniter reads '7/n' as '*/n' (every n-th day from Sunday), cron as Sunday only.
            raise ScheduleError(
                f"The {field.name} field {value!r} has a step from 7 in {part!r}, which cron "
                f"implementations read differently: write '0/{item.step}' to step from Sunday, "
                "or '7' for Sunday only."
            )
        if item.start is not None and item.start == item.end:
            # cron reads 'a-a' and 'a-a/n' as 'a'; croniter as the whole field ('*', '*/n').
            item = CronItem(text=str(item.start), start=item.start, end=None, step=None)
        items.append(item)
    return items


def _number(text: str | None) -> int | None:
    return None if text is None else int(text)


def _check_zone(zone_name: str, cron: str) -> None:
    if not zone_name:
        raise ScheduleError(
            f"CRON_TZ= in {cron!r} names no time zone: write e.g. 'CRON_TZ=Europe/Paris 0 2 * * *'."
        )
    try:
        ZoneInfo(zone_name)
    # A region such as "America" is a directory of zones: IsADirectoryError, an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"Unknown time zone {zone_name!r} in CRON_TZ=: use an IANA zone name such as "
            "'Europe/Paris' or 'America/New_York'."
        ) from None


def _check_fires(expression: CronExpression) -> None:
    # Each field can be valid while the whole never matches a date (30 February); QStash would
    # accept it and never fire, so say so now.
    start = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
    try:
        croniter(expression.bare, start).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(
            f"Cron expression {expression.text!r} never fires: no month has that day."
        ) from None
    except CroniterError as exc:
        # The grammar above should leave croniter nothing to refuse; if it does, the caller
        # (the admin, a sync) expects a ScheduleError, not croniter's own.
        raise ScheduleError(f"Cron expression {expression.text!r} is not valid: {exc}") from None


def next_runs(cron: str, n: int = 5, *, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` firing times after ``after`` (default: now), in the expression's zone."""
    expression = parse_cron(cron)
    start = (after or datetime.now(dt_timezone.utc)).astimezone(expression.zone)
    iterator = croniter(expression.bare, start)
    return [iterator.get_next(datetime) for _ in range(n)]


def describe_cron(cron: str) -> str:
    """A short English description of common patterns, e.g. "At 02:00 every day".

    Patterns it does not know are described field by field, so the result is never wrong,
    only sometimes less fluent.
    """
    expression = parse_cron(cron)
    minute, hour, day, month, weekday = expression.items
    when, at_times = _describe_time(minute, hour, expression.fields[:2])
    days = _describe_days(day, month, weekday, expression.fields[2:], at_times=at_times)
    if days:
        when = f"{when} {days}" if at_times else f"{when}, {days}"
    elif at_times:
        when = f"{when} every day"
    if expression.zone_name:
        when = f"{when} ({expression.zone_name})"
    return when


def _describe_time(
    minute: Sequence[CronItem], hour: Sequence[CronItem], raw: tuple[str, ...]
) -> tuple[str, bool]:
    """The time-of-day part, and whether it names exact times (so "every day" reads well)."""
    minute_step = _every(minute)
    if raw[0] == "*" or minute_step is not None:
        every = "Every minute" if minute_step in (None, 1) else f"Every {minute_step} minutes"
        return (every if raw[1] == "*" else f"{every} {_hours(hour, raw[1])}"), False
    if not all(item.is_single for item in minute):
        return f"At minute {raw[0]} past hour {raw[1]}", True
    minutes = [item.start for item in minute if item.start is not None]
    past = (
        "on the hour" if minutes == [0] else f"at {_join([str(m) for m in minutes])} minutes past"
    )
    hour_step = _every(hour)
    if raw[1] == "*":
        return f"Every hour, {past}", False
    if hour_step is not None:
        return f"Every {hour_step} hours, {past}", False
    if len(minutes) == 1 and len(hour) == 1 and hour[0].end is not None and hour[0].step is None:
        first, last = hour[0].start or 0, hour[0].end
        return f"Every hour from {first:02}:{minutes[0]:02} to {last:02}:{minutes[0]:02}", False
    if all(item.is_single for item in hour) and len(minutes) * len(hour) <= 6:
        times = [f"{item.start:02}:{m:02}" for item in hour for m in minutes]
        return f"At {_join(times)}", True
    return f"At minute {raw[0]} past hour {raw[1]}", True


def _hours(hour: Sequence[CronItem], raw: str) -> str:
    if len(hour) == 1 and hour[0].step is None and hour[0].start is not None:
        first = hour[0].start
        last = first if hour[0].end is None else hour[0].end
        return f"from {first:02}:00 to {last:02}:59"
    return f"during hour {raw}"


def _describe_days(
    day: Sequence[CronItem],
    month: Sequence[CronItem],
    weekday: Sequence[CronItem],
    raw: tuple[str, ...],
    *,
    at_times: bool,
) -> str:
    parts = []
    if raw[2] != "*" and _every_day_of_the_week(weekday):
        # "0-7" restricts nothing: with a day of the month too, either matching is enough, so
        # it fires every day as well.
        raw = ("*", raw[1], "*")
    if raw[0] != "*":
        plural = "" if len(day) == 1 and day[0].is_single else "s"
        parts.append(f"on day{plural} {_values(day, raw[0], str)} of the month")
    if raw[2] != "*":
        # Standard cron: when both day fields are restricted, either one matching is enough.
        prefix = "or " if parts else ""
        if raw[2] == "1-5":
            parts.append(f"{prefix}on weekdays")
        elif raw[2] in ("0,6", "6,0", "6-7", "6,7"):
            parts.append(f"{prefix}on weekends")
        else:
            parts.append(f"{prefix}on {_values(weekday, raw[2], _day_name)}")
    if raw[1] != "*":
        every_day = "every day " if at_times and not parts else ""
        months = _values(month, raw[1], lambda number: _MONTH_NAMES[number - 1])
        parts.append(f"{every_day}in {months}")
    return " ".join(parts)


def _every_day_of_the_week(weekday: Sequence[CronItem]) -> bool:
    days: set[int] = set()
    for item in weekday:
        if item.start is None or item.step is not None:
            return False  # "*" is told apart by the caller; a step is left as written
        last = item.start if item.end is None else item.end
        days.update(number % 7 for number in range(item.start, last + 1))
    return len(days) == 7


def _day_name(number: int) -> str:
    return _DAY_NAMES[number % 7]


def _values(items: Sequence[CronItem], raw: str, name: Callable[[int], str]) -> str:
    if any(item.step is not None or item.start is None for item in items):
        return raw
    words = [
        name(item.start) if item.end is None else f"{name(item.start)} through {name(item.end)}"
        for item in items
        if item.start is not None
    ]
    return _join(words)


def _every(items: Sequence[CronItem]) -> int | None:
    """``n`` for a field that is exactly ``*/n``, else None."""
    if len(items) == 1 and items[0].start is None and items[0].step is not None:
        return items[0].step
    return None


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"
