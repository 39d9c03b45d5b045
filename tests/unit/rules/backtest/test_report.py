"""Backtest reports: spans, summaries, A/B diff and renderings, from transition records only."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Any

from rules.backtest.report import (
    MAX_SVG_ROWS,
    Span,
    WindowCheck,
    compare_table,
    diff,
    diff_text,
    duration_text,
    html_report,
    spans,
    summarize,
    summary_table,
    timeline_rows,
    timeline_svg,
)
from rules.metric import iso

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z
M = 60.0


def rec(
    name: str, iid: str, state: str, at: float, notify: str | None = None, **labels: str
) -> dict[str, Any]:
    """A transition record as `AlertEvent.to_record()` writes it (only the fields reports read)."""
    return {
        "alert_name": name,
        "state": state,
        "at": iso(at),
        "labels": {"alertname": name, "instance_id": iid, "severity": "warning", **labels},
        "notify": notify or ("first" if state == "firing" else "resolved" if state == "resolved" else None),
        "stale": False,
    }


def incident(name: str, iid: str, fire: float, resolve: float | None) -> list[dict[str, Any]]:
    out = [rec(name, iid, "firing", T0 + fire)]
    if resolve is not None:
        out.append(rec(name, iid, "resolved", T0 + resolve))
    return out


def test_spans_pair_fires_with_resolves_and_ignore_repeats_and_pending() -> None:
    records = [
        rec("CPU", "db1", "pending", T0),
        *incident("CPU", "db1", 5 * M, 20 * M),
        rec("CPU", "db1", "firing", T0 + 10 * M, notify="repeat_elapsed"),
        *incident("CPU", "db2", 7 * M, None),
    ]
    got = spans(records)
    assert [(s.labels[1][1], s.start - T0, None if s.end is None else s.end - T0) for s in got] == [
        ("db1", 5 * M, 20 * M),
        ("db2", 7 * M, None),
    ]
    assert got[1].until(T0 + 30 * M) == T0 + 30 * M  # still firing: counted to the end of the data


def test_summary_counts_fires_time_flaps_and_lists_silent_rules() -> None:
    records = [
        *incident("CPU", "db1", 5 * M, 10 * M),
        *incident("CPU", "db1", 20 * M, 25 * M),  # the same instance again: a flap
        *incident("CPU", "db2", 5 * M, None),  # still firing at the end (30m)
        *incident("Disk", "db3", 0, 1 * M),
    ]
    by_rule = {s.rule: s for s in summarize(records, T0 + 30 * M, rules=["CPU", "Disk", "Quiet"])}
    cpu = by_rule["CPU"]
    assert (cpu.fires, cpu.resolves, cpu.flaps, cpu.instances, cpu.still_firing) == (3, 2, 1, 2, 1)
    assert cpu.firing_s == 5 * M + 5 * M + 25 * M
    assert by_rule["Disk"].firing_s == 60.0 and by_rule["Disk"].flaps == 0
    assert by_rule["Quiet"].fires == 0  # a rule that never fired is reported, not omitted
    assert json.loads(json.dumps(cpu.as_dict()))["firing_s"] == 2100.0


def test_summary_table_is_aligned_text() -> None:
    text = summary_table(summarize(incident("CPU", "db1", 0, 90 * M), T0 + 2 * 3600))
    header, rule, row = text.splitlines()
    assert header.split()[:3] == ["rule", "fires", "resolves"]
    assert set(rule) <= {"-", " "}
    assert row.split() == ["CPU", "1", "1", "1h30m", "0", "1", "0"]
    assert [duration_text(s) for s in (45, 600, 870, 7500)] == ["45s", "10m", "14m30s", "2h05m"]


def test_diff_classifies_only_a_only_b_moved_and_same() -> None:
    a = [
        *incident("CPU", "db1", 5 * M, 20 * M),  # same in B
        *incident("CPU", "db2", 5 * M, 20 * M),  # B fires 3m earlier: moved
        *incident("CPU", "db3", 5 * M, 8 * M),  # B never fires
        *incident("CPU", "db5", 40 * M, 50 * M),  # B fires db5 earlier, without overlap
    ]
    b = [
        *incident("CPU", "db1", 5 * M, 20 * M),
        *incident("CPU", "db2", 2 * M, 21 * M),
        *incident("CPU", "db4", 1 * M, None),  # only B
        *incident("CPU", "db5", 10 * M, 15 * M),
    ]
    d = diff(a, b, T0 + 60 * M)
    assert d.same == 1
    assert [dict(s.labels)["instance_id"] for s in d.only_a] == ["db3", "db5"]
    assert [dict(s.labels)["instance_id"] for s in d.only_b] == ["db4", "db5"]
    (m,) = d.moved
    assert dict(m.a.labels)["instance_id"] == "db2"
    assert (m.fire_shift_s, m.resolve_shift_s) == (-3 * M, 1 * M)
    text = diff_text(d)
    assert "2 only in A, 2 only in B, 1 moved, 1 same" in text
    assert "fired -3m, resolved +1m" in text
    assert json.loads(json.dumps(d.as_dict()))["moved"][0]["fire_shift_s"] == -180.0


def test_diff_of_identical_runs_says_so() -> None:
    a = incident("CPU", "db1", 5 * M, 20 * M)
    d = diff(a, list(a), T0 + 60 * M)
    assert d.identical and d.same == 1
    assert diff_text(d) == "A and B fire identically (1 firing span(s))."


def test_labels_tell_instances_apart_in_the_diff() -> None:
    a = [rec("Disk", "db1", "firing", T0, mount="/data")]
    b = [rec("Disk", "db1", "firing", T0, mount="/logs")]
    d = diff(a, b, T0 + M)
    assert len(d.only_a) == 1 and len(d.only_b) == 1 and not d.moved


def test_compare_table_puts_both_sides_in_each_cell() -> None:
    a = summarize(incident("CPU", "db1", 0, 10 * M), T0 + 3600)
    b = summarize(incident("Mem", "db1", 0, 10 * M), T0 + 3600)
    lines = compare_table(a, b).splitlines()
    assert lines[0].split()[:3] == ["rule", "fires", "A/B"]
    assert lines[2].split()[:4] == ["CPU", "1", "/", "-"]
    assert lines[3].split()[:4] == ["Mem", "-", "/", "1"]


def test_svg_timeline_is_well_formed_with_one_bar_per_span_and_escaped_labels() -> None:
    a = [*incident("CPU", "db<1>&", 5 * M, 20 * M), *incident("CPU", "db2", 30 * M, None)]
    b = incident("CPU", "db2", 25 * M, 40 * M)
    rows = timeline_rows(a, b)
    assert [(r.side, len(r.spans)) for r in rows] == [("A", 1), ("B", 0), ("A", 1), ("B", 1)]
    svg = timeline_svg(rows, T0, T0 + 60 * M)
    root = ET.fromstring(svg)  # well-formed: the label's <, > and & are escaped
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    assert len(bars) == 3
    titles = [r.find(ns + "title").text or "" for r in bars]  # type: ignore[union-attr]
    assert any("db<1>&" in t for t in titles)
    assert any("still firing" in t for t in titles)
    assert float(bars[0].get("x", "0")) < float(bars[1].get("x", "0"))


def test_svg_caps_rows_and_says_how_many_were_left_out() -> None:
    many = [r for i in range(MAX_SVG_ROWS + 5) for r in incident("CPU", f"db{i:04d}", i, i + 60)]
    svg = timeline_svg(timeline_rows(many), T0, T0 + 3600)
    ET.fromstring(svg)
    assert "5 more row(s) not drawn" in svg


def test_html_report_is_self_contained() -> None:
    a = incident("CPU", "db1", 5 * M, 20 * M)
    b = incident("CPU", "db1", 2 * M, 20 * M)
    page = html_report(
        title="Backtest A/B", start=T0, end=T0 + 3600, a=a, b=b, rules_a=["CPU"], facts={"messages": 10}
    )
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and "1 moved" in page
    lowered = page.lower()
    assert "<script" not in lowered and " src=" not in lowered and "<link" not in lowered
    assert "http" not in lowered.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_span_overlap_uses_the_range_end_for_open_spans() -> None:
    open_a = Span("CPU", (), T0, None)
    later = Span("CPU", (), T0 + 50 * M, T0 + 55 * M)
    assert open_a.overlaps(later, T0 + 60 * M)
    assert not open_a.overlaps(later, T0 + 40 * M)


def test_window_check_says_what_an_empty_window_missed() -> None:
    jan = 1_736_935_200.0
    now = 1_790_000_000.0
    found_nothing = WindowCheck(
        start=jan, end=jan + 86400, messages=0, outside=0, kafka=True, slack_s=300,
        available=2988, record_first=now - 60, record_last=now,
    )  # fmt: skip
    assert found_nothing.empty
    (text,) = found_nothing.findings()
    assert "between 2025-01-15T09:55:00Z and 2025-01-16T10:05:00Z" in text
    assert f"hold 2,988 record(s) produced {iso(now - 60)} .. {iso(now)}" in text and "--full-scan" in text

    outside = WindowCheck(
        start=now - 7 * 86400, end=now, messages=2988, outside=2988, kafka=True,
        seen_first=jan, seen_last=jan + 3600,
    )  # fmt: skip
    assert outside.empty and outside.as_dict()["read_event_times"] == [iso(jan), iso(jan + 3600)]
    assert f"pass --from {iso(jan)} --to {iso(jan + 3600)} --full-scan" in outside.findings()[0]

    some = WindowCheck(start=-math.inf, end=now, messages=10, outside=4, kept_first=jan, kept_last=jan)
    assert not some.empty and "4 of the 10 message(s)" in some.findings()[0]
    assert "window the start .. " in some.findings()[0] and some.as_dict()["from"] is None
    assert WindowCheck(start=-math.inf, end=math.inf, messages=0, outside=0).findings() == []
    unreadable = WindowCheck(start=jan, end=now, messages=3, outside=0, bad=3)
    assert unreadable.empty and "none of the 3 message(s) read could be decoded" in unreadable.findings()[0]
