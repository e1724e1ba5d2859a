"""What the API handlers share, and small helpers for reading their input."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from .db import Where
from .engine import Engine
from .errors import bad_request
from .httpd import Request
from .scheduler import Scheduler

_INTEGER_COLUMNS = frozenset({"response_status"})


@dataclass
class Context:
    """The engine and scheduler the handlers work with."""

    engine: Engine
    scheduler: Scheduler


def as_list(value: Any) -> list[str]:
    """A filter value from a JSON body (string, number or list) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value if item is not None]
    return [str(value)]


#: The largest integer SQLite stores: parameters compared in SQL must fit.
_SQLITE_INT_MAX = 2**63 - 1


def int_param(value: Any, name: str, default: int | None = None) -> int | None:
    """An optional integer parameter, or a 400."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name}: {value!r} is not an integer") from None
    if not -_SQLITE_INT_MAX <= number <= _SQLITE_INT_MAX:
        # Numbers are compared in SQL, whose integers have 64 bits.
        raise bad_request(f"invalid {name}: {value!r} is out of range")
    return number


def page_size(request: Request, default: int, maximum: int) -> int:
    """The ``count`` parameter, clamped."""
    count = int_param(request.param("count"), "count", default) or default
    return max(1, min(count, maximum))


def cursor_param(request: Request) -> int | None:
    """The opaque ``cursor`` (a row number)."""
    return int_param(request.param("cursor"), "cursor")


def newest_first(request: Request, default: bool) -> bool:
    """The ``order`` parameter: ``latestFirst`` or ``earliestFirst``."""
    order = (request.param("order") or "").lower()
    if order == "latestfirst":
        return True
    if order == "earliestfirst":
        return False
    return default


def filters(
    where: Where,
    source: dict[str, list[str]],
    columns: dict[str, str],
    time_column: str,
) -> Where:
    """Apply ``name -> values`` filters to ``where`` (OR within a name, AND across names)."""
    for name, column in columns.items():
        values: list[Any] = source.get(name, [])
        if column in _INTEGER_COLUMNS:
            values = [int_param(value, name) for value in values]
        where.any_of(column, values)
    for name, op in (("fromDate", ">="), ("toDate", "<=")):
        values = source.get(name, [])
        if values:
            where.compare(time_column, op, int_param(values[0], name))
    return where


def query_filters(request: Request, names: list[str]) -> dict[str, list[str]]:
    """Read the listed filters from the query string."""
    found = {name: request.param_list(name) for name in names}
    return {name: values for name, values in found.items() if values}


def body_filters(data: dict[str, Any], names: list[str]) -> dict[str, list[str]]:
    """Read the listed filters from a JSON body."""
    return {name: as_list(data.get(name)) for name in names if data.get(name) is not None}


def reject_unknown(given: Iterable[str], known: Collection[str]) -> None:
    """Raise a 400 naming the first of ``given`` that is not in ``known``.

    For calls acting on everything their filters match: a filter this server does not know,
    ignored, would widen the call to every message.
    """
    for name in given:
        if name not in known:
            raise bad_request(f"unknown filter {name!r}")
