"""Cron expressions with an optional ``CRON_TZ=<zone>`` prefix, evaluated by croniter.

croniter reads two forms otherwise than cron: an equal range ``a-a`` or ``a-a/n`` (croniter: the
whole field; cron: ``a``), evaluated here as ``a``, and a day-of-week step from 7 (croniter:
``*/n``; cron: Sunday only), refused. The expression itself is kept as it was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_TZ_PREFIX = re.compile(r"^\s*CRON_TZ=(\S+)\s+(.*)$")
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# ASCII digits only: croniter refuses other scripts' digits, and must see them to say so.
_RANGE = re.compile(r"^([0-9]+)-([0-9]+)(?:/[0-9]+)?$")
_STEP_FROM = re.compile(r"^([0-9]+)/")


@dataclass(frozen=True)
class Cron:
    """A validated cron expression: five fields and the zone they are read in."""

    fields: str
    zone: tzinfo

    def next_after_ms(self, after_ms: int) -> int:
        """Return the first firing strictly after ``after_ms`` (Unix ms)."""
        start = datetime.fromtimestamp(after_ms / 1000, tz=self.zone)
        nxt = croniter(self.fields, start).get_next(datetime)
        return int(nxt.timestamp() * 1000)


def parse_cron(expression: str) -> Cron:
    """Parse and validate a cron expression; raise ValueError naming what is wrong."""
    text = expression.strip()
    zone: tzinfo = timezone.utc
    match = _TZ_PREFIX.match(text)
    if match:
        try:
            zone = ZoneInfo(match.group(1))
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            # OSError: a name of a directory of the zone database (a region, "America") is
            # opened as a file and fails with IsADirectoryError.
            raise ValueError(f"invalid cron timezone: {match.group(1)}") from exc
        text = match.group(2).strip()
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"invalid cron expression {expression!r}: expected 5 fields")
    fields = [_without_equal_ranges(field) for field in fields]
    for part in fields[4].split(","):
        step_from = _STEP_FROM.match(part)
        if step_from and int(step_from[1]) == 7:
            raise ValueError(
                f"invalid cron expression {expression!r}: bad day of week field {fields[4]!r}: "
                f"a step from 7 ({part!r}) is read differently by cron implementations"
            )
    for name, field in zip(_FIELD_NAMES, fields, strict=True):
        if not croniter.is_valid(_probe(fields, field, name)):
            raise ValueError(f"invalid cron expression {expression!r}: bad {name} field {field!r}")
    joined = " ".join(fields)
    if not croniter.is_valid(joined):
        raise ValueError(f"invalid cron expression {expression!r}")
    cron = Cron(fields=joined, zone=zone)
    try:
        # Valid field by field, yet perhaps no date at all (February 30th): it would never fire,
        # and the scheduler could not compute its next time.
        cron.next_after_ms(int(datetime.now(timezone.utc).timestamp() * 1000))
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: it never fires") from exc
    return cron


def _without_equal_ranges(field: str) -> str:
    """``field`` with each equal range (``5-5``, ``5-5/10``) written as its one number."""
    parts = []
    for part in field.split(","):
        match = _RANGE.match(part)
        parts.append(str(int(match[1])) if match and int(match[1]) == int(match[2]) else part)
    return ",".join(parts)


def _probe(fields: list[str], field: str, name: str) -> str:
    # Checks one field at a time (the others wildcards) so the error can name the bad one.
    probe = ["*"] * 5
    probe[_FIELD_NAMES.index(name)] = field
    return " ".join(probe)
