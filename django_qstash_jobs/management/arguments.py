"""Argument types the commands share: bad values get argparse's "invalid value" message."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: A hundred years: past this, a date computed from the value leaves the calendar.
MAX_SECONDS = 36_500 * 86_400


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An ``int`` between ``minimum`` and ``maximum``, for ``type=``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({bounds})")
        return value

    return parse


def seconds(text: str) -> float:
    """A finite, non-negative number of seconds, for ``type=``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds from 0 to 100 years")
    return value
