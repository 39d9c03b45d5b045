"""Per-alert-instance charts for the backtest report: hand-written SVG, no script, no asset.

A rule author tunes a threshold or a `for` by seeing the evaluated value against the
threshold, with the periods the alert was pending and firing shaded. Everything here is a
pure function of its arguments; layout decisions that tests check in a browser (tick labels
that never overlap, a legend that wraps instead of running off) are made from text widths
estimated for an 11px monospace font, with a margin.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

SEVERITY_COLOR = {"critical": "#c9302c", "warning": "#d97706", "info": "#2a6ebb"}
OTHER_SEVERITY_COLOR = "#7b5ea7"  # a team's own severity word (`page`, `ticket`)
VALUE_COLOR = "#222"
FONT_PX = 11
CHAR_PX = 7.0  # monospace advance is 0.6em (6.6px at 11px): rounded up so estimates never undershoot
TICK_GAP_PX = 14  # at least this much blank between two tick labels
# tick steps for a time axis, seconds: aligned to the epoch (UTC), so days start at midnight
TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400,
)  # fmt: skip


def severity_color(severity: str) -> str:
    return SEVERITY_COLOR.get(severity, OTHER_SEVERITY_COLOR)


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of time an alert instance was pending or firing; `end` None: still so at the end."""

    kind: str  # "pending" | "firing"
    start: float
    end: float | None = None


@dataclass(frozen=True, slots=True)
class InstanceChart:
    """What one chart shows: one alert instance on one side of a backtest.

    `points` are (tick, value) with NaN where the rule had no value (no sample in its window):
    the line breaks there instead of inventing a value. `threshold`/`op` are None when the
    value cannot be compared to a constant (then no threshold line is drawn, and `note` says why).
    """

    title: str
    severity: str
    start: float  # the time axis
    end: float
    points: tuple[tuple[float, float], ...]
    periods: tuple[Period, ...]
    value_label: str
    threshold: float | None = None
    op: str | None = None
    for_s: float = 0.0
    side: str = "A"
    note: str = ""


# --------------------------------------------------------------------------- numbers and ticks


def value_text(v: float) -> str:
    """Short enough for a y axis (at most 7 characters): `85.5`, `0.0123`, `12.3k`, `4.5M`, `-12µ`."""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    for limit, scale, suffix in ((1e12, 1e12, "T"), (1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if a >= limit:
            return f"{v / scale:.4g}{suffix}"
    if a >= 1:
        return f"{v:.4g}"
    if a >= 1e-2:
        return f"{v:.3g}"
    for scale, suffix in ((1e-3, "m"), (1e-6, "\u00b5"), (1e-9, "n")):
        if a >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.0e}"


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round values (1, 2, 2.5, 5 x 10^k) covering [lo, hi], at most `max_ticks` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, max_ticks - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    k = 0
    while (t := first + k * step) <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else float(round(t, 12)))
        k += 1
    return out[:max_ticks]


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def time_label(t: float, step: float, multi_day: bool) -> str:
    d = _utc(t)
    if step >= 86400:
        return d.strftime("%m-%d")
    if step < 60:
        return d.strftime("%H:%M:%S")
    return d.strftime("%m-%d %H:%M") if multi_day else d.strftime("%H:%M")


def time_ticks(start: float, end: float, plot_w: float) -> tuple[float, list[tuple[float, str]]]:
    """The finest epoch-aligned step whose labels leave `TICK_GAP_PX` between neighbours.

    Returns (step, [(t, label)]). Labels are centred on their tick, so two neighbours are
    apart by one step's width in pixels minus one label width.
    """
    span = max(end - start, 1e-9)
    multi_day = _utc(start).date() != _utc(end).date()
    for step in TIME_STEPS:
        ticks = [k * step for k in range(math.ceil(start / step), math.floor(end / step) + 1)]
        if not ticks:
            continue
        labels = [time_label(t, step, multi_day) for t in ticks]
        widest = max(len(s) for s in labels) * CHAR_PX
        if step / span * plot_w >= widest + TICK_GAP_PX:
            return step, list(zip(ticks, labels, strict=True))
    # longer than the largest step allows: the ends alone
    return span, [(start, time_label(start, 86400, True)), (end, time_label(end, 86400, True))]


def downsample(points: Sequence[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """At most ~2 points per bucket (its min and max, in time order): spikes survive.

    A NaN in a bucket is kept (once) so the line still breaks at a gap.
    """
    if len(points) <= 2 * buckets or buckets <= 0:
        return list(points)
    t0, t1 = points[0][0], points[-1][0]
    width = (t1 - t0) / buckets or 1.0
    out: list[tuple[float, float]] = []
    cur: list[tuple[float, float]] = []
    cur_b = 0

    def flush() -> None:
        finite = [p for p in cur if not math.isnan(p[1])]
        if finite:
            lo = min(finite, key=lambda p: p[1])
            hi = max(finite, key=lambda p: p[1])
            out.extend(sorted({lo, hi}))
        if len(finite) < len(cur):
            gap = next(p for p in cur if math.isnan(p[1]))
            out.append(gap)
            out.sort(key=lambda p: p[0])

    for p in points:
        b = min(buckets - 1, int((p[0] - t0) / width))
        if b != cur_b and cur:
            flush()
            cur = []
        cur_b = b
        cur.append(p)
    if cur:
        flush()
    return out


# --------------------------------------------------------------------------- the chart


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int  # y of the x axis

    @property
    def plot_w(self) -> int:
        return self.right - self.left

    @property
    def plot_h(self) -> int:
        return self.bottom - self.top


def _legend(chart: InstanceChart, color: str) -> list[tuple[str, str]]:
    """(kind, text) of each legend entry, in drawing order."""
    items = [("value", chart.value_label)]
    if chart.threshold is not None and math.isfinite(chart.threshold):
        items.append(
            ("threshold", f"threshold {chart.op or ''} {value_text(chart.threshold)}".replace("  ", " "))
        )
    items.append(("pending", "pending" + (f" (for {_dur(chart.for_s)})" if chart.for_s else "")))
    items.append(("firing", f"firing ({chart.severity})"))
    return items


def _dur(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (sec, "s")) if n) or "0s"


def _legend_rows(
    items: Sequence[tuple[str, str]], x0: float, max_x: float
) -> list[list[tuple[float, str, str]]]:
    """Legend entries placed left to right, wrapping to a new row rather than overlapping."""
    rows: list[list[tuple[float, str, str]]] = [[]]
    x = x0
    for kind, text in items:
        w = 18 + len(text) * CHAR_PX
        if rows[-1] and x + w > max_x:
            rows.append([])
            x = x0
        rows[-1].append((x, kind, text))
        x += w + 18
    return rows


def chart_svg(chart: InstanceChart, *, ident: str, width: int = 1100, height: int = 240) -> str:
    """One chart: value line, dashed threshold, shaded pending (hatched) and firing periods,
    a legend, labelled axes. `ident` makes the hatch pattern's id unique in the page.

    Shaded regions carry `class="period pending|firing"` and `data-start`/`data-end` (epoch
    seconds, clipped to the chart), the plot area `class="plot"` with `data-t0`/`data-t1`:
    what a browser test needs to check positions against the axis.
    """
    start, end = chart.start, chart.end
    if not end > start:
        end = start + 60
    color = severity_color(chart.severity)
    esc = html.escape
    legend = _legend_rows(_legend(chart, color), 76, width - 10)
    total_h = height + 16 * (len(legend) - 1)  # a wrapped legend makes the chart taller, not the plot smaller
    lay = Layout(width, total_h, 76, width - 16, 14 + 16 * len(legend), total_h - 40)

    finite = [v for _, v in chart.points if math.isfinite(v)]
    limit = [chart.threshold] if chart.threshold is not None and math.isfinite(chart.threshold) else []
    lo_v = min([*finite, *limit], default=0.0)
    hi_v = max([*finite, *limit], default=1.0)
    if hi_v <= lo_v:
        pad = abs(hi_v) * 0.1 or 1.0
        lo_v, hi_v = lo_v - pad, hi_v + pad
    else:
        pad = (hi_v - lo_v) * 0.08
        lo_v, hi_v = lo_v - pad, hi_v + pad
    # row height of a y label is ~FONT_PX: at most one per 24px
    y_ticks = nice_ticks(lo_v, hi_v, max(2, min(6, lay.plot_h // 24)))
    if y_ticks:
        lo_v, hi_v = min(lo_v, y_ticks[0]), max(hi_v, y_ticks[-1])

    def x(t: float) -> float:
        return lay.left + (min(max(t, start), end) - start) / (end - start) * lay.plot_w

    def y(v: float) -> float:
        return lay.bottom - (v - lo_v) / (hi_v - lo_v) * lay.plot_h

    hatch = f"hatch-{ident}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="instance-chart" width="{lay.width}" '
        f'height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}" font-family="monospace" '
        f'font-size="{FONT_PX}">',
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{color}" fill-opacity="0.06"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{color}" stroke-width="2.5" stroke-opacity="0.45"/>'
        f"</pattern></defs>",
        f'<rect x="0" y="0" width="{lay.width}" height="{lay.height}" fill="#fff"/>',
        f'<rect class="plot" x="{lay.left}" y="{lay.top}" width="{lay.plot_w}" height="{lay.plot_h}" '
        f'fill="#fcfcfc" stroke="#bbb" data-t0="{start}" data-t1="{end}"/>',
    ]
    # shaded periods first, under the grid and the line
    for p in chart.periods:
        p_end = p.end if p.end is not None else end
        if p_end < start or p.start > end:
            continue
        x0, x1 = x(p.start), x(p_end)
        fill = f'fill="url(#{hatch})"' if p.kind == "pending" else f'fill="{color}" fill-opacity="0.2"'
        until = _iso(p.end) if p.end is not None else "still at the end"
        parts.append(
            f'<rect class="period {p.kind}" x="{x0:.2f}" y="{lay.top}" width="{max(1.0, x1 - x0):.2f}" '
            f'height="{lay.plot_h}" {fill} data-start="{max(p.start, start)}" data-end="{min(p_end, end)}">'
            f"<title>{esc(p.kind)} {esc(_iso(p.start))} .. {esc(until)}</title></rect>"
        )
    # grid and tick labels
    _, xt = time_ticks(start, end, lay.plot_w)
    for t, text in xt:
        tx = x(t)
        half = len(text) * CHAR_PX / 2
        if tx - half < 2 or tx + half > lay.width - 2:
            continue  # a label at the very edge would be cut by the viewport
        parts.append(
            f'<line x1="{tx:.2f}" y1="{lay.top}" x2="{tx:.2f}" y2="{lay.bottom + 4}" stroke="#e4e4e4"/>'
            f'<text class="tick x-tick" x="{tx:.2f}" y="{lay.bottom + 17}" text-anchor="middle" '
            f'fill="#444" data-t="{t}">{esc(text)}</text>'
        )
    for v in y_ticks:
        ty = y(v)
        parts.append(
            f'<line x1="{lay.left - 4}" y1="{ty:.2f}" x2="{lay.right}" y2="{ty:.2f}" stroke="#e4e4e4"/>'
            f'<text class="tick y-tick" x="{lay.left - 7}" y="{ty + 4:.2f}" text-anchor="end" '
            f'fill="#444">{esc(value_text(v))}</text>'
        )
    # axis titles: the x one says the zone and the day the axis starts on
    day = _utc(start).strftime("%Y-%m-%d")
    parts.append(
        f'<text class="axis-title" x="{lay.left + lay.plot_w / 2:.1f}" y="{lay.bottom + 34}" '
        f'text-anchor="middle" fill="#222">time (UTC, from {day})</text>'
        f'<text class="axis-title" transform="translate(13 {lay.top + lay.plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="#222">value</text>'
    )
    # threshold, then the value line on top
    if chart.threshold is not None and math.isfinite(chart.threshold):
        ty = y(chart.threshold)
        parts.append(
            f'<line class="threshold" x1="{lay.left}" y1="{ty:.2f}" x2="{lay.right}" y2="{ty:.2f}" '
            f'stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
    shown = downsample(chart.points, max(1, lay.plot_w))
    run: list[str] = []
    lines: list[str] = []
    for t, v in shown:
        if t < start or t > end or not math.isfinite(v):
            if run:
                lines.append(" ".join(run))
                run = []
            continue
        run.append(f"{x(t):.2f},{y(v):.2f}")
    if run:
        lines.append(" ".join(run))
    for pts in lines:
        if " " in pts:
            parts.append(
                f'<polyline class="value" points="{pts}" fill="none" stroke="{VALUE_COLOR}" '
                'stroke-width="1.5"/>'
            )
        else:  # a lone value between gaps: a dot, or it would not show
            cx, cy = pts.split(",")
            parts.append(f'<circle class="value" cx="{cx}" cy="{cy}" r="2" fill="{VALUE_COLOR}"/>')
    # legend
    for i, row in enumerate(legend):
        ly = 14 + 16 * i
        for lx, kind, text in row:
            parts.append(f'<g class="legend-item" data-kind="{kind}">{_swatch(kind, lx, ly, color, hatch)}'
                         f'<text x="{lx + 18}" y="{ly}" fill="#222">{esc(text)}</text></g>')  # fmt: skip
    if chart.note:
        parts.append(f"<title>{esc(chart.note)}</title>")
    parts.append("</svg>")
    return "\n".join(parts)


def _swatch(kind: str, x: float, y: float, color: str, hatch: str) -> str:
    if kind == "value":
        stroke = f'stroke="{VALUE_COLOR}" stroke-width="1.5"'
        return f'<line x1="{x}" y1="{y - 4}" x2="{x + 14}" y2="{y - 4}" {stroke}/>'
    if kind == "threshold":
        return (
            f'<line x1="{x}" y1="{y - 4}" x2="{x + 14}" y2="{y - 4}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="4 2"/>'
        )
    fill = f'fill="url(#{hatch})"' if kind == "pending" else f'fill="{color}" fill-opacity="0.2"'
    return f'<rect x="{x}" y="{y - 9}" width="14" height="10" {fill} stroke="{color}" stroke-width="0.5"/>'


def _iso(t: float) -> str:
    return _utc(t).isoformat(timespec="seconds").replace("+00:00", "Z")
