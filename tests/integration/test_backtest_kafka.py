"""Backtest by time range over a real 4-partition topic: equal to the file backtest, cut by
--from/--to, and finished even while producers keep writing."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.kafka.replay import plan_ranges
from flows import backtest
from rules.loader import BUNDLED, load_rules
from rules.metric import iso

pytestmark = pytest.mark.integration
RULES = load_rules([BUNDLED])
DELAY_S = 60  # record timestamps trail event time, as a collector's delivery delay would


def recording(t0: float, instances: int = 6, minutes: int = 120) -> list[tuple[bytes, bytes, float]]:
    """(key, value, event time): CPU with two incidents per instance, memory, and one poison line."""
    out: list[tuple[bytes, bytes, float]] = []
    for step in range(minutes * 4):
        ts = t0 + step * 15
        minute = step / 4
        for k in range(instances):
            iid = f"db-{k:02d}"
            hot = any(s <= minute < s + 8 + k % 6 for s in (10 + 7 * k, 70 + 3 * k))
            for metric, value in (
                ("cpu_usage_percent", 92.0 + k % 3 if hot else 30.0 + k),
                ("memory_usage_percent", 60.0),
            ):
                body = {
                    "timestamp": iso(ts),
                    "database_type": "postgresql",
                    "instance_id": iid,
                    "metric_name": metric,
                    "value": value,
                    "tags": {"environment": "production", "region": "eu-west-1"},
                }
                out.append((iid.encode(), json.dumps(body).encode(), ts))
        if step == 100:
            out.append((b"db-00", b'{"timestamp": "broken', ts))
    return out


def produce(bootstrap: str, topic: str, rows: list[tuple[bytes, bytes, float]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value, ts in rows:
        p.produce(topic, value, key, timestamp=int((ts + DELAY_S) * 1000))
        p.poll(0)
    assert p.flush(30) == 0


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    assert backtest.main([*argv, "--progress", "0"]) == 0
    cap = capsys.readouterr()
    return json.loads(cap.err.strip().splitlines()[-1]), cap.out


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def recorded(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> tuple[str, Path, float, int]:
    """A topic and a JSONL file with the same messages; event times within the topic's retention."""
    t0 = (int(time.time()) // 3600 - 4) * 3600
    topic = topic_factory("backtest", partitions=4)
    rows = recording(t0)
    produce(kafka_bootstrap, topic, rows)
    jsonl = tmp_path / "same.jsonl"
    jsonl.write_bytes(b"".join(v + b"\n" for _, v, _ in rows))
    return topic, jsonl, t0, len(rows)


def test_kafka_range_equals_the_file_backtest_and_windows_cut(
    recorded: tuple[str, Path, float, int], kafka_bootstrap: str, tmp_path: Path, capsys: Any
) -> None:
    topic, jsonl, t0, total = recorded
    ranges = plan_ranges([kafka_bootstrap], [topic], t0 - 3600, t0 + 3 * 3600)
    assert len(ranges) == 4 and sum(r.size for r in ranges) == total  # keyed over every partition

    kafka_out, file_out = tmp_path / "kafka.jsonl", tmp_path / "file.jsonl"
    whole = ["--rules", str(BUNDLED), "--from", iso(t0), "--to", iso(t0 + 7200)]
    k, _ = cli([*whole, "--topic", topic, "--bootstrap", kafka_bootstrap, "--output", str(kafka_out)], capsys)
    f, _ = cli([*whole, "--input", str(jsonl), "--output", str(file_out)], capsys)
    assert lines(kafka_out) == lines(file_out)
    assert len(lines(kafka_out)) == 24  # 6 instances x 2 incidents x (fire + resolve)
    assert k["messages"] == f["messages"] == total and k["bad_messages"] == f["bad_messages"] == 1

    # a window: offsets found by time, messages outside it skipped by event time
    lo, hi = t0 + 30 * 60, t0 + 90 * 60
    window = ["--rules", str(BUNDLED), "--from", iso(lo), "--to", iso(hi)]
    kw, file_w = tmp_path / "kw.jsonl", tmp_path / "fw.jsonl"
    k2, _ = cli([*window, "--topic", topic, "--bootstrap", kafka_bootstrap, "--output", str(kw)], capsys)
    f2, _ = cli([*window, "--input", str(jsonl), "--output", str(file_w)], capsys)
    got = lines(kw)
    assert got == lines(file_w) and got != lines(kafka_out)
    assert all(iso(lo) <= str(r["at"]) <= iso(hi) for r in got)
    assert 0 < len(got) < 24
    kept = f2["messages"] - f2["skipped_out_of_range"]
    assert k2["messages"] - k2["skipped_out_of_range"] == kept == 60 * 4 * 12 + 1
    assert k2["bad_messages"] == 1  # a message with no readable time is reported, not skipped
    # only the window (plus the default 5m slack) was read from Kafka, not the whole topic
    assert k2["messages"] < total * 0.6 and k2["skipped_out_of_range"] < f2["skipped_out_of_range"]


def test_range_replay_terminates_while_producers_keep_writing(
    recorded: tuple[str, Path, float, int], kafka_bootstrap: str, capsys: Any
) -> None:
    topic, _, _, total = recorded
    stop = threading.Event()
    extra = {"n": 0}

    def keep_writing() -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        while not stop.is_set():
            iid = f"live-{extra['n'] % 8}"
            body = {
                "timestamp": iso(time.time()),
                "database_type": "postgresql",
                "instance_id": iid,
                "metric_name": "cpu_usage_percent",
                "value": 50.0,
            }
            p.produce(topic, json.dumps(body).encode(), iid.encode())
            extra["n"] += 1
            p.poll(0)
            time.sleep(0.001)
        p.flush(10)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        # relative times; --to in the future still ends at the end offsets taken at start
        final, out = cli(
            [
                "--rules",
                str(BUNDLED),
                "--topic",
                topic,
                "--bootstrap",
                kafka_bootstrap,
                "--from",
                "-6h",
                "--to",
                "+1h",
            ],
            capsys,
        )
        elapsed = time.monotonic() - started
        assert writer.is_alive()  # the producer never stopped; the replay did
    finally:
        stop.set()
        writer.join(15)
    assert elapsed < 60
    assert total <= final["messages"] < total + extra["n"]
    assert "HighCPUUsage" in out


def test_an_instance_split_over_topics_of_different_density_replays_as_recorded(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    """Database metrics in a dense 2-partition topic, the heartbeat (`up`) in a sparse one.

    Read a batch per partition in turn, the sparse topic would run an hour ahead and the
    database samples would land behind the instances' watermarks (dropped as late); the
    partitions are kept aligned in record time, so the result is the one of the recording
    read in time order.
    """
    t0 = (int(time.time()) // 3600 - 3) * 3600
    db_topic = topic_factory("db", partitions=2)
    os_topic = topic_factory("os", partitions=1)
    db_rows = [r for r in recording(t0, instances=6, minutes=90) if b"broken" not in r[1]]
    os_rows: list[tuple[bytes, bytes, float]] = []
    for step in range(90):  # a heartbeat a minute: a 1000-record batch spans the whole 90 minutes
        ts = t0 + step * 60
        for k in range(6):
            body = {
                "timestamp": iso(ts),
                "database_type": "postgresql",
                "instance_id": f"db-{k:02d}",
                "metric_name": "up",
                "value": 1.0,
            }
            os_rows.append((f"db-{k:02d}".encode(), json.dumps(body).encode(), ts))
    produce(kafka_bootstrap, db_topic, db_rows)
    produce(kafka_bootstrap, os_topic, os_rows)
    in_order = sorted(db_rows + os_rows, key=lambda r: r[2])
    jsonl = tmp_path / "in-order.jsonl"
    jsonl.write_bytes(b"".join(v + b"\n" for _, v, _ in in_order))
    expected, _ = backtest.run(RULES, [jsonl])
    assert len(expected) >= 12 and not any(r["alert_name"] == "MetricsAbsent" for r in expected)

    def replay(max_skew_s: float) -> list[dict[str, object]]:
        inp = backtest.kafka_input(
            [kafka_bootstrap], [db_topic, os_topic], t0, t0 + 5400, progress_s=0, max_skew_s=max_skew_s
        )
        return backtest.replay([("A", RULES)], inp).records["A"]

    assert replay(5.0) == expected
    # the test can tell: without alignment the sparse topic's first batch runs the instances'
    # watermarks to the end, and the dense topic's later batches (41 minutes each) come late
    assert replay(math.inf) != expected


def test_records_produced_long_after_their_event_times_are_found_not_silently_missed(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, capsys: Any
) -> None:
    """A January recording produced today: the offset search by record time finds nothing in
    a January window, and the event times miss a `-1h .. now` window. Both say what the topic
    holds and what to pass, exit 3; `--full-scan` then replays it like the file."""
    t0 = 1_736_935_200  # 2025-01-15T10:00:00Z
    topic = topic_factory("reimport", partitions=2)
    rows = recording(t0, instances=3, minutes=40)
    produced_from = int(time.time())
    p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for key, value, _ in rows:
        p.produce(topic, value, key)  # record time: now
        p.poll(0)
    assert p.flush(30) == 0
    jsonl = tmp_path / "same.jsonl"
    jsonl.write_bytes(b"".join(v + b"\n" for _, v, _ in rows))
    base = ["--rules", str(BUNDLED), "--topic", topic, "--bootstrap", kafka_bootstrap, "--progress", "0"]
    summary = tmp_path / "s.json"

    # 1. January window: no record is stamped in January
    jan = ["--from", "2025-01-15", "--to", "2025-01-16"]
    assert backtest.main([*base, *jan, "--summary", str(summary)]) == backtest.EXIT_EMPTY_WINDOW
    err = capsys.readouterr().err
    assert "no record of the topic(s) is stamped between 2025-01-14T23:55:00Z and 2025-01-16T00:05:00Z" in err
    assert f"hold {len(rows):,} record(s) produced " in err and "add --full-scan" in err
    window = json.loads(summary.read_text())["window"]
    assert window["empty"] and window["topic_records"] == len(rows) and window["messages"] == 0
    first, last_made = (datetime.fromisoformat(t).timestamp() for t in window["topic_record_times"])
    assert produced_from <= first <= last_made <= time.time() + 1  # produce times, not 2025

    # 2. a window around the produce time: every record read, every event time outside
    assert backtest.main([*base, "--from", "-1h", "--to", "+1h"]) == backtest.EXIT_EMPTY_WINDOW
    err = capsys.readouterr().err
    last = iso(t0 + (40 * 4 - 1) * 15)
    assert f"all {len(rows) - 1:,} of the {len(rows):,} message(s) read fell outside" in err  # 1 unreadable
    assert f"pass --from {iso(t0)} --to {last} --full-scan" in err

    # 3. what the warning said to pass: the whole topic, cut by event time, as the file
    out, file_out = tmp_path / "k.jsonl", tmp_path / "f.jsonl"
    assert backtest.main([*base, *jan, "--full-scan", "--output", str(out)]) == 0
    final = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert final["messages"] == len(rows) and final["skipped_out_of_range"] == 0
    assert (
        backtest.main(["--rules", str(BUNDLED), "--input", str(jsonl), *jan, "--output", str(file_out)]) == 0
    )
    assert lines(out) == lines(file_out) and lines(out)
