"""Server-side SVG charts for the dashboard: no JavaScript, no CDN, nothing fetched by the browser.

Each function returns one ``<svg>`` element as a ``SafeString`` built from numbers the caller computed (the
selectors aggregate in SQL). Every text that reaches the SVG (titles, labels, legend, tooltips) is escaped here.
The element carries no ``xmlns``: an ``<svg>`` inline in HTML needs none, and the page then holds no URL at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT = 'font-family="sans-serif" font-size="11"'
RED = "#ba2121"
OK = "#447e9b"
AXIS = "#666666"


@dataclass(frozen=True)
class Series:
    """One stacked layer: its name (legend), one value per x label, its fill colour (``#rrggbb``)."""

    name: str
    values: Sequence[int]
    color: str


@dataclass(frozen=True)
class RateBar:
    """One horizontal bar of a rate chart: a percentage (None when there is nothing to divide by)."""

    label: str
    percent: Decimal | None
    over: bool
    note: str = ""


def _num(value: float) -> str:
    """A coordinate: one decimal, no trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten at or above ``value`` (at least 1): a round top for the axis."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover  (the loop always returns)


def _svg(*, width: int, height: int, title: str, css_class: str, body: list[str]) -> SafeString:
    parts = [
        f'<svg class="{escape(css_class)}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        *body,
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308  (every text above is escaped; numbers are formatted here)


def stacked_bar_chart(*, title: str, labels: Sequence[str], series: Sequence[Series], width: int = 820,
                      height: int = 280, label_every: int = 5) -> SafeString:
    """Vertical bars, one per label, each stacked from ``series`` (bottom first), with a y axis (0, half, top),
    every ``label_every``-th x label, and a legend on the right. A zero value draws nothing."""
    left, right, top, bottom = 44, 150, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    y_max = _nice_ceiling(max(totals, default=0))
    slot = plot_w / n
    bar_w = max(slot * 0.8, 1)
    base_y = top + plot_h
    body: list[str] = [f'<g class="axis" {FONT} fill="{AXIS}">']
    for tick in (0, y_max / 2, y_max):
        y = base_y - plot_h * tick / y_max
        tick_text = _num(tick)
        body.append(f'<line x1="{left}" y1="{_num(y)}" x2="{left + plot_w}" y2="{_num(y)}" stroke="#dddddd"/>')
        body.append(f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">{escape(tick_text)}</text>')
    body.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" stroke="{AXIS}"/>')
    for i, label in enumerate(labels):
        if i % label_every == 0 or i == len(labels) - 1:
            x = left + slot * i + slot / 2
            body.append(f'<text x="{_num(x)}" y="{base_y + 16}" text-anchor="middle">{escape(label)}</text>')
    body.append("</g>")
    body.append('<g class="bars">')
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        y = float(base_y)
        for s in series:
            value = s.values[i]
            if not value:
                continue
            h = plot_h * value / y_max
            y -= h
            tip = f"{label} — {s.name}: {value}"
            body.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" height="{_num(h)}" '
                        f'fill="{escape(s.color)}"><title>{escape(tip)}</title></rect>')
    body.append("</g>")
    body.append(f'<g class="legend" {FONT}>')
    for j, s in enumerate(series):
        y = top + 4 + j * 18
        body.append(f'<rect x="{left + plot_w + 16}" y="{y}" width="12" height="12" fill="{escape(s.color)}"/>')
        body.append(f'<text x="{left + plot_w + 34}" y="{y + 10}">{escape(s.name)}</text>')
    body.append("</g>")
    return _svg(width=width, height=height, title=title, css_class="bo-chart bo-stacked", body=body)


def rate_bar_chart(*, title: str, bars: Sequence[RateBar], threshold: Decimal, width: int = 820) -> SafeString:
    """Horizontal bars of percentages against a dashed threshold line; a bar over the threshold is red
    (``fill`` and the ``bo-over`` class). The scale reaches at least twice the threshold."""
    left, right, top, row_h = 190, 120, 22, 22
    height = top + row_h * max(len(bars), 1) + 10
    plot_w = width - left - right
    biggest = max((float(b.percent) for b in bars if b.percent is not None), default=0.0)
    x_max = max(float(threshold) * 2, biggest, 0.1)
    limit_x = left + plot_w * float(threshold) / x_max
    body: list[str] = [f'<g {FONT}>']
    for i, bar in enumerate(bars):
        y = top + i * row_h
        body.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(bar.label)}</text>')
        if bar.percent is None:
            text = bar.note or "no debits"
        else:
            w = plot_w * float(bar.percent) / x_max
            css = "bo-bar bo-over" if bar.over else "bo-bar"
            fill = RED if bar.over else OK
            text = f"{bar.percent}%" + (f" {bar.note}" if bar.note else "")
            body.append(f'<rect class="{css}" x="{left}" y="{y + 3}" width="{_num(w)}" height="{row_h - 6}" '
                        f'fill="{fill}"><title>{escape(bar.label)}: {escape(text)}</title></rect>')
        color = RED if bar.over else AXIS
        body.append(f'<text x="{left + plot_w + 6}" y="{y + 14}" fill="{color}">{escape(text)}</text>')
    body.append(f'<line class="bo-threshold" x1="{_num(limit_x)}" y1="{top - 6}" x2="{_num(limit_x)}" '
                f'y2="{height - 6}" stroke="{RED}" stroke-dasharray="4 3"/>')
    body.append(f'<text x="{_num(limit_x)}" y="{top - 9}" text-anchor="middle" fill="{RED}">'
                f'limit {escape(str(threshold))}%</text>')
    body.append("</g>")
    return _svg(width=width, height=height, title=title, css_class="bo-chart bo-rates", body=body)
