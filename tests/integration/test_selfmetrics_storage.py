"""The pipeline watches itself: stop PostgreSQL under a running storage flow and the bundled
TimescaleDBDown rule fires on the flow's own `timescaledb_up`, fed back through Kafka.

Real pieces throughout: the storage flow writing to the real PostgreSQL, which is stopped
(deploy/local/postgres.sh) while the flow has data to write; the sink's retry loop sets
`gds_store_up{store="timescaledb"}`; `SelfMetricsReporter` reads the process registry and
produces seed messages to a real topic; the records consumed back are evaluated by the
alerting job's own evaluation (`flows.backtest`, event time) with the bundled rules.

One test device: the reporter's clock runs 30x faster than wall time, so the rule's 1 m
`for` is covered by seconds of outage instead of minutes. Only the timestamps it stamps are
compressed; what it reports is read from the registry at that moment.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.kafka.serde import make_decoder
from connectors.ops.selfmetrics import SelfMetricsReporter
from connectors.storage.retry import STORAGE_RETRY
from connectors.storage.timescale import AlertEventsSink, MetricsHotSink, PgConfig
from flows import backtest
from flows.storage import StorageOutputs, build_flow
from rules.loader import BUNDLED, load_rules
from tests.integration.test_storage_flow import dataset, hour_start, messages, pg, postgres

pytestmark = pytest.mark.integration
SPEED = 30.0


def consume_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"self-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        _low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[dict[str, Any]] = []
        while len(out) < high:
            msg = c.poll(5)
            assert msg is not None, f"{topic}: {len(out)} of {high} records read"
            if msg.error() is None:
                out.append(json.loads(msg.value() or b"null"))
        return out
    finally:
        c.close()


def rows_written(dsn: str, schema: str) -> int:
    try:
        return int(pg(dsn, f'SELECT count(*) AS n FROM "{schema}".metrics_hot')[0]["n"])
    except asyncpg.UndefinedTableError:  # the sink has not created it yet
        return 0


def up_values(records: list[dict[str, Any]]) -> list[float]:
    return [r["value"] for r in records if r["metric_name"] == "timescaledb_up"]


@pytest.fixture()
def schema(pg_dsn: str) -> Iterator[str]:
    name = f"test_self_{uuid.uuid4().hex[:10]}"
    yield name
    pg(pg_dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_postgres_down_fires_timescaledb_down(
    kafka_bootstrap: str, pg_dsn: str, schema: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory("selfmetrics")
    records, _ = dataset(hour_start(), hours=1.0, step_s=10)
    msgs = messages(records, bad=0)
    half = len(msgs) // 2
    resume = threading.Event()

    def gated() -> Iterator[KafkaSourceMessage]:
        yield from msgs[:half]
        resume.wait(60)  # the second half is written while PostgreSQL is down
        yield from msgs[half:]

    cfg = PgConfig(
        pg_dsn, schema=schema, batch_rows=1000, retry=replace(STORAGE_RETRY, cap_s=0.5, deadline_s=90.0)
    )
    flow = build_flow(
        TestingSource(gated(), batch_size=500),
        StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink([])),
        make_decoder("json", max_future_s=float("inf")),
        wall=None,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_main(flow)
        except BaseException as exc:
            errors.append(exc)

    wall0, mono0 = time.time(), time.monotonic()
    reporter = SelfMetricsReporter(
        "storage",
        Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5}),
        topic,
        interval_s=0.5,
        host="test-pod",
        clock=lambda: wall0 + (time.monotonic() - mono0) * SPEED,
    )
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while rows_written(pg_dsn, schema) == 0:
            assert time.monotonic() < deadline, "nothing written before the outage"
            time.sleep(0.05)
        reporter.start()
        postgres("stop")
        resume.set()
        # the sink is now retrying; wait (bounded) for 3 reported minutes of timescaledb_up 0
        deadline = time.monotonic() + 60
        while up_values(consume_all(kafka_bootstrap, topic)).count(0.0) < 3 * 60 / (0.5 * SPEED):
            assert time.monotonic() < deadline and worker.is_alive(), "no timescaledb_up 0 reported"
            time.sleep(0.5)
    finally:
        resume.set()
        postgres("start")
    worker.join(90)
    assert not worker.is_alive() and errors == []
    # up again: report a while longer so the alert can resolve
    deadline = time.monotonic() + 60
    while up_values(consume_all(kafka_bootstrap, topic))[-12:].count(1.0) < 12:
        assert time.monotonic() < deadline, "timescaledb_up never returned to 1"
        time.sleep(0.5)
    reporter.stop()

    got = consume_all(kafka_bootstrap, topic)
    assert {r["instance_id"] for r in got} == {"storage@test-pod"}
    path = tmp_path / "self.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in got))
    transitions, poison = backtest.run(load_rules([BUNDLED]), [path], all_states=True)
    assert poison == []
    down = [t for t in transitions if t["alert_name"] == "TimescaleDBDown"]
    assert [t["state"] for t in down] == ["pending", "firing", "resolved"], down
    labels = down[1]["labels"]
    assert isinstance(labels, dict) and labels["instance_id"] == "storage@test-pod"
    assert down[1]["severity"] == "critical"
    assert not [t for t in transitions if t["alert_name"] == "MetricsAbsent"]
