"""The collector's spooling sink with a stand-in producer: what the broker does not confirm is
spooled, later batches queue behind it, a drain puts everything out in order, a full spool
drops, counts and logs; what timed out in flight but landed is not sent twice.
The real broker: tests/integration/test_collect_spool.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from connectors.collectors.sink import _Partition
from connectors.kafka.landed import Landed
from connectors.kafka.spool import Spool, SpoolMetrics
from tests.support.fake_kafka import FakeConsumer, FakeMsg, Log


class FakeProducer:
    """Delivers while `up`; otherwise every message fails with a timeout and probes raise."""

    def __init__(self) -> None:
        self.up = True
        self.topic: list[bytes] = []
        self.produced = 0
        self._pending: list[tuple[bytes, Callable[[KafkaError | None, Any], None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.produced += 1
        self._pending.append((value, on_delivery))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for value, report in self._pending:
            if self.up:
                self.topic.append(value)
                report(None, None)
            else:
                report(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        self._pending.clear()
        return 0

    def list_topics(self, timeout: float) -> None:
        if not self.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))


def msgs(*values: int) -> list[KafkaSinkMessage[bytes | None, bytes | None]]:
    return [KafkaSinkMessage(b"db-1", str(v).encode(), topic="gds.metrics.os.it") for v in values]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def partition(
    tmp_path: Path, max_bytes: int = 1 << 20, drain_step: int = 1000
) -> tuple[_Partition, FakeProducer, Clock, CollectorRegistry]:
    producer, clock, registry = FakeProducer(), Clock(), CollectorRegistry()
    spool = Spool(tmp_path, max_bytes)
    part = _Partition(producer, spool, "collect", 5.0, clock, SpoolMetrics(registry), 1.0, drain_step)  # type: ignore[arg-type]
    return part, producer, clock, registry


def value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(f"gds_spool_{name}", {"job": "collect"})


def test_undelivered_batches_wait_in_the_spool_and_go_out_in_order(tmp_path: Path) -> None:
    part, producer, clock, metrics = partition(tmp_path)
    part.write_batch(msgs(1, 2))
    producer.up = False
    part.write_batch(msgs(3, 4))  # timed out: spooled
    produced = producer.produced
    part.write_batch(msgs(5))  # behind the spooled ones, no produce while the retry is not due
    assert producer.produced == produced
    assert value(metrics, "records") == 3 and value(metrics, "spooled_total") == 3
    producer.up = True
    clock.now = 4.0
    part.write_batch(msgs(6))  # retry not due yet: still spooled, in order
    clock.now = 10.0
    part.write_batch(msgs(7))  # drained first, then the batch
    assert producer.topic == [str(v).encode() for v in range(1, 8)]
    assert value(metrics, "records") == 0 and value(metrics, "drained_total") == 4


def test_a_full_spool_drops_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    part, producer, _clock, metrics = partition(tmp_path, max_bytes=60)
    producer.up = False
    part.write_batch(msgs(1))  # fits
    with caplog.at_level(logging.ERROR, logger="connectors.collectors.sink"):
        part.write_batch(msgs(*range(10, 20)))  # does not: refused whole
    assert value(metrics, "dropped_total") == 10 and value(metrics, "full") == 1
    assert "dropped 10 samples" in caplog.text
    producer.up = True
    part.close()  # the close drains what was kept
    assert producer.topic == [b"1"]


def test_a_long_drain_goes_in_steps_between_batches(tmp_path: Path) -> None:
    part, producer, clock, _registry = partition(tmp_path, drain_step=2)
    producer.up = False
    part.write_batch(msgs(1, 2, 3, 4, 5))
    producer.up = True
    clock.now = 10.0
    part.write_batch(msgs(6))  # two drained, the batch queued behind the rest
    assert producer.topic == [b"1", b"2"]
    part.write_batch(msgs(7))  # the next step at once, no retry wait
    assert producer.topic == [b"1", b"2", b"3", b"4"]
    part.write_batch(msgs(8))
    part.write_batch(msgs(9))
    assert producer.topic == [str(v).encode() for v in range(1, 10)]


class LandingProducer(FakeProducer):
    """Writes to a `Log`; while down with `lands_anyway` the broker writes what it reports timed
    out (its answer was lost in flight)."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log
        self.lands_anyway = False
        self._keys: list[bytes | None] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        super().produce(topic, value, key, on_delivery)
        self._keys.append(key)

    def flush(self, _timeout: float) -> int:
        for key, (value, report) in zip(self._keys, self._pending, strict=True):
            if self.up:
                report(None, FakeMsg(TOPIC, self.log.write(key, value)))
            else:
                if self.lands_anyway:
                    self.log.write(key, value)
                report(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        self._pending.clear()
        self._keys.clear()
        return 0


TOPIC = "gds.metrics.os.it"


def test_what_timed_out_in_flight_but_landed_is_not_drained_twice(tmp_path: Path) -> None:
    log = Log(TOPIC)
    producer, clock, registry = LandingProducer(log), Clock(), CollectorRegistry()
    landed = Landed("127.0.0.1:1", consumer_factory=lambda _config: FakeConsumer(log))
    part = _Partition(
        producer,  # type: ignore[arg-type]
        Spool(tmp_path, 1 << 20),
        "collect",
        5.0,
        clock,
        SpoolMetrics(registry),
        1.0,
        landed=landed,
    )
    part.write_batch(msgs(1, 2))
    producer.up, producer.lands_anyway = False, True
    part.write_batch(msgs(3, 4))  # reported timed out, yet written: spooled
    producer.up = True
    clock.now = 10.0
    part.write_batch(msgs(5))  # the drain reads 3 and 4 back and leaves them out
    assert log.values() == [str(v).encode() for v in range(1, 6)]
    assert landed.dropped == 2 and value(registry, "records") == 0
