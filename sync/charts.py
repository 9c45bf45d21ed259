"""Small SVG charts for the HTML report, with no dependency and nothing fetched.

Each function returns one `<svg>` element as text: well-formed XML (it parses on its own), every
label escaped, sized in pixels and styled with presentation attributes only, so it can be inlined
in an HTML page as it is. Bars are horizontal, so long labels (rule ids, people's names) stay
readable; a bar's length is its value over the axis's end (`nice_ceiling` of the largest value
drawn), and a zero value draws a zero-width bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "Series", "bar_chart", "grouped_bar_chart", "nice_ceiling"]

Formatter = Callable[[float], str]

_WIDTH = 760
_LABEL_WIDTH = 240  # labels, right-aligned against the plot
_NOTE_WIDTH = 150  # the text after the longest bar
_PLOT_WIDTH = _WIDTH - _LABEL_WIDTH - _NOTE_WIDTH
_TITLE_HEIGHT = 30
_AXIS_HEIGHT = 24
_ROW = 24  # one bar of `bar_chart`
_GROUP_BAR = 11  # one bar of a group in `grouped_bar_chart`
_GROUP_GAP = 12
_LABEL_CHARS = 36  # longer labels are cut, the whole text stays in the bar's tooltip
_TICKS = 5
_GRID = "#d9d9d9"
_INK = "#333333"


@dataclass(frozen=True)
class Bar:
    """One bar of `bar_chart`: `label` on its left, `value` its length, `note` after it."""

    label: str
    value: float
    note: str = ""
    color: str = "#4c78a8"


@dataclass(frozen=True)
class Series:
    """One series of `grouped_bar_chart`: a value per category, all drawn in `color`."""

    name: str
    values: tuple[float, ...]
    color: str


def _plain(value: float) -> str:
    return f"{value:g}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at least `value`: where an axis ends (1 when `value` ≤ 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _text(x: float, y: float, content: str, *, anchor: str = "start", extra: str = "") -> str:
    shown = content if len(content) <= _LABEL_CHARS else content[: _LABEL_CHARS - 1] + "…"
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(shown)}</text>'


def _length(value: float, scale: float) -> float:
    return max(value, 0.0) / scale * _PLOT_WIDTH


def _bar(x: float, y: float, width: float, height: float, color: str, tooltip: str) -> str:
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.2f}" height="{height:.1f}" '
        f'fill="{escape(color)}"><title>{escape(tooltip)}</title></rect>'
    )


def _axis(scale: float, top: float, bottom: float, fmt: Formatter) -> list[str]:
    """Grid lines and tick labels from 0 to `scale` across the plot, labels under `bottom`."""
    parts = []
    for index in range(_TICKS + 1):
        value = scale * index / _TICKS
        x = _LABEL_WIDTH + _length(value, scale)
        parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{_GRID}"/>')
        parts.append(_text(x, bottom + 16, fmt(value), anchor="middle", extra=' fill="#666666"'))
    return parts


def _svg(title: str, height: float, parts: Sequence[str]) -> str:
    head = (
        f'<svg width="{_WIDTH}" height="{height:.0f}" viewBox="0 0 {_WIDTH} {height:.0f}" role="img" '
        f'aria-label="{escape(title)}" font-family="system-ui, sans-serif" font-size="12" fill="{_INK}">'
    )
    heading = f'<text x="0" y="18" font-size="14" font-weight="600">{escape(title)}</text>'
    return "\n".join([head, f"<title>{escape(title)}</title>", heading, *parts, "</svg>"])


def _empty(title: str) -> str:
    return _svg(title, _TITLE_HEIGHT + _ROW, [_text(0, _TITLE_HEIGHT + 16, "no data yet", extra=' fill="#666666"')])


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    fmt: Formatter = _plain,
    target: float | None = None,
    target_label: str = "target",
) -> str:
    """One horizontal bar per item, top to bottom, with an optional dashed vertical line at
    `target` labelled `target_label`; `fmt` writes the axis's tick values. No bars: a chart that
    says so."""
    if not bars:
        return _empty(title)
    scale = nice_ceiling(max([bar.value for bar in bars] + ([] if target is None else [target])))
    top = _TITLE_HEIGHT + (14 if target is not None else 0)
    bottom = top + len(bars) * _ROW
    parts = _axis(scale, top, bottom, fmt)
    for index, bar in enumerate(bars):
        y = top + index * _ROW
        width = _length(bar.value, scale)
        parts.append(_text(_LABEL_WIDTH - 8, y + _ROW / 2 + 4, bar.label, anchor="end"))
        tooltip = f"{bar.label}: {bar.note or fmt(bar.value)}"
        parts.append(_bar(_LABEL_WIDTH, y + 4, width, _ROW - 8, bar.color, tooltip))
        parts.append(_text(_LABEL_WIDTH + width + 6, y + _ROW / 2 + 4, bar.note))
    if target is not None:
        x = _LABEL_WIDTH + _length(target, scale)
        parts.append(
            f'<line class="target" x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
            'stroke="#222222" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        parts.append(_text(x, top - 7, target_label, anchor="middle"))
    return _svg(title, bottom + _AXIS_HEIGHT, parts)


def grouped_bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    fmt: Formatter = _plain,
) -> str:
    """Per category (top to bottom) one bar per series, each labelled with its value by `fmt`,
    under a legend of the series. No categories or no series: a chart that says so. Every series
    must have one value per category."""
    if not categories or not series:
        return _empty(title)
    for one in series:
        if len(one.values) != len(categories):
            raise ValueError(f"series {one.name!r}: {len(one.values)} values for {len(categories)} categories")
    scale = nice_ceiling(max(value for one in series for value in one.values))
    legend_y = _TITLE_HEIGHT + 4
    parts = []
    x = float(_LABEL_WIDTH)
    for one in series:
        parts.append(f'<rect x="{x:.1f}" y="{legend_y:.1f}" width="10" height="10" fill="{escape(one.color)}"/>')
        parts.append(_text(x + 14, legend_y + 9, one.name))
        x += 24 + 7 * len(one.name)
    top = legend_y + 22
    group = len(series) * _GROUP_BAR + _GROUP_GAP
    bottom = top + len(categories) * group
    parts += _axis(scale, top, bottom, fmt)
    for index, category in enumerate(categories):
        y = top + index * group + _GROUP_GAP / 2
        parts.append(_text(_LABEL_WIDTH - 8, y + len(series) * _GROUP_BAR / 2 + 4, category, anchor="end"))
        for offset, one in enumerate(series):
            value = one.values[index]
            width = _length(value, scale)
            bar_y = y + offset * _GROUP_BAR
            parts.append(
                _bar(_LABEL_WIDTH, bar_y + 1, width, _GROUP_BAR - 2, one.color, f"{category}: {one.name} {fmt(value)}")
            )
            parts.append(_text(_LABEL_WIDTH + width + 5, bar_y + _GROUP_BAR - 2, fmt(value), extra=' font-size="10"'))
    return _svg(title, bottom + _AXIS_HEIGHT, parts)
