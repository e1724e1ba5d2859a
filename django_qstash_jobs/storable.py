"""Values as the database stores them: checked, or made storable, before they reach it."""

from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class NotStorable(ValueError):
    """The value cannot go into a JSON column; the message says why."""


def json_value(value: Any) -> Any:
    """``value`` as it reads back from a JSON column, or :class:`NotStorable`.

    Dates, times, decimals and UUIDs become text, as ``DjangoJSONEncoder`` writes them. NaN
    and Infinity are not JSON, PostgreSQL's jsonb holds no NUL character, and a lone surrogate
    is no Unicode: each is refused on every database alike, before the database answers with
    an error of its own.
    """
    try:
        text = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise NotStorable(f"not JSON-serialisable: {exc}") from exc
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        # A lone surrogate ("\ud800"): Python text, but no UTF-8 the database could be sent.
        raise NotStorable(f"it contains text that is not valid Unicode ({exc})") from exc
    stored = json.loads(text)
    # The text test is only a quick filter: an escaped backslash followed by "u0000" is no NUL.
    if "\\u0000" in text and _holds_nul(stored):
        raise NotStorable("it contains a NUL character, which the database cannot store")
    return stored


def moment(value: datetime, described: str) -> datetime:
    """``value``, an aware date-time, if it has a UTC equivalent; else :class:`NotStorable`.

    The database compares in UTC: 0001-01-01 east of UTC (9999-12-31 late in the day, west of
    it) has none, and a query holding it would fail the same way on every attempt.
    """
    try:
        value.astimezone(dt_timezone.utc)
    except OverflowError:
        raise NotStorable(
            f"{described} in time zone {value.tzinfo} is outside the dates UTC can hold"
        ) from None
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def text(value: str) -> str:
    """``value`` with what no text column holds written out as escapes: NUL, lone surrogates.

    For text we record rather than refuse, such as an exception's message: PostgreSQL's text
    columns refuse a NUL, and no database can be sent a lone surrogate.
    """
    if "\0" in value:
        value = value.replace("\0", "\\0")
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode(errors="backslashreplace").decode()
    return value
