"""bench/report.py on canned JSON lines: one table, targets computed from the numbers."""

from __future__ import annotations

import json

from bench import report

MACHINE = {
    "bench": "machine",
    "cpus": 2,
    "mem_gib": 24,
    "cpu": "Xeon",
    "python": "3.11.7",
    "at": "2026-11-28T20:00:00Z",
}
BASE = {"messages": 1_000_000, "series": 10_000, "rules": 50}
LINES = [
    MACHINE,
    {"bench": "ceiling_consume_decode", **BASE, "messages_per_s": 200_000},
    {"bench": "route_decode", **BASE, "messages_per_s": 150_000, "ratio_to_ceiling": 0.75},
    {"bench": "alerting_separate", **BASE, "messages_per_s": 130_000, "ratio_to_ceiling": 0.65},
    {
        "bench": "alerting_inline",
        **BASE,
        "messages_per_s": 90_000,
        "ratio_to_ceiling": 0.45,
        "notifications": 518,
    },
    {
        "bench": "scaling_2_processes",
        **BASE,
        "speedup": 1.2,
        "one_process_messages_per_s": 130_000,
        "two_processes_messages_per_s": 156_000,
    },
    {"bench": "windowing_baseline", **BASE, "messages_per_s": 28_000, "ratio_to_ceiling": 0.14},
    {"bench": "backtest_topic", **BASE, "messages_per_s": 140_000, "ratio_to_live": 1.077},
    {
        "bench": "cardinality_10000",
        "series": 10_000,
        "messages": 1_000_000,
        "messages_per_s": 40_000,
        "peak_rss_mib": 300.0,
        "rss_after_load_mib": 200.0,
        "rss_no_series_mib": 90.0,
        "rss_per_series_bytes": 11_534,
        "snapshot_bytes_per_series": 223.3,
    },
    {
        "bench": "cardinality_1000000",
        "series": 1_000_000,
        "messages": 6_000_000,
        "messages_per_s": 20_000,
        "peak_rss_mib": 2500.0,
        "rss_after_load_mib": 2000.0,
        "rss_no_series_mib": 90.0,
        "rss_per_series_bytes": 2003,
        "snapshot_bytes_per_series": 600.0,
    },
    {
        "bench": "delivery_latency_under_load",
        "arrival_to_receiver_p50_ms": 80.0,
        "arrival_to_receiver_p99_ms": 240.0,
        "breach_to_receiver": {"p50_ms": 2000.0, "p99_ms": 2900.0},
    },
    {
        "bench": "catchup_memory",
        "backlog_messages": 5_000_000,
        "peak_catchup_mib": 400.0,
        "steady_median_mib": 300.0,
        "ratio": 1.333,
    },
]


def table(lines: list[dict[str, object]]) -> dict[str, list[str]]:
    """figure -> the other cells, from the rendered Markdown."""
    text = report.render(lines)
    rows = [line for line in text.splitlines() if line.startswith("| ")][2:]
    out = {}
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


def find(rows: dict[str, list[str]], start: str) -> list[str]:
    matches = [v for k, v in rows.items() if k.startswith(start)]
    assert len(matches) == 1, (start, list(rows))
    return matches[0]


def test_targets_are_computed_from_the_numbers() -> None:
    rows = table(LINES)
    assert find(rows, "alerting job, delivery in its own process") == [
        "130,000 msg/s",
        "0.65",
        ">= 0.6 of ceiling",
        "yes",
    ]
    assert find(rows, "alerting job, delivery inline")[1:] == ["0.45", ">= 0.5 of ceiling", "**no**"]
    assert "518 posts" in find(rows, "alerting job, delivery inline")[0]
    assert find(rows, "2 processes x 1 worker")[1:] == ["1.20x", ">= 1.7x one process", "**no**"]
    assert find(rows, "backtest from the same topic")[-1] == "yes"
    # 20k / 40k = 0.5 of the smallest size: not within 30 %
    assert find(rows, "cardinality: 1,000,000 series")[1:] == [
        "0.50 of 10,000",
        ">= 0.7 of the smallest size (within 30 %)",
        "**no**",
    ]
    assert find(rows, "peak RSS at 1M series") == ["2,500 MiB", "", "< 2048 MiB", "**no**"]
    assert find(rows, "recovery snapshot per series at 1,000,000")[-1] == "**no**"
    assert find(rows, "resident memory per series at 10,000")[0].startswith("11,534 B")
    assert find(rows, "catch-up")[1:] == ["1.33x", "<= 1.5x steady state", "yes"]
    assert find(rows, "Bytewax: route by key")[:2] == ["150,000 msg/s", "0.75"]
    latency = find(rows, "latency at 80 % load")
    assert latency == [
        "p50 80 ms, p99 240 ms (from the breaching sample: p99 2,900 ms)",
        "",
        "p99 < 250 ms",
        "yes",
    ]
    # the maximum the load is a fraction of, measured live in the same run
    maximum = {"bench": "alerting_live_max", "messages_per_s": 44330, "saturated": True}
    live = table([maximum, {**LINES[-2], "load_messages_per_s": 35500, "max_messages_per_s": 44330}])
    assert find(live, "live maximum")[0] == "44,330 msg/s"
    assert find(live, "latency at 80 % load")[0].endswith("; at 35,500 msg/s of a 44,330 msg/s maximum")
    # a line of the older delivery bench: p99 of the breach only
    old = table([{"bench": "delivery_latency_under_load", "p50_ms": 2077.1, "p99_ms": 2953.0}])
    assert find(old, "latency at 80 % load")[0::3] == ["p50 2,077 ms, p99 2,953 ms", "**no**"]


def test_a_changed_number_changes_the_verdict() -> None:
    lines = [dict(x) for x in LINES]
    for x in lines:
        if x["bench"] == "alerting_separate":
            x["ratio_to_ceiling"] = 0.55
        if x["bench"] == "catchup_memory":
            x["ratio"] = 2.0
    rows = table(lines)
    assert find(rows, "alerting job, delivery in its own process")[-1] == "**no**"
    assert find(rows, "catch-up")[-1] == "**no**"


def test_missing_benches_read_not_run() -> None:
    rows = table([MACHINE, {"bench": "ceiling_consume_decode", **BASE, "messages_per_s": 200_000}])
    assert find(rows, "alerting job, delivery in its own process") == [
        "not run",
        "",
        ">= 0.6 of ceiling",
        "not run",
    ]
    assert find(rows, "latency at 80 % load")[0] == "not run"
    assert find(rows, "cardinality")[0] == "not run"
    assert find(rows, "operations")[0] == "not run"


def test_machine_and_date_above_the_table_and_stray_output_ignored() -> None:
    text = "\n".join(json.dumps(x) for x in LINES) + "\nnot json\n{broken\n"
    lines = report.parse(text)
    assert len(lines) == len(LINES)
    rendered = report.render(lines)
    assert rendered.startswith("Measured 2026-11-28T20:00:00Z on Xeon, 2 cores, 24 GiB RAM, Python 3.11.7")
    assert "| figure | value | ratio | target | met? |" in rendered
    timed = report.render([*lines, {"bench": "run", "mode": "quick", "seconds": 300}])
    assert "`make bench` (quick) took 5 min." in timed.splitlines()[0]


def test_the_last_line_of_a_name_counts_and_old_lines_do_not_break_it() -> None:
    old = {"bench": "alerting_separate", "messages": 1}  # an older bench's line: no rate
    rows = table([*LINES, old])
    assert find(rows, "alerting job, delivery in its own process")[0].startswith("line without")
    rows = table([old, *LINES])
    assert find(rows, "alerting job, delivery in its own process")[-1] == "yes"


def test_the_catchup_row_names_its_steady_reference() -> None:
    line = {
        "bench": "catchup_memory",
        "backlog_messages": 5_000_000,
        "peak_catchup_mib": 241.0,
        "steady_median_mib": 187.0,
        "steady_s": 560.0,
        "steady_90s_mib": 150.0,
        "ratio": 1.289,
    }
    row = find(table([MACHINE, line]), "catch-up")
    assert row[0] == (
        "241 / 187 MiB (5,000,000 messages; steady: a fresh job after 560 s of the live feed,"
        " 150 MiB after 90 s)"
    )
    assert row[1:] == ["1.29x", "<= 1.5x steady state", "yes"]
    # a short steady run (BENCH=quick) has no 90 s reference
    del line["steady_90s_mib"]
    assert find(table([MACHINE, {**line, "steady_s": 30.0}]), "catch-up")[0].endswith(
        "messages; steady: a fresh job after 30 s of the live feed)"
    )


def test_the_scaling_row_splits_the_speed_up_where_the_line_can() -> None:
    line = {
        "bench": "scaling_2_processes",
        **BASE,
        "speedup": 1.47,
        "one_process_messages_per_s": 150_000,
        "two_processes_messages_per_s": 220_500,
        "cores_ratio": 1.76,
        "cpu_per_message_ratio": 1.19,
        "machine_busy_two_processes": 0.785,
    }
    row = find(table([MACHINE, line]), "2 processes x 1 worker")
    assert row[0] == (
        "220,500 vs 150,000 msg/s; 1.76x the cores (machine 78% busy over the run)"
        " / 1.19x the CPU per message"
    )
    assert row[1:] == ["1.47x", ">= 1.7x one process", "**no**"]
    # an older line, without the split: the rates only
    older = {k: v for k, v in line.items() if k not in ("cores_ratio", "cpu_per_message_ratio")}
    assert find(table([MACHINE, older]), "2 processes x 1 worker")[0] == "220,500 vs 150,000 msg/s"
