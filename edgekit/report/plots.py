"""Inline SVG charts for the HTML reports: a bar chart, a line chart and a histogram.

Self-contained markup (no scripts, no fonts or stylesheets to fetch, no xmlns URL: inline SVG in HTML5 needs none).
Every value axis includes zero, so a bar's length is its value; axes are labelled; series and groups get distinct
colours from one palette and a legend. Each chart is an <svg role="img"> whose aria-label says what it shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Tableau 10: distinct in hue and still apart in greyscale print; the first is used when there is one series
PALETTE = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac")
_FONT = 'font-family="system-ui,sans-serif"'
_CHAR_PX = 7.2  # width of a 12 px label character (generous: labels must not run off the left edge)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    high: float | None = None  # the top of a low-high range, drawn as a lighter extension with a whisker
    group: str = ""  # bars of one group share a colour and a legend entry


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]
    dashed: bool = False  # a reference level rather than a measured curve


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (lo <= 0 <= hi is the caller's job): steps of 1, 2 or 5 x 10^k; whole
    steps for counts."""
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(step, 1) if integer else step
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    if last <= first:
        last = first + 1
    return [round(i * step, 12) for i in range(first, last + 1)]


def fmt_value(v: float) -> str:
    """Short label for a tick or a value: 3 significant digits, no exponent below a million."""
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


_TITLE_H = 22  # the visible title's band above every chart


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    """The chart with its title drawn on top (and as the accessible name); body coordinates start below the title."""
    t = escape(title)
    height += _TITLE_H
    return (f'<svg class="plot" role="img" aria-label="{t}" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" {_FONT} font-size="12"><title>{t}</title>'
            f'<text x="4" y="15" font-size="14" font-weight="bold">{t}</text>'
            f'<g transform="translate(0 {_TITLE_H})">' + "".join(body) + "</g></svg>")


def _text(x: float, y: float, s: str, anchor: str = "start", **attrs) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(s)}</text>'


def _legend(names: list[str], x: float, y: float, dashed: set[str] = frozenset()) -> list[str]:
    """One row of colour keys starting at (x, y)."""
    out = []
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 18:.1f}" y2="{y - 4:.1f}" stroke="{colour}" '
                   f'stroke-width="6"{dash}/>')
        out.append(_text(x + 24, y, name))
        x += 40 + len(name) * _CHAR_PX
    return out


def bar_chart(bars: list[Bar], *, title: str, value_label: str, width: float = 880) -> str:
    """Horizontal bars, one per row, value axis from zero (or below, for negative values) to the largest value."""
    groups = list(dict.fromkeys(b.group for b in bars))
    label_w = min(300.0, max(len(b.label) for b in bars) * _CHAR_PX + 12)
    top = 30 if len(groups) > 1 else 12
    row, left, right = 24, label_w, width - 70
    height = top + row * len(bars) + 44
    values = [v for b in bars for v in (b.value, b.high) if v is not None]
    ticks = nice_ticks(min(0.0, *values), max(0.0, *values))
    lo, hi = ticks[0], ticks[-1]
    x = lambda v: left + (v - lo) / (hi - lo) * (right - left)  # noqa: E731
    axis_y = top + row * len(bars)
    body = _legend(groups, left, 16) if len(groups) > 1 else []
    for t in ticks:
        body.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{axis_y}" stroke="#ddd"/>')
        body.append(_text(x(t), axis_y + 16, fmt_value(t), "middle"))
    for i, b in enumerate(bars):
        colour = PALETTE[groups.index(b.group) % len(PALETTE)]
        y = top + i * row + 4
        x0, x1 = sorted((x(0), x(b.value)))
        label = b.label if len(b.label) * _CHAR_PX < label_w else b.label[: int(label_w / _CHAR_PX) - 2] + "…"
        body.append(_text(left - 6, y + 12, label, "end"))
        shown = fmt_value(b.value)
        body.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{row - 8}" fill="{colour}">'
                    f"<title>{escape(b.label)}: {shown}</title></rect>")
        end = x(b.value)
        if b.high is not None and b.high != b.value:
            body.append(f'<rect x="{x(b.value):.1f}" y="{y}" width="{x(b.high) - x(b.value):.1f}" height="{row - 8}" '
                        f'fill="{colour}" fill-opacity="0.35"/>')
            body.append(f'<line x1="{x(b.high):.1f}" y1="{y - 2}" x2="{x(b.high):.1f}" y2="{y + row - 6}" stroke="{colour}" '
                        'stroke-width="2"/>')
            shown, end = f"{fmt_value(b.value)}-{fmt_value(b.high)}", x(b.high)
        body.append(_text(max(end, x(0)) + 4, y + 12, shown))
    body.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#333"/>')
    body.append(f'<line x1="{left}" y1="{axis_y}" x2="{right}" y2="{axis_y}" stroke="#333"/>')
    body.append(_text((left + right) / 2, axis_y + 36, value_label, "middle", font_weight="bold"))
    return _svg(width, height, title, body)


def _xy_frame(xs: list[float], ys: list[float], *, x_label: str, y_label: str, width: float, height: float,
              top: float, y_integer: bool = False):
    """Axes from zero to the data's maximum on both sides; returns (body, x mapping, y mapping)."""
    left, right, bottom = 64, width - 20, height - 44
    xt = nice_ticks(min(0.0, *xs), max(0.0, *xs))
    yt = nice_ticks(min(0.0, *ys), max(0.0, *ys), integer=y_integer)
    x = lambda v: left + (v - xt[0]) / (xt[-1] - xt[0]) * (right - left)  # noqa: E731
    y = lambda v: bottom - (v - yt[0]) / (yt[-1] - yt[0]) * (bottom - top)  # noqa: E731
    body = []
    for t in yt:
        body.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{right}" y2="{y(t):.1f}" stroke="#ddd"/>')
        body.append(_text(left - 6, y(t) + 4, fmt_value(t), "end"))
    for t in xt:
        body.append(_text(x(t), bottom + 16, fmt_value(t), "middle"))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>')
    body.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>')
    body.append(_text((left + right) / 2, height - 8, x_label, "middle", font_weight="bold"))
    body.append(_text(14, (top + bottom) / 2, y_label, "middle", font_weight="bold",
                      transform=f"rotate(-90 14 {(top + bottom) / 2:.1f})"))
    return body, x, y


def line_chart(series: list[Series], *, title: str, x_label: str, y_label: str, width: float = 880,
               height: float = 320) -> str:
    """Lines with a marker and its value at every point; dashed series are reference levels (no markers)."""
    xs = [px for s in series for px, _ in s.points]
    ys = [py for s in series for _, py in s.points]
    body, x, y = _xy_frame(xs, ys, x_label=x_label, y_label=y_label, width=width, height=height, top=34)
    body += _legend([s.name for s in series], 64, 16, {s.name for s in series if s.dashed})
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if s.dashed:
            continue
        for px, py in s.points:
            body.append(f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3.5" fill="{colour}">'
                        f"<title>{escape(s.name)}: {fmt_value(px)}, {fmt_value(py)}</title></circle>")
            body.append(_text(x(px), y(py) - 7, fmt_value(py), "middle", font_size="10", fill=colour))
    return _svg(width, height, title, body)


def histogram(edges: list[float], counts: list[int], *, title: str, x_label: str, y_label: str = "count",
              width: float = 880, height: float = 280) -> str:
    """Adjacent bars over [edges[i], edges[i+1]); the x axis from zero when the edges are non-negative."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram: {len(edges)} edges for {len(counts)} counts; fix: pass one more edge than counts")
    body, x, y = _xy_frame(list(edges), [float(c) for c in counts], x_label=x_label, y_label=y_label, width=width,
                           height=height, top=14, y_integer=True)
    for lo, hi, c in zip(edges, edges[1:], counts):
        if c:
            body.append(f'<rect x="{x(lo):.1f}" y="{y(c):.1f}" width="{max(x(hi) - x(lo) - 1, 1):.1f}" '
                        f'height="{y(0) - y(c):.1f}" fill="{PALETTE[0]}"><title>{fmt_value(lo)}-{fmt_value(hi)}: '
                        f"{c}</title></rect>")
    return _svg(width, height, title, body)
