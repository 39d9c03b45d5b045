"""Scaled and killed worker processes, as pods run them: `python -m bytewax.run flows.alerting`.

Expected notifications come from the backtest over the same messages; the receiver is a
real HTTP server on loopback. Waits are bounded polls on what arrived, never timing asserts.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from flows import backtest
from rules.loader import BUNDLED, load_rules
from tests.support.data import T0, incident_rows, produce, record_count, write_jsonl
from tests.support.http_receiver import Recorder, RecordingServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expected_ids(rows: list[dict[str, Any]], tmp_path: Path) -> set[str]:
    path = tmp_path / "expected.jsonl"
    write_jsonl(path, rows)
    records, _ = backtest.run(load_rules([BUNDLED]), [path])
    return {str(r["message_id"]) for r in records}


def job(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.alerting", *args],
        cwd=ROOT,
        env=full,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_for(
    predicate: Any, timeout_s: float, procs: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        dead = [p for p in procs if p.poll() not in (None, 0)]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
            pytest.fail(f"condition not reached (exit codes {[p.poll() for p in procs]}):\n{tails}")
        time.sleep(0.2)


def base_env(kafka_bootstrap: str, topics: dict[str, str], url: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METRIC_TOPICS": topics["metrics"],
        "ALERTS_TOPIC": topics["alerts"],
        "DLQ_TOPIC": topics["dlq"],
        "ALERTS_DLQ_TOPIC": topics["adlq"],
        "NOTIFY_URL": url,
        "NOTIFY_TIMEOUT_S": "2",
        "ALERT_SHARDS": "16",
        "METRICS_PORT": "0",  # two processes on one host
    }


def topics_for(topic_factory: Any) -> dict[str, str]:
    return {
        "metrics": topic_factory("metrics", partitions=4),
        "alerts": topic_factory("alerts"),
        "dlq": topic_factory("dlq"),
        "adlq": topic_factory("adlq"),
    }


def test_two_processes_give_the_same_notifications_as_one(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    rows = incident_rows(instances=16, minutes=35)
    want = expected_ids(rows, tmp_path)
    assert len(want) == 32
    topics = topics_for(topic_factory)
    produce(kafka_bootstrap, topics["metrics"], rows)
    rec = Recorder()
    server = RecordingServer(0, rec)
    try:
        env = {**base_env(kafka_bootstrap, topics, server.url), "KAFKA_TAIL": "false"}
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        logs = [tmp_path / "p0.log", tmp_path / "p1.log"]
        procs = [job(["-w1", f"-i{i}", "-a", addresses], env, logs[i]) for i in range(2)]
        for p, log in zip(procs, logs, strict=True):
            assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        server.stop()
    assert set(rec.ok_ids()) == want
    assert len(rec.ok_ids()) == len(want)  # a clean run posts each notification exactly once


def spanning_rows(
    instance: str, hot_from_min: float, hot_to_min: float, minutes: int = 35
) -> list[dict[str, Any]]:
    """One instance whose CPU is hot over [from, to) minutes after T0, 15 s apart."""
    out = []
    for step in range(minutes * 4):
        ts = T0 + step * 15
        hot = hot_from_min <= step / 4 < hot_to_min
        stamp = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
        out.append({
            "timestamp": stamp, "database_type": "postgresql", "instance_id": instance,
            "metric_name": "cpu_usage_percent", "value": 91.0 if hot else 20.0,
            "tags": {"environment": "production", "region": "eu-west-1"},
        })  # fmt: skip
    return out


def recovery_frontier(recovery: Path) -> int:
    """The epoch every worker has finished and snapshotted: a restart resumes from here."""
    frontier = -1
    for part in recovery.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5) as db:
            (got,) = db.execute("SELECT coalesce(min(worker_frontier), -1) FROM fronts").fetchone()
        frontier = max(frontier, int(got))
    return frontier


POISON = (b'{"timestamp": "2025-01-15T10:00:00Z", "value": NaN', b"not json", b'{"metric_name": 1}')


def test_sigkill_mid_stream_then_restart_resumes_state_and_offsets(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    """Recovery is what makes this pass, not determinism:

    * offsets: three undecodable messages lead the topic; the first run dead-letters them.
      A restart that resumed its offsets never reads them again (3 dead letters in total);
      one that re-reads the topic from the start (recovery removed) writes 6.
    * state: `db-span` turns hot at minute 14 and cool at 21, and HighCPUUsage needs 5 m: it
      is pending (active_at 10:15) when the process is killed after minute 17.5, and fires at
      10:20 only if that pending state came back from the snapshot. Resumed offsets without the
      state would start the 5 m over at minute 18 and never fire (the heat ends at 21).
    """
    cut = T0 + int(17.5 * 60)
    rows = sorted(
        incident_rows(instances=16, minutes=35) + spanning_rows("db-span", 14, 21),
        key=lambda r: str(r["timestamp"]),
    )
    stamp_cut = datetime.fromtimestamp(cut, UTC).isoformat().replace("+00:00", "Z")
    first_half = [r for r in rows if str(r["timestamp"]) < stamp_cut]
    second_half = rows[len(first_half) :]
    want = expected_ids(rows, tmp_path)
    span_fire = expected_ids(spanning_rows("db-span", 14, 21), tmp_path)
    assert span_fire <= want and len(span_fire) == 2  # firing at 10:20, resolved at 10:21
    # what a restart without the pending state would send for db-span: nothing
    assert not expected_ids(
        [r for r in spanning_rows("db-span", 14, 21) if r["timestamp"] >= stamp_cut], tmp_path
    )

    topics = topics_for(topic_factory)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True, cwd=ROOT)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for raw in POISON:
        p.produce(topics["metrics"], raw, b"db-00")
    assert p.flush(30) == 0
    produce(kafka_bootstrap, topics["metrics"], first_half)
    rec = Recorder()
    server = RecordingServer(0, rec)
    args = ["-w1", "-r", str(recovery), "-s", "1", "-b", "5"]
    try:
        env = base_env(kafka_bootstrap, topics, server.url)
        log1 = tmp_path / "run1.log"
        first = job(args, env, log1)
        # it delivered notifications of the first half and dead-lettered the poison ...
        wait_for(
            lambda: len(set(rec.ok_ids())) >= 4 and record_count(kafka_bootstrap, topics["dlq"]) == 3,
            180,
            [first],
            [log1],
        )
        # ... and snapshotted two epochs past that point; then it dies without warning
        seen = recovery_frontier(recovery)
        wait_for(lambda: recovery_frontier(recovery) >= seen + 2, 60, [first], [log1])
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        before = set(rec.ok_ids())
        assert not (span_fire & before)  # db-span was still pending at the kill
        produce(kafka_bootstrap, topics["metrics"], second_half)
        # the remaining (end-of-data) windows only close when wall time passes; a bounded
        # restart (KAFKA_TAIL=false) flushes them like a backtest does
        log2 = tmp_path / "run2.log"
        second = job(args, {**env, "KAFKA_TAIL": "false"}, log2)
        assert second.wait(timeout=300) == 0, log2.read_text()[-3000:]
    finally:
        server.stop()
    got = rec.ok_ids()
    assert record_count(kafka_bootstrap, topics["dlq"]) == 3, "the restart re-read offsets it had committed"
    assert span_fire <= set(got), "the pending state did not survive the kill"
    assert set(got) == want  # nothing lost
    assert before < want
    # at-least-once for the epoch in flight at the kill: a re-post can only repeat a message_id
    # the receiver already has, so it deduplicates to exactly the expected notifications
    assert len(set(got)) == len(want)
