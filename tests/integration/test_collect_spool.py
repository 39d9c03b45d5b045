"""The collector's local spool on the real broker: Kafka stopped (deploy/local/kafka.sh stop) while
the collector runs, samples spooled on disk and produced in order, none lost, once it is back; a
full spool drops and counts what does not fit.

Stops and restarts the broker of this environment: run it against your own services.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from connectors.collectors.base import Collector, Target
from connectors.collectors.sink import SpoolingKafkaSink
from connectors.collectors.targets import parse_targets
from connectors.kafka.serde import decode_json
from connectors.kafka.source import metric_source
from connectors.kafka.spool import Spool
from flows.collect import build_flow
from rules.metric import Metric

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def kafka(action: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/kafka.sh"), action], check=True, capture_output=True, timeout=180
    )


def wait_for_broker(bootstrap: str, deadline_s: float = 90.0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    end = time.monotonic() + deadline_s
    while True:
        try:
            producer.list_topics(timeout=2.0)
            return
        except Exception:
            if time.monotonic() > end:
                raise


class Counting:
    """A collector whose samples are numbered across runs: `seq` 0, 1, 2, ..."""

    def __init__(self, target: Target, counter: Iterator[int]) -> None:
        self.target = target
        self.counter = counter
        self.name = target.name
        self.database_type = target.database_type

    def collect(self, now: float) -> list[Metric]:
        return [self.target.sample(now, "seq", next(self.counter))]

    def close(self) -> None:
        return None


@pytest.fixture()
def target() -> Target:
    doc = {
        "settings": {"environment": "it", "interval": "200ms", "timeout": "150ms"},
        "targets": [{"name": "n", "type": "os", "instance_id": "it-spool", "mounts": ["/"]}],
    }
    return parse_targets(doc, {}).targets[0]


def run(target: Target, counter: Iterator[int], sink: SpoolingKafkaSink, topic: str, polls: int) -> None:
    def make(t: Target) -> Collector:
        return Counting(t, counter)

    run_main(build_flow([target], sink, make_collector=make, topic_of=lambda _d, _e: topic, polls=polls))


def seqs(bootstrap: str, topic: str) -> list[int]:
    out: list[KafkaSourceMessage[Any, Any]] = []
    flow = Dataflow("consume")
    stream: Any = op.input("in", flow, metric_source(bootstrap, topic, tail=False))
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    metrics = [decode_json(m.value, time.time()) for m in out]
    return [int(m.value) for m in metrics if m.metric_name == "seq"]


def test_kafka_stopped_spools_in_order_and_drains_when_it_returns(
    kafka_bootstrap: str, topic_factory: Any, target: Target, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory("spool")
    counter = itertools.count()
    fast = {"message.timeout.ms": "1500"}  # the first batch while down waits this long, then spools

    def sink(job: str, max_bytes: int, directory: Path) -> SpoolingKafkaSink:
        return SpoolingKafkaSink(kafka_bootstrap, directory, max_bytes, fast, job=job, retry_s=30.0)

    run(target, counter, sink("collect-it", 1 << 20, tmp_path / "spool"), topic, polls=3)  # Kafka up
    assert seqs(kafka_bootstrap, topic) == [0, 1, 2]

    kafka("stop")
    try:
        run(target, counter, sink("collect-it", 1 << 20, tmp_path / "spool"), topic, polls=4)
        spooled = Spool(tmp_path / "spool" / "w0", 1 << 20)
        assert spooled.records >= 4  # seq 3..6 plus the `up` samples, on disk
        spooled.close()
        # a full spool: what does not fit is dropped, counted and logged, not silently lost
        caplog.set_level(logging.ERROR, logger="connectors.collectors.sink")
        run(target, itertools.count(1000), sink("collect-full", 1, tmp_path / "tiny"), topic, polls=2)
        assert (REGISTRY.get_sample_value("gds_spool_dropped_total", {"job": "collect-full"}) or 0) >= 2
        assert "dropped" in caplog.text and "spool" in caplog.text
    finally:
        kafka("start")
    wait_for_broker(kafka_bootstrap)

    run(target, counter, sink("collect-it", 1 << 20, tmp_path / "spool"), topic, polls=3)  # drains first
    assert seqs(kafka_bootstrap, topic) == list(range(10))  # every sample once, in order
    assert Spool(tmp_path / "spool" / "w0", 1 << 20).empty
