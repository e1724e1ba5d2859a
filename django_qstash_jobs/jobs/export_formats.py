"""Writing rows as CSV, JSON or JSON Lines to a binary file, one chunk at a time.

Each writer takes an iterator of row tuples and never holds more than one chunk, so memory stays
flat whatever the row count. Dates and times are written in ISO 8601, JSON values as JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, time
from itertools import islice, repeat
from operator import itemgetter
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

#: How each format writes: ``write(stream, columns, rows, converters, on_chunk) -> row count``.
Converter = Callable[[Any], Any] | None
OnChunk = Callable[[int], None]

_CHUNK = 2000
_encoder = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def converter_for(
    field: models.Field[Any, Any] | None, *, escape_formulas: bool = True
) -> Converter:
    """How a CSV cell shows the field's values, or None to let ``csv`` write ``str(value)``."""
    if isinstance(field, (models.DateTimeField, models.DateField, models.TimeField)):
        return _isoformat
    if isinstance(field, models.JSONField):
        return _encoder.encode
    # Text fields, and columns with no field (an annotation may be text): escape_formula leaves
    # whatever is not a str alone.
    if escape_formulas and (
        field is None or isinstance(field, (models.CharField, models.TextField))
    ):
        return escape_formula
    return None


#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made text with a leading apostrophe.

    A user's own name of ``=HYPERLINK(...)``, opened by an administrator, would otherwise run.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _isoformat(value: date | time) -> str:
    return value.isoformat()


def _chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_csv(
    stream: IO[bytes],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    converters: Sequence[Converter],
    on_chunk: OnChunk,
) -> int:
    """CSV with a header row, UTF-8; ``None`` is an empty cell."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    # Text columns are checked for formulas a whole chunk at a time (see _with_formulas_escaped);
    # the other converters touch their columns only; the rest go to csv as they are.
    escaped = [index for index, convert in enumerate(converters) if convert is escape_formula]
    converted = [
        (index, convert)
        for index, convert in enumerate(converters)
        if convert and convert is not escape_formula
    ]
    count = 0
    for chunk in _chunks(rows, _CHUNK):
        if escaped:
            chunk = _with_formulas_escaped(chunk, escaped)
        if converted:
            chunk = [_convert(row, converted) for row in chunk]
        writer.writerows(chunk)
        count += len(chunk)
        on_chunk(count)
    text.flush()
    text.detach()
    return count


def _with_formulas_escaped(chunk: list[Sequence[Any]], columns: list[int]) -> list[Sequence[Any]]:
    # Such cells are rare: a test run in C over each column (no Python call per cell) finds
    # whether the chunk has any, and only then is it rewritten, row by row.
    for index in columns:
        present = filter(None, map(itemgetter(index), chunk))  # no None, no ""
        try:
            found = any(map(str.startswith, present, repeat(_FORMULA_STARTS)))
        except TypeError:  # a value that is not a str: let escape_formula look at each
            found = True
        if found:
            escapes = [(column, escape_formula) for column in columns]
            return [_convert(row, escapes) for row in chunk]
    return chunk


def _convert(
    row: Sequence[Any], converted: Sequence[tuple[int, Callable[[Any], Any]]]
) -> list[Any]:
    cells = list(row)
    for index, convert in converted:
        value = cells[index]
        if value is not None:
            cells[index] = convert(value)
    return cells


def write_jsonl(
    stream: IO[bytes],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    converters: Sequence[Converter],
    on_chunk: OnChunk,
) -> int:
    """One JSON object per line."""
    count = 0
    for chunk in _chunks(rows, _CHUNK):
        lines = [_encoder.encode(dict(zip(columns, row, strict=True))) for row in chunk]
        stream.write(("\n".join(lines) + "\n").encode())
        count += len(chunk)
        on_chunk(count)
    return count


def write_json(
    stream: IO[bytes],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    converters: Sequence[Converter],
    on_chunk: OnChunk,
) -> int:
    """A JSON array of objects, written piece by piece (never built whole in memory)."""
    stream.write(b"[")
    count = 0
    for chunk in _chunks(rows, _CHUNK):
        objects = ",\n".join(_encoder.encode(dict(zip(columns, row, strict=True))) for row in chunk)
        stream.write((("\n" if count == 0 else ",\n") + objects).encode())
        count += len(chunk)
        on_chunk(count)
    stream.write(b"\n]\n" if count else b"]\n")
    return count


Writer = Callable[
    [IO[bytes], Sequence[str], Iterable[Sequence[Any]], Sequence[Converter], OnChunk], int
]

WRITERS: dict[str, Writer] = {"csv": write_csv, "json": write_json, "jsonl": write_jsonl}
