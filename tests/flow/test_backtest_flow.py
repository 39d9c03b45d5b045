"""The backtest flow in-process: state across the range, A/B in one pass, windows, inputs, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, writer

from connectors.kafka.serde import load_schema
from flows import backtest
from flows.common import Poison
from rules.loader import BUNDLED, load_rules
from rules.metric import iso
from rules.model import AlertEvent

T0 = 1_736_935_200  # 2025-01-15T10:00:00Z
BUNDLED_RULES = load_rules([BUNDLED])

KEEP_RULES = """
settings: {evaluation_interval: 1m}
alert_rules:
  - name: DiskFull
    metric: disk_usage_percent
    condition: {operator: ">", threshold: 90, duration: 2m, aggregation: last}
    window: 1m
    keep_firing_for: 10m
"""


def row(ts: float, iid: str, metric: str, value: float, **tags: str) -> dict[str, Any]:
    return {
        "timestamp": iso(ts),
        "database_type": "postgresql",
        "instance_id": iid,
        "metric_name": metric,
        "value": value,
        "tags": {"environment": "production", "region": "eu-west-1", **tags},
    }


def incidents(instances: int = 6, minutes: int = 120) -> list[dict[str, Any]]:
    """CPU of each instance: two incidents of 8-13 minutes at staggered times."""
    out = []
    for step in range(minutes * 4):
        ts = T0 + step * 15
        minute = step / 4
        for k in range(instances):
            hot = any(s <= minute < s + 8 + k % 6 for s in (10 + 7 * k, 70 + 3 * k))
            out.append(row(ts, f"db-{k:02d}", "cpu_usage_percent", 92.0 + k % 3 if hot else 30.0 + k))
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_avro(path: Path, rows: list[dict[str, Any]]) -> Path:
    schema = parse_schema(json.loads(load_schema("metric.v2.avsc")))
    records = [
        {**r, "timestamp": datetime.fromtimestamp(_ts(r), UTC), "metadata": {}, "unit": None} for r in rows
    ]
    with path.open("wb") as f:
        writer(f, schema, records)
    return path


def _ts(r: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(r["timestamp"])).timestamp()


def fires(records: list[dict[str, object]], name: str) -> list[tuple[str, str]]:
    return [(str(r["state"]), str(r["at"])) for r in records if r["alert_name"] == name]


def test_keep_firing_for_holds_through_a_short_dip_and_resolves_after_a_long_one(tmp_path: Path) -> None:
    keep = tmp_path / "keep.yml"
    keep.write_text(KEEP_RULES)
    plain = tmp_path / "plain.yml"
    plain.write_text(KEEP_RULES.replace("    keep_firing_for: 10m\n", ""))
    data = []
    for step in range(60 * 4):
        minute = step / 4
        full = minute < 20 or 26 <= minute < 40  # a 6 minute dip at 20m, then 20 minutes low
        data.append(row(T0 + step * 15, "db1", "disk_usage_percent", 95.0 if full else 80.0, mount="/"))
    path = write_jsonl(tmp_path / "disk.jsonl", data)

    result = backtest.replay(
        [("A", load_rules([keep])), ("B", load_rules([plain]))], backtest.file_input([path], progress_s=0)
    )
    t = lambda minutes: iso(T0 + minutes * 60)  # noqa: E731
    # A: one incident across the dip (state carried through the whole range), resolved 10m after 40m
    assert fires(result.records["A"], "DiskFull") == [("firing", t(2)), ("resolved", t(50))]
    # B, the same rule without keep_firing_for: the dip resolves it and it fires again
    assert fires(result.records["B"], "DiskFull") == [
        ("firing", t(2)),
        ("resolved", t(20)),
        ("firing", t(28)),
        ("resolved", t(40)),
    ]


def test_compare_runs_both_rule_sets_in_one_pass_with_the_results_of_separate_runs(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents())
    other = tmp_path / "b.yml"
    other.write_text(
        (BUNDLED / "alert-rules.yml")
        .read_text()
        .replace("threshold: 80, duration: 5m", "threshold: 93, duration: 3m")
    )
    rules_b = load_rules([other])
    both = backtest.replay([("A", BUNDLED_RULES), ("B", rules_b)], backtest.file_input([path], progress_s=0))
    alone_a, _ = backtest.run(BUNDLED_RULES, [path])
    alone_b, _ = backtest.run(rules_b, [path])
    assert both.records["A"] == alone_a and both.records["B"] == alone_b
    assert both.records["A"] != both.records["B"]
    assert both.messages == len(path.read_text().splitlines())  # read once, not once per rule set


def test_shard_count_does_not_change_the_result(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=5, minutes=60))
    runs = [
        backtest.replay([("A", BUNDLED_RULES)], backtest.file_input([path], progress_s=0), shards=n).records[
            "A"
        ]
        for n in (backtest.DEFAULT_SHARDS, 4, 64)
    ]
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_event_time_window_cuts_files_like_a_filtered_recording(tmp_path: Path) -> None:
    rows = incidents()
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    lo, hi = T0 + 30 * 60, T0 + 90 * 60
    cut = write_jsonl(tmp_path / "cut.jsonl", [r for r in rows if lo <= _ts(r) < hi])
    windowed = backtest.replay(
        [("A", BUNDLED_RULES)], backtest.file_input([path], start=lo, end=hi, progress_s=0)
    )
    expected, _ = backtest.run(BUNDLED_RULES, [cut])
    assert windowed.records["A"] == expected and expected
    assert windowed.skipped == len(rows) - len(cut.read_text().splitlines())
    assert windowed.poison == []  # skipped messages are not bad messages
    assert (windowed.first_ts, windowed.last_ts) == (lo, hi - 15)
    assert all(lo <= datetime.fromisoformat(str(r["at"])).timestamp() <= hi for r in expected)


def test_avro_container_input_gives_the_jsonl_transitions(tmp_path: Path) -> None:
    rows = incidents(instances=4, minutes=60)
    from_json, _ = backtest.run(BUNDLED_RULES, [write_jsonl(tmp_path / "m.jsonl", rows)])
    from_avro, bad = backtest.run(BUNDLED_RULES, [write_avro(tmp_path / "m.avro", rows)])
    assert from_avro == from_json and from_json and bad == []


def test_build_flow_keeps_its_first_signature(tmp_path: Path) -> None:
    from bytewax.testing import run_main

    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=2, minutes=40))
    (tmp_path / "bad.jsonl").write_text('{"timestamp": 1\n')
    events: list[AlertEvent] = []
    poison: list[Poison] = []
    run_main(backtest.build_flow(BUNDLED_RULES, [path, tmp_path / "bad.jsonl"], events, poison, shards=4))
    assert backtest.transitions(events) == backtest.run(BUNDLED_RULES, [path])[0]
    assert [p.error for p in poison] and "JSON" in poison[0].error.upper()


def test_cli_writes_log_summary_diff_html_and_reports_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents())
    other = tmp_path / "b.yml"
    other.write_text(
        (BUNDLED / "alert-rules.yml")
        .read_text()
        .replace("threshold: 80, duration: 5m", "threshold: 93, duration: 3m")
    )
    out, summary, diff, html = (tmp_path / n for n in ("out.jsonl", "summary.json", "diff.json", "r.html"))
    code = backtest.main(
        [
            "--rules", str(BUNDLED), "--compare", str(other), "--input", str(path),
            "--from", iso(T0), "--to", iso(T0 + 7200),
            "--output", str(out), "--summary", str(summary), "--diff", str(diff), "--html", str(html),
            "--progress", "1e-9",
        ]
    )  # fmt: skip
    assert code == 0
    cap = capsys.readouterr()
    final = json.loads(cap.err.strip().splitlines()[-1])
    assert final["messages"] == 6 * 480 and final["skipped_out_of_range"] == 0
    assert final["messages_per_s"] > 0 and final["transitions"] > 0
    assert any(line.startswith("backtest: ") and "msg/s" in line for line in cap.err.splitlines())
    assert "fires A/B" in cap.out and "moved" in cap.out
    log = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["side"] for r in log} == {"A", "B"}
    assert len(log) == final["transitions"] + final["transitions_b"]
    s = json.loads(summary.read_text())
    high = next(x for x in s["summary"] if x["rule"] == "HighCPUUsage")
    assert high["fires"] == 12 and high["instances"] == 6 and high["flaps"] == 6
    assert s["compare"]["summary"] and s["from"] == iso(T0)
    d = json.loads(diff.read_text())
    assert set(d) >= {"only_a", "only_b", "moved", "same"}
    assert d["moved"] or d["only_a"]
    page = html.read_text()
    assert "<svg" in page and "<script" not in page


def test_cli_single_rule_set_prints_the_summary_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=3, minutes=60))
    out = tmp_path / "out.jsonl"
    assert (
        backtest.main(
            ["--rules", str(BUNDLED), "--input", str(path), "--output", str(out), "--progress", "0"]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert "rule" in cap.out and "HighCPUUsage" in cap.out and "still firing" in cap.out
    assert "backtest:" not in cap.err.split("\n")[0]  # no progress line with --progress 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == backtest.run(BUNDLED_RULES, [path])[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "x.jsonl"], "--rules is required"),
        (["--rules", "r"], "either --input FILE or --topic"),
        (["--rules", "r", "--input", "x", "--diff", "d.json"], "--diff needs --compare"),
        (["--rules", "r", "--topic", "t"], "--topic needs --from"),
        (["--rules", "r", "--input", "x", "--from", "2025-01-15T10:00:00"], "without a zone"),
        (["--rules", "r", "--input", "x", "--from", "-1d", "--to", "-2d"], "--from must be before --to"),
    ],
)
def test_cli_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        backtest.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- empty windows (issue 10, item 8)


def test_a_window_missing_the_data_says_where_it_is_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--from -7d --to now` over an older recording: not an all-zero summary with exit 0."""
    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=2, minutes=30))
    summary, html = tmp_path / "s.json", tmp_path / "r.html"
    argv = ["--rules", str(BUNDLED), "--input", str(path), "--from", "-7d", "--to", "now"]
    code = backtest.main([*argv, "--summary", str(summary), "--html", str(html), "--progress", "0"])
    assert code == backtest.EXIT_EMPTY_WINDOW == 3
    err = capsys.readouterr().err.strip().splitlines()
    last = iso(T0 + 30 * 60 - 15)
    (warning,) = [line for line in err if "WARNING" in line]
    assert "all 240 of the 240 message(s) read fell outside the event-time window" in warning
    assert f"their event times span {iso(T0)} .. {last}" in warning
    assert f"pass --from {iso(T0)} --to {last}" in warning and "--full-scan" not in warning
    assert json.loads(err[-1])["window_empty"] is True
    window = json.loads(summary.read_text())["window"]
    assert (
        window["empty"] is True
        and window["outside"] == 240
        and window["warnings"] == [warning.split(": ", 2)[2]]
    )
    assert window["read_event_times"] == [iso(T0), last]
    assert "class='warning'" in html.read_text() and "fell outside the event-time window" in html.read_text()


def test_a_partly_missed_window_is_a_note_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=2, minutes=30))
    summary = tmp_path / "s.json"
    argv = ["--rules", str(BUNDLED), "--input", str(path), "--from", iso(T0 + 20 * 60), "--to", "now"]
    assert backtest.main([*argv, "--summary", str(summary), "--progress", "0"]) == 0
    err = capsys.readouterr().err
    assert "note: 160 of the 240 message(s) read fell outside the event-time window" in err
    window = json.loads(summary.read_text())["window"]
    assert window["empty"] is False and window["outside"] == 160


def test_a_whole_window_says_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", incidents(instances=2, minutes=30))
    assert backtest.main(["--rules", str(BUNDLED), "--input", str(path), "--progress", "0"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" not in err and "note:" not in err


def test_full_scan_is_for_topics(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        backtest.main(["--rules", "r", "--input", "x", "--full-scan"])
    assert exc.value.code == 2 and "--full-scan is for --topic" in capsys.readouterr().err
