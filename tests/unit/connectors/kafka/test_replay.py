"""Replay inputs without a broker: time arguments, offset bounds, progress, window, file sources."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, writer

from connectors.errors import ConnectorError, PoisonMessage
from connectors.kafka.replay import (
    OUT_OF_RANGE,
    Aligner,
    EventWindow,
    FileSource,
    Observed,
    PartitionRange,
    Progress,
    bound_range,
    parse_time,
    progress_line,
    ready,
    windowed_decoder,
)
from connectors.kafka.serde import decode_json, load_schema

ROOT = Path(__file__).resolve().parents[4]
NOW = 1_763_942_400.0  # 2025-11-24T00:00:00Z
T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T10:00:00Z", T0),
        ("2025-01-15T12:00:00+02:00", T0),
        ("2025-01-15", T0 - 10 * 3600),
        ("now", NOW),
        ("-7d", NOW - 7 * 86400),
        ("now-36h", NOW - 36 * 3600),
        ("-1h30m", NOW - 5400),
        ("+15m", NOW + 900),
        ("-1w", NOW - 604800),
        ("1736935200", T0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["2025-01-15T10:00:00", "yesterday", "", "-7 days"])
def test_parse_time_refuses_ambiguous_or_bad_input(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, NOW)


@pytest.mark.parametrize(
    ("low", "high", "start", "end", "expected"),
    [
        (0, 100, 10, 50, (10, 50)),
        (0, 100, 10, -1, (10, 100)),  # nothing at/after --to: up to the end taken at start
        (0, 100, -1, -1, (100, 100)),  # nothing at/after --from: empty
        (20, 100, 5, 50, (20, 50)),  # retention deleted the start
        (0, 100, 10, 500, (10, 100)),  # never past the end offsets at start
        (0, 100, 60, 50, (60, 60)),  # inverted: empty, never negative
    ],
)
def test_bound_range(low: int, high: int, start: int, end: int, expected: tuple[int, int]) -> None:
    assert bound_range(low, high, start, end) == expected


def test_partition_range_names_like_kafka_source() -> None:
    r = PartitionRange("gds.metrics.pg.prod", 3, 10, 25)
    assert (r.name, r.size) == ("3-gds.metrics.pg.prod", 15)


def test_aligner_holds_partitions_within_the_skew_of_the_slowest() -> None:
    a = Aligner(skew_ms=5000)
    for p in ("p0", "p1", "p2"):
        a.join(p)
    assert a.horizon("p0") == -math.inf  # the others have not fetched yet: wait for them
    a.update("p0", 1_000)
    a.update("p1", 60_000)
    a.update("p2", 2_000)
    assert a.horizon("p0") == 7_000  # p2's head + skew
    assert a.horizon("p1") == 6_000  # held: it is a minute ahead
    a.finish("p2")
    a.finish("p1")
    assert a.horizon("p0") == math.inf  # alone: no limit


def test_ready_counts_a_prefix_and_never_reorders() -> None:
    assert ready([1.0, 2.0, 9.0, 3.0], 5.0, 100) == 2
    assert ready([1.0, 2.0, 3.0], 5.0, 2) == 2
    assert ready([6.0], 5.0, 10) == 0
    assert ready([-math.inf, 1.0], 0.0, 10) == 1


def test_progress_line_with_and_without_a_total() -> None:
    assert progress_line(120_000, 2.0, 0, None) == "backtest: 120,000 messages, 60,000 msg/s"
    assert progress_line(500, 10.0, 250, 1000) == "backtest: 500 messages, 50 msg/s, 25%, ETA 30s"
    assert progress_line(500, 600.0, 100, 1000).endswith("ETA 1.5h")


def test_progress_reports_every_interval_per_batch() -> None:
    clock = iter([0.0, 1.0, 2.5, 3.0, 5.0])
    out = io.StringIO()
    p = Progress(1000, interval_s=2.0, out=out, clock=lambda: next(clock))
    p.add("a", 100, 100)  # t=1: quiet
    p.add("b", 100, 200)  # t=2.5: report
    p.add("a", 100, 300)  # t=3: quiet
    p.add("b", 100, 400)  # t=5: report
    lines = out.getvalue().splitlines()
    assert lines == [
        "backtest: 200 messages, 80 msg/s, 30%, ETA 6s",
        "backtest: 400 messages, 80 msg/s, 70%, ETA 2s",
    ]
    assert (p.messages, p.done) == (400, 700)


def test_progress_interval_zero_never_prints() -> None:
    out = io.StringIO()
    p = Progress(None, interval_s=0, out=out)
    p.add("a", 10, 10)
    assert out.getvalue() == "" and p.messages == 10


def msg(ts: str, value: float = 1.0, iid: str = "db1") -> bytes:
    return json.dumps(
        {
            "timestamp": ts,
            "database_type": "postgresql",
            "instance_id": iid,
            "metric_name": "cpu_usage_percent",
            "value": value,
            "tags": {"region": "eu"},
        }
    ).encode()


def test_windowed_decoder_keeps_start_inclusive_end_exclusive_and_counts() -> None:
    decode, seen = windowed_decoder(decode_json, T0, T0 + 60)
    assert decode(msg("2025-01-15T10:00:00Z"), math.inf).ts == T0
    assert decode(msg("2025-01-15T10:00:59Z"), math.inf).ts == T0 + 59
    for ts in ("2025-01-15T09:59:59Z", "2025-01-15T10:01:00Z"):
        with pytest.raises(PoisonMessage) as exc:
            decode(msg(ts), math.inf)
        assert exc.value.reason == OUT_OF_RANGE
    with pytest.raises(PoisonMessage) as bad:
        decode(b"{", math.inf)  # real poison is still poison
    assert bad.value.reason != OUT_OF_RANGE
    assert seen() == Observed(2, T0, T0 + 59, T0 - 1, T0 + 60)  # kept, and all it decoded


def test_event_window_filters_a_batch_as_the_windowed_decoder_filters_messages() -> None:
    stamps = ("2025-01-15T09:59:59Z", "2025-01-15T10:00:00Z", "2025-01-15T10:00:59Z", "2025-01-15T10:01:00Z")
    decoded = [decode_json(msg(ts), math.inf) for ts in stamps]
    window = EventWindow(T0, T0 + 60)
    assert window.keep(decoded[1:3]) == decoded[1:3]  # inside: the batch as it is
    assert window.keep(decoded[::-1]) == [decoded[2], decoded[1]]  # across both edges, in order
    assert window.keep([decoded[3]]) == [] and window.keep([]) == []
    assert window.observed() == Observed(3, T0, T0 + 59, T0 - 1, T0 + 60)
    decode, seen = windowed_decoder(decode_json, T0, T0 + 60)
    for raw in [msg(ts) for ts in stamps[1:3]] + [msg(ts) for ts in stamps[::-1]] + [msg(stamps[3])]:
        with contextlib.suppress(PoisonMessage):
            decode(raw, math.inf)
    assert seen() == window.observed()


def write_avro(path: Path, rows: list[dict[str, Any]]) -> None:
    schema = parse_schema(json.loads(load_schema("metric.v2.avsc")))
    records = [
        {
            **r,
            "timestamp": datetime.fromisoformat(r["timestamp"]).astimezone(UTC),
            "metadata": {},
            "unit": None,
        }
        for r in rows
    ]
    with path.open("wb") as f:
        writer(f, schema, records)


def drain(source: FileSource) -> list[Any]:
    out: list[Any] = []
    for name in source.list_parts():
        part = source.build_part("in", name, None)
        while True:
            try:
                out.extend(part.next_batch())
            except StopIteration:
                break
        part.close()
    return out


def test_avro_container_files_read_as_the_same_metrics_as_jsonl(tmp_path: Path) -> None:
    rows = [json.loads(msg(f"2025-01-15T10:00:{s:02d}Z", float(s), f"db{s % 3}")) for s in range(0, 60, 5)]
    jsonl, avro = tmp_path / "m.jsonl", tmp_path / "m.avro"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_avro(avro, rows)
    from_json = drain(FileSource([jsonl]))
    from_avro = drain(FileSource([avro], batch_size=5))
    assert [m.key for m in from_avro] == [m.key for m in from_json]
    assert [decode_json(m.value, math.inf) for m in from_avro] == [
        decode_json(m.value, math.inf) for m in from_json
    ]
    assert [m.offset for m in from_avro] == list(range(len(rows)))


def test_files_are_read_one_after_the_other_with_progress_and_resume(tmp_path: Path) -> None:
    rows = [json.loads(msg(f"2025-01-15T10:00:{s:02d}Z", float(s))) for s in range(10)]
    avro, jsonl = tmp_path / "a.avro", tmp_path / "b.jsonl"
    write_avro(avro, rows[:6])
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows[6:]))
    source = FileSource([avro, jsonl], batch_size=4)
    assert source.list_parts() == ["files"]
    part = source.build_part("in", "files", None)
    first = part.next_batch()
    state = part.snapshot()
    part.close()
    assert (len(first), state, source.progress.messages) == (4, (0, 4), 4)
    resumed = source.build_part("in", "files", state)
    rest: list[Any] = []
    while True:
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break
    values = [decode_json(m.value, math.inf).value for m in first + rest]
    assert values == [float(s) for s in range(10)]  # file order, then line order
    assert [m.topic for m in rest] == ["file:a.avro"] * 2 + ["file:b.jsonl"] * 4
    assert resumed.snapshot() == (1, jsonl.stat().st_size)
    assert source.progress.done == avro.stat().st_size + jsonl.stat().st_size


def test_missing_or_broken_files_are_connector_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="not found"):
        FileSource([tmp_path / "nope.jsonl"])
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"not avro")
    with pytest.raises(ConnectorError, match="not an Avro object container file"):
        FileSource([bad]).build_part("in", "files", None)


# --------------------------------------------------------------------------- issue 11 (item 5)


@pytest.mark.parametrize(("text", "expected"), [("-1y", NOW - 365 * 86400), ("-2w1d", NOW - 15 * 86400)])
def test_relative_times_use_the_one_duration_grammar(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["-30m1h", "-1h1h", "now-5 minutes"])
def test_relative_times_refuse_what_the_duration_grammar_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text, NOW)


def test_a_changed_kafka_message_is_refused_at_import_even_under_python_dash_o() -> None:
    # `python -O` strips asserts: the field check must be a real one, or code written against
    # bytewax's message would silently read the wrong field of ours
    code = """
import dataclasses
import bytewax.connectors.kafka as kafka

@dataclasses.dataclass(frozen=True)
class Changed:
    key: bytes
    value: bytes
    topic: str

kafka.KafkaSourceMessage = Changed
try:
    import connectors.kafka.replay
except ImportError as exc:
    print("refused:", exc)
else:
    print("imported")
"""
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
    )
    assert "refused: bytewax changed KafkaSourceMessage" in out.stdout, out.stdout + out.stderr
    assert "update connectors/kafka/message.py's SourceMessage" in out.stdout
