"""Values as a JSON column stores them: checked before they reach the database."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class NotStorableAsJson(ValueError):
    """The value cannot go into a JSON column; the message says why."""


def as_stored_json(value: Any) -> Any:
    """``value`` as it reads back from a JSON column, or :class:`NotStorableAsJson`.

    Dates, times, decimals and UUIDs become text, as ``DjangoJSONEncoder`` writes them. NaN
    and Infinity are not JSON, and PostgreSQL's jsonb holds no NUL character: both are refused
    on every database alike, before the database answers with an error of its own.
    """
    try:
        text = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotStorableAsJson(f"not JSON-serialisable: {exc}") from exc
    stored = json.loads(text)
    # The text test is only a quick filter: an escaped backslash followed by "u0000" is no NUL.
    if "\\u0000" in text and _holds_nul(stored):
        raise NotStorableAsJson("it contains a NUL character, which the database cannot store")
    return stored


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
