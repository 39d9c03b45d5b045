"""The backtest report's per-instance charts: ticks, layout, periods and values (pure; the
rendering is checked in a real browser by tests/integration/test_backtest_report_browser.py)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

from rules.backtest.chart import (
    CHAR_PX,
    TICK_GAP_PX,
    InstanceChart,
    Period,
    chart_svg,
    downsample,
    nice_ticks,
    time_ticks,
    value_text,
)
from rules.backtest.report import SeriesKey, instance_charts, periods, rule_values
from rules.metric import iso
from rules.model import Aggregation, Op, Rule, Severity

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z
M = 60.0
SVG = "{http://www.w3.org/2000/svg}"


def rec(state: str, at: float, active_at: float | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "alert_name": "HighCPU",
        "state": state,
        "at": iso(T0 + at),
        "active_at": iso(T0 + (active_at if active_at is not None else at)),
        "labels": {"alertname": "HighCPU", "instance_id": "db1", "database_type": "postgresql",
                   "severity": "critical"},
        "notify": {"firing": "first", "resolved": "resolved"}.get(state),
        **extra,
    }  # fmt: skip


def test_time_ticks_never_put_two_labels_closer_than_the_gap() -> None:
    for span, width in ((3600, 1000), (45 * 60, 300), (7 * 86400, 1000), (90, 900), (36 * 3600, 500)):
        step, ticks = time_ticks(T0, T0 + span, width)
        assert len(ticks) >= 2, (span, width)
        widest = max(len(t) for _, t in ticks) * CHAR_PX
        assert step / span * width >= widest + TICK_GAP_PX
        assert all(t % step == 0 for t, _ in ticks)  # aligned to the epoch (UTC)


def test_time_labels_name_the_day_when_the_axis_crosses_midnight() -> None:
    _, same_day = time_ticks(T0, T0 + 3600, 1000)
    _, two_days = time_ticks(T0 + 12 * 3600, T0 + 20 * 3600, 1000)
    assert same_day[0][1] == "10:00"
    assert all(len(text) == len("01-15 22:00") for _, text in two_days)


def test_nice_ticks_are_round_and_bounded() -> None:
    assert nice_ticks(31.2, 93.7, 6) == [40.0, 60.0, 80.0]  # step 20: the first round step >= 62.5 / 5
    assert nice_ticks(31.2, 93.7, 8) == [40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert nice_ticks(0, 1, 3) == [0.0, 0.5, 1.0]
    assert len(nice_ticks(-1e9, 3e9, 5)) <= 5


def test_value_text_stays_short() -> None:
    assert [value_text(v) for v in (0, 85.5, 0.0123, 12345, 4.5e6, -2e-5)] == [
        "0", "85.5", "0.0123", "12.35k", "4.5M", "-20\u00b5",
    ]  # fmt: skip
    assert all(
        len(value_text(v)) <= 7 for v in (1e15, -1e20, -123456789, 1.2e-4, 99999, -0.001234, -0.01234, -5e-11)
    )


def test_downsample_keeps_spikes_and_gaps() -> None:
    points = [(float(i), 1.0) for i in range(10_000)]
    points[5_000] = (5_000.0, 99.0)
    points[7_000] = (7_000.0, math.nan)
    got = downsample(points, 100)
    assert len(got) <= 300
    assert max(v for _, v in got if not math.isnan(v)) == 99.0
    assert any(math.isnan(v) for _, v in got)
    assert [t for t, _ in got] == sorted(t for t, _ in got)


def test_periods_pending_then_firing_then_resolved_and_a_dropped_pending() -> None:
    records = [
        rec("pending", 2 * M),
        rec("inactive", 4 * M, active_at=2 * M),  # dropped: the condition broke before `for`
        rec("pending", 10 * M),
        rec("firing", 15 * M, active_at=10 * M),
        rec("firing", 20 * M, active_at=10 * M, notify="repeat_elapsed"),
        rec("resolved", 25 * M, active_at=10 * M),
        rec("firing", 40 * M, active_at=37 * M),  # no pending record (log without --all-states)
    ]
    ((_, got),) = periods(records).items()
    assert [(p.kind, p.start - T0, None if p.end is None else p.end - T0) for p in got] == [
        ("pending", 2 * M, 4 * M),
        ("pending", 10 * M, 15 * M),
        ("firing", 15 * M, 25 * M),
        ("pending", 37 * M, 40 * M),
        ("firing", 40 * M, None),
    ]


def test_rule_values_are_the_window_aggregate_at_each_tick() -> None:
    rule = Rule("HighCPU", "cpu", Op.GT, 80.0, Aggregation.AVG, window_s=120.0)
    ts = [T0 + 30, T0 + 90, T0 + 150, T0 + 400]
    vs = [10.0, 20.0, 60.0, 5.0]
    ticks = [T0 + 60, T0 + 120, T0 + 180, T0 + 300, T0 + 420]
    got = rule_values(rule, ts, vs, ticks)
    # (t-120, t]: {30}, {30, 90}, {90, 150}, {} -> NaN, {400}
    assert got[:3] == [10.0, 15.0, 40.0] and math.isnan(got[3]) and got[4] == 5.0


def test_instance_charts_recompute_values_from_the_rules_series() -> None:
    rule = Rule("HighCPU", "cpu", Op.GT, 80.0, Aggregation.MAX, window_s=60.0, for_s=5 * M,
                severity=Severity.CRITICAL)  # fmt: skip
    key: SeriesKey = ("cpu", "db1", "postgresql", ())
    ts = [T0 + i * M for i in range(60)]
    vs = [90.0 if 10 <= i < 25 else 40.0 for i in range(60)]
    records = [rec("firing", 15 * M, active_at=10 * M), rec("resolved", 25 * M, active_at=10 * M)]
    charts, left_off = instance_charts(records, [rule], {key: (ts, vs)}, T0, T0 + 59 * M, interval_s=M)
    assert left_off == 0
    (c,) = charts
    assert (c.threshold, c.op, c.for_s, c.severity) == (80.0, ">", 300.0, "critical")
    assert c.value_label == "max(cpu[1m])"
    values = dict(c.points)
    assert values[T0 + 12 * M] == 90.0 and values[T0 + 30 * M] == 40.0
    assert [(p.kind, p.start - T0) for p in c.periods] == [("pending", 10 * M), ("firing", 15 * M)]
    # an instance no rule explains: the record's values at its transitions, and it says so
    charts, _ = instance_charts(
        [{**r, "value": 91.0, "threshold": 80.0} for r in records], [], {}, T0, T0 + 59 * M, interval_s=M
    )
    assert [v for _, v in charts[0].points] == [91.0, 91.0] and "only at" in charts[0].note


def test_instance_charts_are_bounded() -> None:
    records = [{**rec("firing", i * M), "labels": {"alertname": "HighCPU", "instance_id": f"db{i}"}}
               for i in range(10)]  # fmt: skip
    charts, left_off = instance_charts(records, [], {}, T0, T0 + 3600, limit=4)
    assert len(charts) == 4 and left_off == 6
    assert [c.title for c in charts] == [f"A HighCPU db{i}" for i in range(4)]  # by first activity


def chart(**kw: Any) -> InstanceChart:
    base: dict[str, Any] = {
        "title": "A HighCPU db1",
        "severity": "critical",
        "start": T0,
        "end": T0 + 3600,
        "points": tuple((T0 + i * M, 50.0 + i) for i in range(61)),
        "periods": (Period("pending", T0 + 10 * M, T0 + 15 * M), Period("firing", T0 + 15 * M, None)),
        "value_label": "avg(cpu[5m])",
        "threshold": 80.0,
        "op": ">",
        "for_s": 300.0,
    }
    return InstanceChart(**{**base, **kw})


def test_chart_svg_is_valid_and_places_periods_on_the_time_axis() -> None:
    svg = ET.fromstring(chart_svg(chart(), ident="0"))
    plot = next(e for e in svg.iter(f"{SVG}rect") if e.get("class") == "plot")
    x0, w = float(plot.get("x", 0)), float(plot.get("width", 0))
    shaded = [e for e in svg.iter(f"{SVG}rect") if "period" in (e.get("class") or "")]
    assert [e.get("class") for e in shaded] == ["period pending", "period firing"]
    pending, firing = shaded
    assert math.isclose(float(pending.get("x", 0)), x0 + w * 10 / 60, abs_tol=0.01)
    assert math.isclose(float(firing.get("x", 0)) + float(firing.get("width", 0)), x0 + w, abs_tol=0.01)
    assert pending.get("fill") == "url(#hatch-0)" and firing.get("fill") == "#c9302c"  # critical's colour
    legend = [e.get("data-kind") for e in svg.iter(f"{SVG}g") if e.get("class") == "legend-item"]
    assert legend == ["value", "threshold", "pending", "firing"]
    texts = " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
    assert "threshold > 80" in texts and "pending (for 5m)" in texts and "firing (critical)" in texts
    assert any(e.get("class") == "threshold" for e in svg.iter(f"{SVG}line"))


def test_chart_breaks_the_line_where_the_rule_had_no_value() -> None:
    pts = tuple((T0 + i * M, math.nan if 20 <= i < 30 else 50.0) for i in range(61))
    svg = ET.fromstring(chart_svg(chart(points=pts, threshold=None, op=None), ident="1"))
    assert len([e for e in svg.iter(f"{SVG}polyline") if e.get("class") == "value"]) == 2
    assert not any(e.get("class") == "threshold" for e in svg.iter(f"{SVG}line"))


def test_a_long_legend_wraps_and_the_chart_grows() -> None:
    short = ET.fromstring(chart_svg(chart(), ident="0", width=1100))
    long = ET.fromstring(chart_svg(chart(value_label="x" * 150), ident="0", width=1100))
    assert float(long.get("height", 0)) > float(short.get("height", 0))
    ys = {e.find(f"{SVG}text").get("y") for e in long.iter(f"{SVG}g") if e.get("class") == "legend-item"}  # type: ignore[union-attr]
    assert len(ys) >= 2


def test_a_threshold_that_is_not_a_number_draws_no_line() -> None:
    svg = ET.fromstring(chart_svg(chart(threshold=math.nan, op=None), ident="2"))
    assert not any(e.get("class") == "threshold" for e in svg.iter(f"{SVG}line"))
    assert "nan" not in " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
