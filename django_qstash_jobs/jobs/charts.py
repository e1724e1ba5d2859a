"""Geometry of a stacked horizontal bar chart, drawn as inline SVG by the report templates.

Inline SVG needs no JavaScript and no network, renders the same in a browser and in WeasyPrint,
and stays sharp when printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Blue, red, grey: told apart with the common colour-vision deficiencies, and every value is
#: also in the legend, the SVG description and the report's table.
PALETTE = ("#1d4ed8", "#b91c1c", "#6b7280", "#047857", "#a16207")

_LABEL_WIDTH = 180
_VALUE_WIDTH = 64
_LEGEND_HEIGHT = 32
_ROW_HEIGHT = 28
_BAR_HEIGHT = 16
_MAX_LABEL = 26


@dataclass(frozen=True)
class Segment:
    """One part of a bar (e.g. the failed jobs of a type)."""

    label: str
    value: int


@dataclass(frozen=True)
class Bar:
    label: str
    segments: tuple[Segment, ...]

    @property
    def total(self) -> int:
        return sum(segment.value for segment in self.segments)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    #: Shown as the rectangle's tooltip (``<title>``).
    title: str


@dataclass(frozen=True)
class Row:
    label: str
    #: The baseline of the label and of the total.
    text_y: float
    rects: tuple[Rect, ...]
    total: int
    total_x: float


@dataclass(frozen=True)
class LegendItem:
    label: str
    color: str
    x: float


@dataclass(frozen=True)
class BarChart:
    title: str
    #: What the chart shows, in words: the SVG's ``<desc>`` for screen readers.
    description: str
    width: int
    height: int
    label_width: int
    rows: tuple[Row, ...]
    legend: tuple[LegendItem, ...]


def bar_chart(bars: Sequence[Bar], *, title: str, width: int = 640) -> BarChart:
    """Lay out ``bars``: one row each, segments side by side, scaled to the longest bar."""
    plot_width = width - _LABEL_WIDTH - _VALUE_WIDTH
    longest = max((bar.total for bar in bars), default=0) or 1
    series = [segment.label for segment in bars[0].segments] if bars else []
    colors = {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(series)}
    rows = []
    for index, bar in enumerate(bars):
        top = _LEGEND_HEIGHT + index * _ROW_HEIGHT
        bar_y = top + (_ROW_HEIGHT - _BAR_HEIGHT) / 2
        x = float(_LABEL_WIDTH)
        rects = []
        for segment in bar.segments:
            if segment.value <= 0:
                continue
            segment_width = round(plot_width * segment.value / longest, 2)
            rects.append(
                Rect(
                    x=round(x, 2),
                    y=bar_y,
                    width=segment_width,
                    height=_BAR_HEIGHT,
                    color=colors[segment.label],
                    title=f"{bar.label}: {segment.value} {segment.label.lower()}",
                )
            )
            x += segment_width
        rows.append(
            Row(
                label=_shorten(bar.label),
                text_y=bar_y + _BAR_HEIGHT - 3,
                rects=tuple(rects),
                total=bar.total,
                total_x=round(x + 6, 2),
            )
        )
    legend = tuple(
        LegendItem(label=label, color=colors[label], x=_LABEL_WIDTH + index * 150)
        for index, label in enumerate(series)
    )
    description = "; ".join(
        f"{bar.label}: "
        + ", ".join(f"{segment.value} {segment.label.lower()}" for segment in bar.segments)
        for bar in bars
    )
    return BarChart(
        title=title,
        description=description or "No data.",
        width=width,
        height=_LEGEND_HEIGHT + len(bars) * _ROW_HEIGHT + 8,
        label_width=_LABEL_WIDTH,
        rows=tuple(rows),
        legend=legend,
    )


def _shorten(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"
