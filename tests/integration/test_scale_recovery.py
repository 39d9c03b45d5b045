"""Scaled and killed worker processes, as pods run them: `python -m bytewax.run flows.alerting`.

Expected notifications come from the backtest over the same messages; the receiver is a
real HTTP server on loopback. Waits are bounded polls on what arrived, never timing asserts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flows import backtest
from rules.loader import BUNDLED, load_rules
from tests.support.data import incident_rows, produce, write_jsonl
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


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    rows = incident_rows(instances=16, minutes=35)
    want = expected_ids(rows, tmp_path)
    topics = topics_for(topic_factory)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True, cwd=ROOT)
    half = len(rows) // 2
    produce(kafka_bootstrap, topics["metrics"], rows[:half])
    rec = Recorder()
    server = RecordingServer(0, rec)
    args = ["-w1", "-r", str(recovery), "-s", "1", "-b", "5"]
    try:
        env = base_env(kafka_bootstrap, topics, server.url)
        log1 = tmp_path / "run1.log"
        first = job(args, env, log1)
        # let it deliver some notifications of the first half, then kill it without warning
        wait_for(lambda: len(set(rec.ok_ids())) >= 4, 180, [first], [log1])
        time.sleep(1.5)  # at least one snapshot epoch after the first deliveries
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        before = set(rec.ok_ids())
        produce(kafka_bootstrap, topics["metrics"], rows[half:])
        # the remaining (end-of-data) windows only close when wall time passes; a bounded
        # restart (KAFKA_TAIL=false) flushes them like a backtest does
        log2 = tmp_path / "run2.log"
        second = job(args, {**env, "KAFKA_TAIL": "false"}, log2)
        assert second.wait(timeout=300) == 0, log2.read_text()[-3000:]
    finally:
        server.stop()
    got = rec.ok_ids()
    assert set(got) == want  # nothing lost
    assert before < want
    # at-least-once for the epoch in flight at the kill: a re-post can only repeat a message_id
    # the receiver already has, so it deduplicates to exactly the expected notifications
    assert len(set(got)) == len(want)
