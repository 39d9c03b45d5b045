"""The live job under receiver faults decides exactly what the backtest decides on the same messages.

Metrics are produced in real time (event time = wall time) while the real alerting job
(`python -m bytewax.run flows.alerting`) tails them and posts to a receiver that is down for a
while, or slow and flaky. A receiver blocks the job's worker thread while it retries; that
must never make samples still in Kafka "late" (item 1 of issue 10), and a long heartbeat
interval must not make input arrive in steps (item 21). Then every transition on the `alerts`
topic equals the backtest's, and every notification reaches the receiver once it is back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from flows import backtest
from rules.loader import BUNDLED, load_rules
from tests.support.data import incident_rows, produce
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

RULES = """
settings: {evaluation_interval: 1s, allowed_lateness: 5s, staleness: 15s}
alert_rules:
  - name: HotCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 80, duration: 2s, aggregation: avg}
    window: 2s
    severity: warning
"""
INSTANCES = 8
RUN_S = 30.0  # real seconds of metrics
STEP_S = 0.5


def cpu(i: int, t: float) -> float:
    """Instance i runs hot during [3 + 2i, 10 + 2i) seconds: one incident each."""
    return 92.0 if 3 + 2 * i <= t < 10 + 2 * i else 20.0


def produce_live(bootstrap: str, topic: str, rows: list[dict[str, Any]], on_tick: Any) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    start = time.time()
    k = 0
    while (elapsed := time.time() - start) < RUN_S:
        on_tick(elapsed)
        now = time.time()
        for i in range(INSTANCES):
            row = {
                "timestamp": now,
                "database_type": "postgresql",
                "instance_id": f"db-{i}",
                "metric_name": "cpu_usage_percent",
                "value": cpu(i, elapsed),
                "tags": {"environment": "test"},
            }
            rows.append(row)
            p.produce(topic, json.dumps(row).encode(), f"db-{i}".encode())
        p.poll(0)
        k += 1
        time.sleep(max(0.0, start + k * STEP_S - time.time()))
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float) -> list[dict[str, Any]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{topic}-{time.time()}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out: list[dict[str, Any]] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(out) < want:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            record = json.loads(msg.value() or b"{}")
            if record.get("type") != "heartbeat":
                out.append(record)
    c.close()
    return out


@pytest.fixture()
def job_env(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METRIC_TOPICS": topic_factory("live", partitions=4),
        "ALERTS_TOPIC": topic_factory("alerts", partitions=4),
        "DLQ_TOPIC": topic_factory("dlq"),
        "ALERTS_DLQ_TOPIC": topic_factory("alertsdlq"),
        "RULES_PATH": str(rules),
        "METRICS_PORT": "0",
        "HEARTBEAT_INTERVAL_S": "60",  # input must not wait for heartbeats (item 21)
        "HEALTH_STALE_S": "900",
        "NOTIFY_TIMEOUT_S": "3",
        "NOTIFY_DEADLINE_S": "300",  # the retry budget covers the outage: nothing may be dead-lettered
        "NOTIFY_MAX_ATTEMPTS": "1000",
        "NOTIFY_BREAKER_COOLDOWN_S": "1",
    }
    yield env


def run_live(
    env: dict[str, str], receiver_faults: Any, expected: Any
) -> tuple[list[dict[str, Any]], Recorder]:
    """Run the live job while metrics are produced; stop it once every expected notification
    was delivered (or after a generous bound); return the alerts topic and what the receiver saw."""
    rec = Recorder()
    server = RecordingServer(0, rec)
    port = server.server_address[1]
    env = {**env, "NOTIFY_URL": server.url}
    log = open(Path(env["RULES_PATH"]).parent / "job.log", "w")  # noqa: SIM115 - closed below
    job = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    rows: list[dict[str, Any]] = []
    servers = {"current": server}
    try:
        produce_live(env["KAFKA_BOOTSTRAP_SERVERS"], env["METRIC_TOPICS"], rows,
                     lambda t: receiver_faults(t, rec, servers, port))  # fmt: skip
        if servers["current"] is None:  # an outage still open at the end: the receiver returns
            servers["current"] = RecordingServer(port, rec)
        want = expected(rows)
        deadline = time.time() + 240
        while time.time() < deadline and not want <= set(rec.ok_ids()):
            assert job.poll() is None, (Path(env["RULES_PATH"]).parent / "job.log").read_text()[-3000:]
            time.sleep(0.5)
        got = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], 10**9, 8.0)
    finally:
        stop(job)
        log.close()
        if servers["current"] is not None:
            servers["current"].stop()
    return got, rec


def key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    labels = r["labels"]
    return (str(r["alert_name"]), str(labels.get("instance_id")), str(r["state"]), str(r["at"]))


def outage(t: float, rec: Recorder, servers: dict[str, Any], port: int) -> None:
    """The receiver is killed 6 s into the run and comes back at 24 s (most incidents inside)."""
    if 6 <= t < 24 and servers["current"] is not None:
        servers["current"].stop()
        servers["current"] = None
    elif t >= 24 and servers["current"] is None:
        servers["current"] = RecordingServer(port, rec)


def slow_and_flaky(t: float, rec: Recorder, servers: dict[str, Any], port: int) -> None:
    """Every request takes seconds; 30 % answer 5xx and 10 % 429 (deterministic per attempt)."""

    def action(message_id: str, attempt: int) -> str:
        roll = zlib.crc32(f"{message_id}/{attempt}".encode()) % 10
        return "503" if roll < 3 else "429" if roll == 3 else "sluggish"

    rec.fallback = action


@pytest.mark.parametrize("faults", [outage, slow_and_flaky], ids=["receiver-down", "slow-and-flaky"])
def test_live_transitions_equal_the_backtest_under_receiver_faults(
    job_env: dict[str, str], tmp_path: Path, faults: Any
) -> None:
    ruleset = load_rules([Path(job_env["RULES_PATH"])])
    backtested: dict[str, list[dict[str, Any]]] = {}

    def expected(rows: list[dict[str, Any]]) -> set[str]:
        data = tmp_path / "produced.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        records, poison = backtest.run(ruleset, [data], all_states=True)
        assert not poison
        backtested["all"] = records
        notified = {str(r["message_id"]) for r in records if r["notify"] and not r["suppressed"]}
        assert len(notified) == 2 * INSTANCES  # each instance fires once and resolves once
        return notified

    live, rec = run_live(job_env, faults, expected)
    want = backtested["all"]
    assert sorted(map(key, live)) == sorted(map(key, want))  # same transitions, same times
    assert {r["message_id"] for r in live} == {r["message_id"] for r in want}
    delivered = set(rec.ok_ids())
    assert delivered == {str(r["message_id"]) for r in want if r["notify"] and not r["suppressed"]}


def test_the_documented_command_resumes_and_posts_nothing_twice(
    job_env: dict[str, str], tmp_path: Path
) -> None:
    """`python -m bytewax.run flows.alerting` with Kafka, no flags: stopped and started again, it
    resumes from its default recovery directory instead of re-reading the topics and re-posting
    every past notification (item 6)."""
    produce(job_env["KAFKA_BOOTSTRAP_SERVERS"], job_env["METRIC_TOPICS"], incident_rows(instances=6))
    rec = Recorder()
    server = RecordingServer(0, rec)
    recovery = tmp_path / "default-recovery"
    env = {**job_env, "NOTIFY_URL": server.url, "RULES_PATH": str(BUNDLED),
           "RECOVERY_DIR": str(recovery), "RECOVERY_SNAPSHOT_S": "1"}  # fmt: skip

    def run_until_quiet(name: str, quiet_s: float) -> None:
        with open(tmp_path / f"{name}.log", "w") as log:
            job = subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "flows.alerting"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                seen, still, deadline = -1, time.time(), time.time() + 180
                while time.time() < deadline and time.time() - still < quiet_s:
                    assert job.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                    if len(rec.posts) != seen:
                        seen, still = len(rec.posts), time.time()
                    time.sleep(0.5)
            finally:
                stop(job)

    try:
        run_until_quiet("first", quiet_s=10)
        first = len(rec.posts)
        assert first >= 12  # 6 incidents fired and resolved
        assert any(recovery.glob("alerting/part-*.sqlite3"))  # initialised by the job itself
        run_until_quiet("second", quiet_s=15)
    finally:
        server.stop()
    assert len(rec.posts) == first, "the restart posted again what the first run had posted"
