"""Writing rows as CSV, JSON or JSON Lines to a binary file, one chunk at a time.

Each writer takes an iterator of row tuples and never holds more than one chunk, so memory stays
flat whatever the row count. Dates and times are written in ISO 8601, JSON values as JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, time
from itertools import islice
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

#: How each format writes: ``write(stream, columns, rows, converters, on_chunk) -> row count``.
Converter = Callable[[Any], Any] | None
OnChunk = Callable[[int], None]

_CHUNK = 2000
_encoder = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def converter_for(field: models.Field[Any, Any] | None) -> Converter:
    """How a CSV cell shows the field's values, or None to let ``csv`` write ``str(value)``."""
    if isinstance(field, (models.DateTimeField, models.DateField, models.TimeField)):
        return _isoformat
    if isinstance(field, models.JSONField):
        return _encoder.encode
    return None


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
    converted = [(index, convert) for index, convert in enumerate(converters) if convert]
    count = 0
    for chunk in _chunks(rows, _CHUNK):
        if converted:
            # Only the columns that need it are touched; the rest go to csv as they are.
            chunk = [_convert(row, converted) for row in chunk]
        writer.writerows(chunk)
        count += len(chunk)
        on_chunk(count)
    text.flush()
    text.detach()
    return count


def _convert(row: Sequence[Any], converted: list[tuple[int, Callable[[Any], Any]]]) -> list[Any]:
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
