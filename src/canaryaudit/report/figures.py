"""Inline SVG charts written by hand: no JavaScript, no external CSS or fonts, no network.

Every text that reaches the SVG (series names, labels, tooltips) goes through
``markupsafe.escape``, so a variant or metric name cannot inject markup. Charts
return ``Markup`` for the Jinja2 template (autoescape stays on for everything else).
Points carry an SVG ``<title>``: the browser shows it as a tooltip, without script.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, HEIGHT = 900, 400  # SVG user units of a full-width chart; CSS scales it to its column
HALF_WIDTH, HALF_HEIGHT = 470, 330  # a chart in a two-column grid: smaller canvas, so text stays legible
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 62, 18, 14, 46


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """A named line or point set; ``labels`` (one per point) are drawn beside the points."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str
    line: bool = True
    markers: bool = True
    dashed: bool = False
    labels: Sequence[str] = ()
    tooltips: Sequence[str] = ()
    emphasis: bool = False  # thicker line and larger markers (e.g. a Pareto front)
    legend: bool = True  # False: drawn but not listed (e.g. per-canary dots under a variant's line)
    radius: float = 0.0  # marker radius; 0: the default size
    bounds: Sequence[bool] = ()  # per point: True = a lower bound (open marker with an upward caret)
    whiskers: Sequence[tuple[float, float] | None] = ()  # per point: a vertical (low, high) range, e.g. min-max


@dataclass(frozen=True)
class Axis:
    """An axis; ``categories`` makes it categorical (point x values are then indices)."""

    label: str
    log: bool = False  # base-10 log scale; values <= 0 are dropped from the chart
    lo: float | None = None
    hi: float | None = None
    categories: Sequence[str] = ()


@dataclass(frozen=True)
class RefLine:
    """A horizontal (``axis='y'``) or vertical (``axis='x'``) reference line with a label."""

    value: float
    label: str
    axis: str = "y"


@dataclass(frozen=True)
class Chart:
    title: str
    x: Axis
    y: Axis
    series: Sequence[Series]
    refs: Sequence[RefLine] = field(default_factory=tuple)
    note: str = ""  # caption under the chart
    width: int = WIDTH
    height: int = HEIGHT


# ---------------------------------------------------------------- scales and ticks


@dataclass(frozen=True)
class Scale:
    """Maps data values in [lo, hi] to pixels in [start, stop] (linear or log10)."""

    lo: float
    hi: float
    start: float
    stop: float
    log: bool = False

    def __call__(self, value: float) -> float:
        f = math.log10 if self.log else float
        lo, hi = f(self.lo), f(self.hi)
        fraction = (f(value) - lo) / (hi - lo) if hi > lo else 0.5
        return self.start + fraction * (self.stop - self.start)


def nice_step(span: float, target_ticks: int = 6) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``target_ticks`` ticks."""
    raw = span / max(target_ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * power >= raw:
            return multiple * power
    return 10 * power


def linear_ticks(lo: float, hi: float, target_ticks: int = 6) -> list[float]:
    step = nice_step(hi - lo, target_ticks)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(count)]


def log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0**k for k in range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)]


def format_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:g}"


def _data_range(chart_axis: Axis, values: Sequence[float], extra: Sequence[float]) -> tuple[float, float]:
    """Axis limits: given ones, else the data (and reference lines) padded to round ticks."""
    if chart_axis.categories:
        return -0.5, len(chart_axis.categories) - 0.5
    pool = [v for v in (*values, *extra) if math.isfinite(v) and (v > 0 or not chart_axis.log)]
    lo = chart_axis.lo if chart_axis.lo is not None else (min(pool) if pool else (1.0 if chart_axis.log else 0.0))
    hi = chart_axis.hi if chart_axis.hi is not None else (max(pool) if pool else lo * 10 if chart_axis.log else 1.0)
    if chart_axis.log:
        lo = chart_axis.lo if chart_axis.lo is not None else 10 ** math.floor(math.log10(lo))
        hi = chart_axis.hi if chart_axis.hi is not None else 10 ** math.ceil(math.log10(hi))
        return (lo, hi) if hi > lo else (lo, lo * 10)
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    pad = 0.04 * (hi - lo)  # keep points off the frame: a point on the edge reads as clipped
    padded_lo = max(lo - pad, 0.0) if lo >= 0 else lo - pad  # non-negative data keeps a non-negative axis
    lo, hi = (lo if chart_axis.lo is not None else padded_lo), (hi if chart_axis.hi is not None else hi + pad)
    for _ in range(3):  # widen to whole steps until the step of the widened range is the same (ticks = ends)
        step = nice_step(hi - lo)
        lo = chart_axis.lo if chart_axis.lo is not None else math.floor(lo / step + 1e-9) * step
        hi = chart_axis.hi if chart_axis.hi is not None else math.ceil(hi / step - 1e-9) * step
        if nice_step(hi - lo) == step:
            break
    return lo, hi


def _ticks(chart_axis: Axis, lo: float, hi: float) -> list[tuple[float, str]]:
    if chart_axis.categories:
        return [(float(i), name) for i, name in enumerate(chart_axis.categories)]
    values = log_ticks(lo, hi) if chart_axis.log else linear_ticks(lo, hi)
    return [(v, format_tick(v)) for v in values]


# ---------------------------------------------------------------- drawing


def _visible(chart_axis: Axis, value: float) -> bool:
    return math.isfinite(value) and (value > 0 or not chart_axis.log)


def _axes_svg(chart: Chart, sx: Scale, sy: Scale) -> list[str]:
    left, right, top, bottom = MARGIN_LEFT, chart.width - MARGIN_RIGHT, MARGIN_TOP, chart.height - MARGIN_BOTTOM
    out = [f'<rect class="plot" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']
    for value, text in _ticks(chart.y, sy.lo, sy.hi):
        y = sy(value)
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
    for value, text in _ticks(chart.x, sx.lo, sx.hi):
        x = sx(value)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(text)}</text>')
    out.append(
        f'<text class="axis-label" x="{(left + right) / 2:.1f}" y="{chart.height - 8}" text-anchor="middle">'
        f"{escape(chart.x.label)}</text>"
    )
    out.append(
        f'<text class="axis-label" transform="translate(14 {(top + bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(chart.y.label)}</text>'
    )
    return out


def _refs_svg(chart: Chart, sx: Scale, sy: Scale) -> list[str]:
    out = []
    for ref in chart.refs:
        scale, chart_axis = (sy, chart.y) if ref.axis == "y" else (sx, chart.x)
        if not _visible(chart_axis, ref.value) or not min(scale.lo, scale.hi) <= ref.value <= max(scale.lo, scale.hi):
            continue
        pos = scale(ref.value)
        if ref.axis == "y":
            right = chart.width - MARGIN_RIGHT
            out.append(f'<line class="ref" x1="{MARGIN_LEFT}" x2="{right}" y1="{pos:.1f}" y2="{pos:.1f}"/>')
            out.append(f'<text class="ref-label" x="{MARGIN_LEFT + 6}" y="{pos - 5:.1f}">{escape(ref.label)}</text>')
        else:
            bottom = chart.height - MARGIN_BOTTOM
            out.append(f'<line class="ref" x1="{pos:.1f}" x2="{pos:.1f}" y1="{MARGIN_TOP}" y2="{bottom}"/>')
            out.append(f'<text class="ref-label" x="{pos + 5:.1f}" y="{MARGIN_TOP + 14}">{escape(ref.label)}</text>')
    return out


def _series_svg(chart: Chart, series: Series, sx: Scale, sy: Scale, clip: str) -> list[str]:
    keep = [
        (i, x, y) for i, (x, y) in enumerate(series.points) if _visible(chart.x, x) and _visible(chart.y, y)
    ]
    out = []
    width = 3.2 if series.emphasis else 2.0
    if series.line and len(keep) > 1:
        path = " ".join(f"{'M' if n == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for n, (_, x, y) in enumerate(keep))
        dash = ' stroke-dasharray="6 4"' if series.dashed else ""
        out.append(f'<path d="{path}" fill="none" stroke="{series.colour}" stroke-width="{width}"{dash} '
                   f'clip-path="url(#{clip})"/>')
    for i, x, _ in keep:
        if i < len(series.whiskers) and series.whiskers[i] is not None:
            out.append(_whisker_svg(chart, series, x, series.whiskers[i], sx, sy))
    if series.markers:
        for i, x, y in keep:
            out += _marker_svg(series, i, x, y, sx, sy)
    for i, x, y in keep:
        if i < len(series.labels) and series.labels[i]:
            # near the right edge the label goes to the left of its point, so it stays inside the chart
            left_side = sx(x) > chart.width - MARGIN_RIGHT - 110
            anchor, dx = ("end", -8) if left_side else ("start", 8)
            out.append(
                f'<text class="point-label" x="{sx(x) + dx:.1f}" y="{sy(y) - 8:.1f}" text-anchor="{anchor}">'
                f"{escape(series.labels[i])}</text>"
            )
    return out


def _marker_svg(series: Series, i: int, x: float, y: float, sx: Scale, sy: Scale) -> list[str]:
    """A point's marker with its tooltip and data values; a lower bound is an open circle under a caret."""
    radius = series.radius or (5.5 if series.emphasis else 3.6)
    tip = series.tooltips[i] if i < len(series.tooltips) else f"{series.name}: {format_tick(x)}, {format_tick(y)}"
    bound = i < len(series.bounds) and bool(series.bounds[i])
    px, py = sx(x), sy(y)
    fill, stroke, width = ("#fff", series.colour, 1.5) if bound else (series.colour, "#fff", 1)
    flag = ' data-lower-bound="true"' if bound else ""
    out = [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{radius}" fill="{fill}" stroke="{stroke}" stroke-width="{width}" '
           f'data-x="{x:.10g}" data-y="{y:.10g}"{flag}><title>{escape(tip)}</title></circle>']
    if bound:
        top = py - radius - 2
        out.append(f'<path class="caret" d="M{px - radius:.1f},{top + radius:.1f} L{px:.1f},{top:.1f} '
                   f'L{px + radius:.1f},{top + radius:.1f}" fill="none" stroke="{series.colour}" stroke-width="1.5"/>')
    return out


def _whisker_svg(chart: Chart, series: Series, x: float, span: tuple[float, float], sx: Scale, sy: Scale) -> str:
    """A vertical range with short caps at both ends (values off a log axis are dropped)."""
    low, high = span
    if not (_visible(chart.y, low) and _visible(chart.y, high)):
        return ""
    px, cap = sx(x), 5.0
    path = (f"M{px:.1f},{sy(low):.1f} L{px:.1f},{sy(high):.1f} M{px - cap:.1f},{sy(low):.1f} L{px + cap:.1f},{sy(low):.1f} "
            f"M{px - cap:.1f},{sy(high):.1f} L{px + cap:.1f},{sy(high):.1f}")
    return f'<path class="whisker" d="{path}" fill="none" stroke="{series.colour}" stroke-width="1.6"/>'


def _legend_html(series: Sequence[Series]) -> str:
    items = []
    for s in [s for s in series if s.legend and s.name]:
        style = "dashed" if s.dashed else "solid"
        items.append(
            f'<span class="legend-item"><span class="swatch {style}" style="border-color:{s.colour}"></span>'
            f"{escape(s.name)}</span>"
        )
    if any(any(s.bounds) for s in series):
        items.append('<span class="legend-item"><span class="bound-key">^</span>open marker: a lower bound (≥)</span>')
    return f'<div class="legend">{"".join(items)}</div>' if items else ""


def _clip_id(chart: Chart) -> str:
    """A document-unique id for the chart's clip path, derived from its content (renders stay deterministic)."""
    digest = hashlib.sha1(repr((chart.title, chart.x, chart.y, [(s.name, list(s.points)) for s in chart.series])).encode())
    return f"clip-{digest.hexdigest()[:12]}"


def _clip_path(chart: Chart, clip: str) -> str:
    """Lines stop at the plot area (a log axis can leave part of a curve below its lowest tick)."""
    w, h = chart.width - MARGIN_LEFT - MARGIN_RIGHT, chart.height - MARGIN_TOP - MARGIN_BOTTOM
    rect = f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{w}" height="{h}"/>'
    return f'<defs><clipPath id="{clip}">{rect}</clipPath></defs>'


def render_chart(chart: Chart) -> Markup:
    """The chart as a ``<figure>`` holding an inline SVG, an HTML legend and the caption."""
    xs = [x for s in chart.series for x, _ in s.points]
    ys = [y for s in chart.series for _, y in s.points] + [v for s in chart.series for w in s.whiskers if w for v in w]
    x_lo, x_hi = _data_range(chart.x, xs, [r.value for r in chart.refs if r.axis == "x"])
    y_lo, y_hi = _data_range(chart.y, ys, [r.value for r in chart.refs if r.axis == "y"])
    sx = Scale(x_lo, x_hi, MARGIN_LEFT, chart.width - MARGIN_RIGHT, chart.x.log and not chart.x.categories)
    sy = Scale(y_lo, y_hi, chart.height - MARGIN_BOTTOM, MARGIN_TOP, chart.y.log)
    clip = _clip_id(chart)
    body = [_clip_path(chart, clip), *_axes_svg(chart, sx, sy), *_refs_svg(chart, sx, sy)]
    for series in chart.series:
        body += _series_svg(chart, series, sx, sy, clip)
    svg = (
        f'<svg class="chart" viewBox="0 0 {chart.width} {chart.height}" role="img" aria-label="{escape(chart.title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(chart.title)}</title>{"".join(body)}</svg>'
    )
    caption = f"<figcaption>{escape(chart.note)}</figcaption>" if chart.note else ""
    return Markup(
        f'<figure class="figure"><div class="figure-title">{escape(chart.title)}</div>{svg}'
        f"{_legend_html(chart.series)}{caption}</figure>"
    )


def bar_rows(rows: Sequence[tuple[str, float | None, str]], maximum: float, unit: str = "") -> Markup:
    """Horizontal bars as HTML (label, value, colour); a None value shows as 'n/a'."""
    out = []
    for label, value, bar_colour in rows:
        if value is None or not math.isfinite(value):
            shown, width = ("∞" if value is not None else "n/a"), (100.0 if value is not None else 0.0)
        else:
            shown, width = f"{value:.3g}{unit}", 100.0 * min(max(value / maximum, 0.0), 1.0) if maximum > 0 else 0.0
        out.append(
            f'<div class="bar-row"><span class="bar-label">{escape(label)}</span>'
            f'<span class="bar-track"><span class="bar" style="width:{width:.1f}%;background:{bar_colour}"></span></span>'
            f'<span class="bar-value num">{escape(shown)}</span></div>'
        )
    return Markup(f'<div class="bars">{"".join(out)}</div>')
