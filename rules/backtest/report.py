"""Backtest reports: pure functions over transition records (`AlertEvent.to_record()` dicts).

Firing spans, per-rule summaries, the A/B diff of two rule sets over the same data, and
their renderings (text tables, JSON-ready dicts, an SVG timeline, per-instance value charts
from `rules.backtest.chart` and a self-contained HTML page: no script, no external asset,
so a report can be attached to a ticket as is). Working from records rather than events
means a report can be rebuilt from a saved `--output` log without re-running the replay;
only the value charts need the samples the rules read (`instance_charts`).
"""

from __future__ import annotations

import html
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rules.aggregate import aggregator
from rules.backtest.chart import CHAR_PX, InstanceChart, Period, chart_svg, time_ticks
from rules.engine import alert_labels
from rules.metric import Metric
from rules.model import Aggregation, Rule, iso

Record = Mapping[str, Any]
Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]  # (alert name, label set): one alert instance

MAX_SVG_ROWS = 400  # beyond this a timeline is unreadable; the rest is counted, not drawn
COLOR = {"A": "#c9302c", "B": "#2a6ebb"}


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def labels_of(rec: Record) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in dict(rec.get("labels") or {}).items()))


def instance_text(labels: Labels) -> str:
    """Short row label: instance_id plus the labels that tell two series of it apart."""
    skip = {"alertname", "severity", "instance_id", "database_type", "team", "environment", "region"}
    d = dict(labels)
    rest = ",".join(f"{k}={v}" for k, v in labels if k not in skip)
    return d.get("instance_id", "?") + (f" {{{rest}}}" if rest else "")


# --------------------------------------------------------------------------- spans


@dataclass(frozen=True, slots=True)
class Span:
    """One firing period of one alert instance; `end` None: still firing when the data ended."""

    alert_name: str
    labels: Labels
    start: float
    end: float | None = None
    stale: bool = False  # resolved because the series went stale, not because it recovered

    @property
    def key(self) -> Key:
        return (self.alert_name, self.labels)

    def until(self, range_end: float) -> float:
        return self.end if self.end is not None else max(range_end, self.start)

    def overlaps(self, other: Span, range_end: float) -> bool:
        return self.start < other.until(range_end) and other.start < self.until(range_end)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_name": self.alert_name,
            "labels": dict(self.labels),
            "fired_at": iso(self.start),
            "resolved_at": iso(self.end) if self.end is not None else None,
            "stale": self.stale,
        }


def is_fire(rec: Record) -> bool:
    """A transition into firing; repeats (`notify: repeat_elapsed`) are not new fires."""
    return rec.get("state") == "firing" and rec.get("notify") not in ("repeat_elapsed", "unsuppressed")


def spans(records: Iterable[Record]) -> list[Span]:
    """Pair each fire with the next resolve of the same instance, in time order."""
    ordered = sorted(records, key=lambda r: (parse_iso(str(r["at"])), r.get("state") == "firing"))
    open_: dict[Key, float] = {}
    out: list[Span] = []
    for r in ordered:
        key = (str(r["alert_name"]), labels_of(r))
        if is_fire(r):
            open_.setdefault(key, parse_iso(str(r["at"])))
        elif r.get("state") == "resolved" and key in open_:
            out.append(Span(key[0], key[1], open_.pop(key), parse_iso(str(r["at"])), bool(r.get("stale"))))
    out.extend(Span(k[0], k[1], t) for k, t in open_.items())
    out.sort(key=lambda s: (s.start, s.alert_name, s.labels))
    return out


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """What one rule did over the range.

    `flaps` counts instances that fired more than once (each extra fire after a resolve is
    a page a human had already closed); `still_firing` those firing when the data ended.
    """

    rule: str
    fires: int = 0
    resolves: int = 0
    firing_s: float = 0.0
    flaps: int = 0
    instances: int = 0
    still_firing: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "fires": self.fires,
            "resolves": self.resolves,
            "firing_s": round(self.firing_s, 3),
            "flaps": self.flaps,
            "instances": self.instances,
            "still_firing": self.still_firing,
        }


def summarize(records: Iterable[Record], range_end: float, rules: Iterable[str] = ()) -> list[RuleSummary]:
    """Per rule, sorted by name; `rules` adds rows for rules that never fired (silent is news too)."""
    by_rule: dict[str, list[Span]] = {name: [] for name in rules}
    for s in spans(records):
        by_rule.setdefault(s.alert_name, []).append(s)
    out = []
    for name in sorted(by_rule):
        ss = by_rule[name]
        per_instance: dict[Labels, int] = {}
        for s in ss:
            per_instance[s.labels] = per_instance.get(s.labels, 0) + 1
        out.append(
            RuleSummary(
                rule=name,
                fires=len(ss),
                resolves=sum(1 for s in ss if s.end is not None),
                firing_s=math.fsum(s.until(range_end) - s.start for s in ss),
                flaps=sum(1 for n in per_instance.values() if n > 1),
                instances=len(per_instance),
                still_firing=sum(1 for s in ss if s.end is None),
            )
        )
    return out


def duration_text(seconds: float) -> str:
    """`2h05m`, `14m30s`, `45s`: readable in a table column."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s" if sec else f"{m}m"
    return f"{sec}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, numbers right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def summary_table(summaries: Sequence[RuleSummary]) -> str:
    header = ("rule", "fires", "resolves", "firing", "flaps", "instances", "still firing")
    rows = [
        (
            s.rule,
            str(s.fires),
            str(s.resolves),
            duration_text(s.firing_s),
            str(s.flaps),
            str(s.instances),
            str(s.still_firing),
        )
        for s in summaries
    ]
    return _table(header, rows)


def compare_table(a: Sequence[RuleSummary], b: Sequence[RuleSummary]) -> str:
    """Side by side per rule name: `A / B` in every column."""
    ia, ib = {s.rule: s for s in a}, {s.rule: s for s in b}
    header = ("rule", "fires A/B", "resolves A/B", "firing A/B", "flaps A/B", "instances A/B")
    rows = []
    for name in sorted(ia.keys() | ib.keys()):
        x, y = ia.get(name), ib.get(name)

        def pair(f: str, x: RuleSummary | None = x, y: RuleSummary | None = y) -> str:
            def one(s: RuleSummary | None) -> str:
                if s is None:
                    return "-"
                v = getattr(s, f)
                return duration_text(v) if f == "firing_s" else str(v)

            return f"{one(x)} / {one(y)}"

        rows.append(
            (name, pair("fires"), pair("resolves"), pair("firing_s"), pair("flaps"), pair("instances"))
        )
    return _table(header, rows)


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True, slots=True)
class Moved:
    """The same alert instance fired under both rule sets, at different times."""

    a: Span
    b: Span

    @property
    def fire_shift_s(self) -> float:
        return self.b.start - self.a.start

    @property
    def resolve_shift_s(self) -> float | None:
        if self.a.end is None or self.b.end is None:
            return None
        return self.b.end - self.a.end

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_name": self.a.alert_name,
            "labels": dict(self.a.labels),
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "fire_shift_s": self.fire_shift_s,
            "resolve_shift_s": self.resolve_shift_s,
        }


@dataclass(frozen=True, slots=True)
class Diff:
    only_a: tuple[Span, ...]
    only_b: tuple[Span, ...]
    moved: tuple[Moved, ...]
    same: int  # spans identical in both (fire and resolve times)

    @property
    def identical(self) -> bool:
        return not (self.only_a or self.only_b or self.moved)

    def as_dict(self) -> dict[str, Any]:
        return {
            "only_a": [s.as_dict() for s in self.only_a],
            "only_b": [s.as_dict() for s in self.only_b],
            "moved": [m.as_dict() for m in self.moved],
            "same": self.same,
        }


def diff(a: Iterable[Record], b: Iterable[Record], range_end: float) -> Diff:
    """Match A's firing spans to B's per alert instance (rule name + labels).

    Identical spans match first; then spans that overlap in time are the same incident
    seen earlier/later or longer/shorter ("moved"); whatever is left fired only on one side.
    """
    sa: dict[Key, list[Span]] = {}
    sb: dict[Key, list[Span]] = {}
    for s in spans(a):
        sa.setdefault(s.key, []).append(s)
    for s in spans(b):
        sb.setdefault(s.key, []).append(s)
    only_a: list[Span] = []
    only_b: list[Span] = []
    moved: list[Moved] = []
    same = 0
    for key in sorted(sa.keys() | sb.keys()):
        left = list(sa.get(key, []))
        right = list(sb.get(key, []))
        for s in list(left):
            twin = next((t for t in right if t.start == s.start and t.end == s.end), None)
            if twin is not None:
                left.remove(s)
                right.remove(twin)
                same += 1
        for s in list(left):
            twin = next((t for t in right if s.overlaps(t, range_end)), None)
            if twin is not None:
                left.remove(s)
                right.remove(twin)
                moved.append(Moved(s, twin))
        only_a.extend(left)
        only_b.extend(right)

    def order(s: Span) -> tuple[float, str, Labels]:
        return (s.start, s.alert_name, s.labels)

    return Diff(
        tuple(sorted(only_a, key=order)),
        tuple(sorted(only_b, key=order)),
        tuple(sorted(moved, key=lambda m: order(m.a))),
        same,
    )


def _shift(s: float | None) -> str:
    if s is None:
        return "n/a"
    return ("+" if s >= 0 else "-") + duration_text(abs(s))


def diff_text(d: Diff) -> str:
    """Readable diff: one line per span, grouped as only-A, only-B, moved."""
    if d.identical:
        return f"A and B fire identically ({d.same} firing span(s))."
    out = [f"diff: {len(d.only_a)} only in A, {len(d.only_b)} only in B, {len(d.moved)} moved, {d.same} same"]

    def when(s: Span) -> str:
        return f"{iso(s.start)} .. {iso(s.end) if s.end is not None else '(still firing)'}"

    for title, group in (("only in A", d.only_a), ("only in B", d.only_b)):
        if group:
            out.append(f"{title}:")
            out.extend(f"  {s.alert_name:<24} {instance_text(s.labels):<32} {when(s)}" for s in group)
    if d.moved:
        out.append("moved (A -> B):")
        out.extend(
            f"  {m.a.alert_name:<24} {instance_text(m.a.labels):<32} fired {_shift(m.fire_shift_s)}, "
            f"resolved {_shift(m.resolve_shift_s)}  (A {when(m.a)}; B {when(m.b)})"
            for m in d.moved
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- SVG / HTML


@dataclass(frozen=True, slots=True)
class Row:
    """One timeline row: an alert instance on one side ("A", "B")."""

    label: str
    side: str
    spans: tuple[Span, ...]


def timeline_rows(a: Iterable[Record], b: Iterable[Record] | None = None) -> list[Row]:
    """One row per alert instance (A and B rows adjacent when comparing), by first fire."""
    sides = {"A": spans(a)} if b is None else {"A": spans(a), "B": spans(b)}
    first: dict[Key, float] = {}
    grouped: dict[tuple[Key, str], list[Span]] = {}
    for side, ss in sides.items():
        for s in ss:
            first[s.key] = min(first.get(s.key, s.start), s.start)
            grouped.setdefault((s.key, side), []).append(s)
    rows = []
    for key in sorted(first, key=lambda k: (first[k], k)):
        for side in sides:
            got = grouped.get((key, side), [])
            if b is not None or got:
                rows.append(Row(f"{key[0]} {instance_text(key[1])}", side, tuple(got)))
    return rows


def timeline_svg(rows: Sequence[Row], start: float, end: float, *, width: int = 1100) -> str:
    """A hand-written SVG: label column, time axis, one bar per firing span (tooltip: <title>)."""
    if not end > start:
        end = start + 60
    label_w, row_h, top = 380, 16, 28
    shown = list(rows[:MAX_SVG_ROWS])
    plot_w = width - label_w - 10
    height = top + row_h * max(1, len(shown)) + (20 if len(rows) > len(shown) else 6)

    def x(t: float) -> float:
        return label_w + (min(max(t, start), end) - start) / (end - start) * plot_w

    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    # the finest step whose labels do not touch (`time_ticks`), and none cut by the viewport
    for tick, text in time_ticks(start, end, plot_w)[1]:
        tx = x(tick)
        half = len(text) * CHAR_PX / 2
        if tx - half < label_w - 40 or tx + half > width - 2:
            continue
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height}" stroke="#ddd"/>'
            f'<text class="tick" x="{tx:.1f}" y="{top - 10}" text-anchor="middle" '
            f'fill="#555">{esc(text)}</text>'
        )
    for i, row in enumerate(shown):
        y = top + i * row_h
        if i % 2 == 0:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#f6f6f6"/>')
        label = row.label if len(row.label) <= 52 else row.label[:51] + "\u2026"
        parts.append(f'<text x="4" y="{y + 12}" fill="#222">{esc(row.side)} {esc(label)}</text>')
        for s in row.spans:
            x0, x1 = x(s.start), x(s.until(end))
            until = iso(s.end) if s.end is not None else "still firing"
            tip = f"{row.side} {s.alert_name} {instance_text(s.labels)}: {iso(s.start)} .. {until}"
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(2.0, x1 - x0):.1f}" height="{row_h - 6}" '
                f'fill="{COLOR.get(row.side, "#555")}"'
                + (' fill-opacity="0.55"' if s.end is None else "")
                + f"><title>{esc(tip)}</title></rect>"
            )
    if len(rows) > len(shown):
        parts.append(
            f'<text x="4" y="{height - 6}" fill="#a00">{len(rows) - len(shown)} more row(s) not drawn</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- per-instance charts

MAX_CHARTS = 40  # one chart per alert instance; past this a page gets too long to read
MAX_TICKS = 50_000  # values computed per chart; beyond, every n-th tick (the chart has ~1k px anyway)
SeriesKey = tuple[str, str, str, Labels]  # (metric_name, instance_id, database_type, sorted tags)
SeriesSamples = Mapping[SeriesKey, tuple[Sequence[float], Sequence[float]]]  # (ts sorted, values)


def periods(records: Iterable[Record]) -> dict[Key, list[Period]]:
    """Pending and firing periods per alert instance, from transition records.

    Pending runs from `active_at` to the fire (or to the drop, state `inactive`); a firing
    record's `active_at` gives its pending period even when the log holds no `pending`
    record (written without --all-states). Repeats and mutes continue the firing period.
    """
    ordered = sorted(records, key=lambda r: (parse_iso(str(r["at"])), _ORDER.get(str(r.get("state")), 9)))
    pending: dict[Key, float] = {}
    firing: dict[Key, float] = {}
    out: dict[Key, list[Period]] = {}
    for r in ordered:
        key = (str(r["alert_name"]), labels_of(r))
        at = parse_iso(str(r["at"]))
        state = r.get("state")
        got = out.setdefault(key, [])
        if state == "pending":
            pending.setdefault(key, at)
        elif state == "inactive":  # dropped before firing
            if key in pending:
                got.append(Period("pending", pending.pop(key), at))
        elif state == "firing" and key not in firing:
            began = pending.pop(key, None)
            if began is None and r.get("active_at"):
                began = parse_iso(str(r["active_at"]))
            if began is not None and began < at:
                got.append(Period("pending", began, at))
            firing[key] = at
        elif state == "resolved" and key in firing:
            got.append(Period("firing", firing.pop(key), at))
    for key, t in pending.items():
        out[key].append(Period("pending", t))
    for key, t in firing.items():
        out[key].append(Period("firing", t))
    for ps in out.values():
        ps.sort(key=lambda p: (p.start, p.kind))
    return {k: v for k, v in out.items() if v}


_ORDER = {"resolved": 0, "inactive": 1, "pending": 2, "firing": 3}  # same instant: close before open


def rule_values(rule: Rule, ts: Sequence[float], vs: Sequence[float], ticks: Sequence[float]) -> list[float]:
    """The value `rule` evaluated at each tick, as the engine computes it (`ShardEngine._evaluate`):
    its aggregation over the samples in `(tick - window, tick]`; NaN with no sample there.
    A no-data rule's value is the number of samples in the window."""
    fn = None if rule.no_data else aggregator(rule.aggregation)
    needs_ts = rule.aggregation is Aggregation.RATE
    out = []
    for t in ticks:
        hi = bisect_right(ts, t)
        lo = bisect_right(ts, t - rule.window_s, 0, hi)
        if fn is None:
            out.append(float(hi - lo))
        elif hi > lo:
            got = fn(ts[lo:hi] if needs_ts else (), vs[lo:hi])
            out.append(math.nan if got is None else got)
        else:
            out.append(math.nan)
    return out


def value_label(rule: Rule) -> str:
    """`avg(cpu_usage_percent[5m])`: the value the chart draws, PromQL-like."""
    window = duration_text(rule.window_s)
    if rule.no_data:
        return f"samples of {rule.metric} in {window}"
    return f"{rule.aggregation.value}({rule.metric}[{window}])"


def chart_range(ps: Sequence[Period], start: float, end: float, interval_s: float) -> tuple[float, float]:
    """The activity of one instance with room around it (what led to it matters for tuning),
    within the report's range."""
    a0 = min(p.start for p in ps)
    a1 = max(p.end if p.end is not None else end for p in ps)
    pad = max(0.5 * (a1 - a0), 10 * interval_s)
    lo, hi = max(start, a0 - pad), min(end, a1 + pad)
    return (lo, hi) if hi > lo else (start, max(end, start + interval_s))


def _number(v: object) -> float | None:
    """A number to draw: PromQL alerts without a top-level comparison have no threshold (null/NaN)."""
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _ticks(lo: float, hi: float, interval_s: float) -> list[float]:
    first = math.ceil(lo / interval_s)
    n = math.floor(hi / interval_s) - first + 1
    stride = max(1, math.ceil(n / MAX_TICKS))
    return [(first + k) * interval_s for k in range(0, max(0, n), stride)]


def instance_charts(
    records: Sequence[Record],
    rules: Sequence[Rule],
    samples: SeriesSamples,
    start: float,
    end: float,
    *,
    interval_s: float = 60.0,
    side: str = "A",
    limit: int = MAX_CHARTS,
) -> tuple[list[InstanceChart], int]:
    """One chart per alert instance that was pending or firing, by first activity; and how
    many were left out past `limit`.

    The value line is recomputed from `samples` (the series the rules read, as the replay
    saw them) at every evaluation tick. An instance no rule in `rules` explains (a rule
    evaluated elsewhere, or samples not kept) is drawn from the values its records carry,
    which exist only at its transitions; the chart says so.
    """
    by_key = periods(records)
    order = sorted(by_key, key=lambda k: (by_key[k][0].start, k))
    left_off = max(0, len(order) - limit)
    wanted = set(order[:limit])
    series: dict[Key, tuple[Rule, SeriesKey]] = {}
    rules_by_metric: dict[str, list[Rule]] = {}
    for r in rules:
        rules_by_metric.setdefault(r.metric, []).append(r)
    for skey in samples:
        metric_name, instance_id, database_type, tags = skey
        m = Metric(0.0, database_type, instance_id, metric_name, 0.0, dict(tags))
        for r in rules_by_metric.get(metric_name, ()):
            if r.selects(m):
                key = (r.name, alert_labels(r, m))
                if key in wanted:
                    series[key] = (r, skey)
    last_rec: dict[Key, Record] = {}
    for rec in records:
        last_rec[(str(rec["alert_name"]), labels_of(rec))] = rec
    charts = []
    for key in order[:limit]:
        ps = by_key[key]
        rec = last_rec[key]
        lo, hi = chart_range(ps, start, end, interval_s)
        title = f"{side} {key[0]} {instance_text(key[1])}"
        severity = dict(key[1]).get("severity") or str(rec.get("severity") or "warning")
        base = InstanceChart(title, severity, lo, hi, (), tuple(ps), "", side=side)
        if key in series:
            rule, skey = series[key]
            ts, vs = samples[skey]
            ticks = _ticks(lo, hi, interval_s)
            charts.append(
                replace(
                    base,
                    points=tuple(zip(ticks, rule_values(rule, ts, vs, ticks), strict=True)),
                    value_label=value_label(rule),
                    threshold=rule.threshold,
                    op=rule.op.value,
                    for_s=rule.for_s,
                )
            )
        else:
            threshold = rec.get("threshold")
            charts.append(
                replace(
                    base,
                    points=tuple(
                        (
                            parse_iso(str(r["at"])),
                            float(r["value"]) if r.get("value") is not None else math.nan,
                        )
                        for r in records
                        if (str(r["alert_name"]), labels_of(r)) == key
                    ),
                    value_label="value at transitions",
                    threshold=_number(threshold),
                    note="value known only at this instance's transitions: its rule's samples were not kept",
                )
            )
    return charts, left_off


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }
th:first-child, td:first-child { text-align: left; }
code, .mono { font-family: monospace; }
.a { color: #c9302c; } .b { color: #2a6ebb; }
.warning { border: 2px solid #c9302c; background: #fdf0ef; padding: 8px 12px; margin: 8px 0 16px; }
.note { border: 2px solid #d97706; background: #fff7e6; padding: 8px 12px; margin: 8px 0 16px; }
.banner { font-weight: 600; }
.instance h3 { font-size: 14px; font-weight: 600; margin: 18px 0 4px; font-family: monospace; }
.instance p { margin: 2px 0 4px; font-size: 12px; color: #555; }
.instance svg { max-width: 100%; height: auto; }
"""


def _html_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(
    *,
    title: str,
    start: float,
    end: float,
    a: Sequence[Record],
    b: Sequence[Record] | None = None,
    rules_a: Iterable[str] = (),
    rules_b: Iterable[str] = (),
    facts: Mapping[str, object] | None = None,
    window: WindowCheck | None = None,
    charts: Sequence[InstanceChart] = (),
    charts_left_off: int = 0,
) -> str:
    """The whole report as one HTML document (summary, diff when comparing, timeline, then
    one chart per alert instance: `instance_charts`).

    `window`'s findings come first, in a banner: an all-zero summary over an empty window must
    not read as "nothing fired", nor a partly evaluated window as the whole of it.
    """
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='mono'>{esc(iso(start))} .. {esc(iso(end))} ({esc(duration_text(end - start))})</p>",
    ]
    if window is not None:
        kind = "warning" if window.empty else "note"
        role = "alert" if window.empty else "status"
        parts.extend(
            f"<p class='{kind}' role='{role}' data-banner='window'>{esc(text)}</p>"
            for text in window.findings()
        )
    if facts:
        parts.append(_html_table(("fact", "value"), sorted((k, v) for k, v in facts.items())))
    cols = ("rule", "fires", "resolves", "firing", "flaps", "instances", "still firing")

    def rows(ss: Sequence[RuleSummary]) -> list[tuple[object, ...]]:
        return [
            (s.rule, s.fires, s.resolves, duration_text(s.firing_s), s.flaps, s.instances, s.still_firing)
            for s in ss
        ]

    parts.append("<h2>Summary" + (" <span class='a'>A</span>" if b is not None else "") + "</h2>")
    parts.append(_html_table(cols, rows(summarize(a, end, rules_a))))
    if b is not None:
        parts.append("<h2>Summary <span class='b'>B</span></h2>")
        parts.append(_html_table(cols, rows(summarize(b, end, rules_b))))
        d = diff(a, b, end)
        parts.append(
            f"<h2>Diff</h2><p>{len(d.only_a)} only in A, {len(d.only_b)} only in B, "
            f"{len(d.moved)} moved, {d.same} same</p>"
        )

        def span_row(side: str, s: Span) -> tuple[object, ...]:
            resolved = iso(s.end) if s.end is not None else "still firing"
            return (side, s.alert_name, instance_text(s.labels), iso(s.start), resolved)

        listed = [span_row("only A", s) for s in d.only_a] + [span_row("only B", s) for s in d.only_b]
        if listed:
            parts.append(_html_table(("where", "rule", "instance", "fired", "resolved"), listed))
        if d.moved:
            parts.append(
                _html_table(
                    ("rule", "instance", "fired A", "fired B", "fire shift", "resolve shift"),
                    [
                        (
                            m.a.alert_name,
                            instance_text(m.a.labels),
                            iso(m.a.start),
                            iso(m.b.start),
                            _shift(m.fire_shift_s),
                            _shift(m.resolve_shift_s),
                        )
                        for m in d.moved
                    ],
                )
            )
    parts.append("<h2>Timeline</h2>")
    parts.append(timeline_svg(timeline_rows(a, b), start, end))
    if charts:
        parts.append(
            "<h2>Alert instances</h2><p>The value each rule evaluated at every tick against its "
            "threshold; hatched: pending, shaded: firing, in the severity's colour.</p>"
        )
        for i, c in enumerate(charts):
            when = f"{iso(c.start)} .. {iso(c.end)}"
            parts.append(
                f"<section class='instance'><h3>{esc(c.title)}</h3><p>{esc(when)}"
                + (f"; {esc(c.note)}" if c.note else "")
                + f"</p>{chart_svg(c, ident=str(i))}</section>"
            )
        if charts_left_off:
            parts.append(f"<p class='note'>{charts_left_off} more alert instance(s) not charted</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- the window's contents


def _at(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "the start" if t is not None and t < 0 else "the end"
    return iso(t)


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """What a backtest's event-time window held, against what the input had.

    A window can be empty while the input is not: the event times are elsewhere (a replay of
    `-7d .. now` over an older recording), or, on Kafka, the offsets found by *record* time
    (produce time) hold nothing because the data was produced long after it happened. Either
    way an all-zero summary would read as "no alert would have fired"; `findings` says what
    was there instead and what to pass, and `empty` makes the CLI exit non-zero.
    """

    start: float  # the window [start, end), event time; +-inf when open
    end: float
    messages: int  # read from the input
    outside: int  # of those, decoded but with an event time outside the window
    bad: int = 0  # unreadable (the poison messages)
    kept_first: float | None = None  # event-time span of the messages in the window
    kept_last: float | None = None
    seen_first: float | None = None  # event-time span of every message decoded
    seen_last: float | None = None
    kafka: bool = False
    full_scan: bool = False
    slack_s: float = 0.0
    available: int | None = None  # Kafka, when the offset search found nothing: records held
    record_first: float | None = None  # and their record (produce) times
    record_last: float | None = None

    @property
    def empty(self) -> bool:
        """Nothing evaluated, while the input had data."""
        return self.kept_first is None and (self.messages > 0 or (self.available or 0) > 0)

    def findings(self) -> list[str]:
        window = f"{_at(self.start)} .. {_at(self.end)}"
        out: list[str] = []
        if self.messages == 0 and self.available:
            produced = f"{_at(self.record_first)} .. {_at(self.record_last)}"
            out.append(
                f"no record of the topic(s) is stamped between {_at(self.start - self.slack_s)} and "
                f"{_at(self.end + self.slack_s)} (the window widened by --slack); Kafka record times "
                f"are produce times, and the topic(s) hold {self.available:,} record(s) produced "
                f"{produced}. If those records carry event times in your window (data produced after "
                f"it happened, e.g. a re-import), add --full-scan to read them all and keep the "
                f"window's event times; otherwise choose --from/--to within {produced}."
            )
        elif self.empty and self.seen_first is None:
            out.append(
                f"none of the {self.messages:,} message(s) read could be decoded "
                f"({self.bad:,} bad message(s)): nothing was evaluated"
            )
        elif self.empty:
            hint = f"--from {_at(self.seen_first)} --to {_at(self.seen_last)}"
            if self.kafka and not self.full_scan:
                hint += " --full-scan (their record times are not their event times)"
            out.append(
                f"all {self.outside:,} of the {self.messages:,} message(s) read fell outside the "
                f"event-time window {window}: their event times span {_at(self.seen_first)} .. "
                f"{_at(self.seen_last)}; nothing was evaluated. To replay them, pass {hint}"
            )
        elif self.outside:
            out.append(
                f"{self.outside:,} of the {self.messages:,} message(s) read fell outside the "
                f"event-time window {window} and were not evaluated (event times read: "
                f"{_at(self.seen_first)} .. {_at(self.seen_last)})"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        def t(x: float | None) -> str | None:
            return iso(x) if x is not None and math.isfinite(x) else None

        return {
            "from": t(self.start),
            "to": t(self.end),
            "messages": self.messages,
            "outside": self.outside,
            "evaluated_event_times": [t(self.kept_first), t(self.kept_last)],
            "read_event_times": [t(self.seen_first), t(self.seen_last)],
            **(
                {
                    "topic_records": self.available,
                    "topic_record_times": [t(self.record_first), t(self.record_last)],
                }
                if self.available is not None
                else {}
            ),
            "empty": self.empty,
            "warnings": self.findings(),
        }
