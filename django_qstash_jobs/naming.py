"""Keys of the original API, written in camelCase, read as Python's snake_case."""

from __future__ import annotations

from pydantic.alias_generators import to_snake


def snake_case(key: str) -> str:
    """``createdAfter`` -> ``created_after``; a key without capitals is kept as it is.

    Only camelCase keys are converted: ``to_snake`` alone would also split ``line2`` into
    ``line_2``.
    """
    return to_snake(key) if key != key.lower() else key
