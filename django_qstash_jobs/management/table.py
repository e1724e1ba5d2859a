"""Plain-text tables for the management commands: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence


def column_widths(rows: Sequence[Sequence[str]]) -> list[int]:
    """The width of each column: its widest cell among ``rows`` (the header included)."""
    return [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]


def table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One row, each cell padded to its column's width, with no trailing spaces."""
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
