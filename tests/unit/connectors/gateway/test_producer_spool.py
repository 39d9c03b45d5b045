"""The gateway producer's spool logic with a stand-in for librdkafka's Producer: what the broker does
not confirm is spooled and the request still succeeds; later requests go behind the spooled ones;
the drain produces them oldest first once the broker answers; a full spool is a 503 error; without
a spool an unconfirmed request fails; records whose delivery timed out in flight although the broker
wrote them are read back and not sent twice."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, Counter

from connectors.gateway.parse import Record
from connectors.gateway.producer import (
    GatewayProducer,
    SpoolFullUnavailableError,
    UnavailableError,
)
from connectors.kafka.landed import Landed
from connectors.kafka.serde import decode_json, encode_json
from connectors.kafka.spool import Spool, SpoolMetrics, SpoolRecord
from rules.metric import Metric
from tests.support.fake_kafka import FakeConsumer, FakeMsg, Log

TOPIC = "gds.metrics.os.unit"


class _Err:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text


class FakeProducer:
    """Delivers on `poll` while `up`, reports every queued record timed out while down; with
    `lands_anyway` the broker writes them all the same (their answer was lost in flight)."""

    def __init__(self, log: Log | None = None) -> None:
        self.log = log if log is not None else Log(TOPIC)
        self.up = True
        self.lands_anyway = False
        self.refuse = 0  # this many produce calls fail at once (the local queue refuses them)
        self.delivered: list[bytes] = []
        self.queue: list[tuple[str, bytes | None, bytes, Callable[[Any, Any], None]]] = []
        self.lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        with self.lock:
            self.queue.append((topic, key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        with self.lock:
            queued, self.queue = self.queue, []
        for topic, key, value, report in queued:
            if self.up:
                self.delivered.append(value)
                report(None, FakeMsg(topic, self.log.write(key, value)))
            else:
                if self.lands_anyway:
                    self.log.write(key, value)
                report(_Err("Local: Message timed out"), FakeMsg(topic))
        time.sleep(min(timeout, 0.01))
        return len(queued)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if not self.up:
            raise KafkaException("broker down")
        return SimpleNamespace(topics={TOPIC: None})

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return 0


def records(*seqs: int) -> list[Record]:
    return [
        Record(TOPIC, "i-1", Metric(1.7e9 + s, "os", "i-1", "seq", float(s), {"environment": "unit"}))
        for s in seqs
    ]


def seqs(values: list[bytes]) -> list[int]:
    return [int(decode_json(v, 2e9).value) for v in values]


def gateway(fake: FakeProducer, spool: Spool | None, metrics: SpoolMetrics | None = None) -> GatewayProducer:
    return GatewayProducer(
        "127.0.0.1:1",
        lambda m, _t: encode_json(m),
        ack_timeout_s=0.2,
        create_topics=False,
        spool=spool,
        spool_metrics=metrics,
        retry_s=0.05,
        producer=fake,
        landed=Landed("127.0.0.1:1", consumer_factory=lambda _config: FakeConsumer(fake.log)),
    )


async def until(pred: Callable[[], bool], what: str, bound_s: float = 10) -> None:
    deadline = time.monotonic() + bound_s
    while not pred():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def test_unconfirmed_records_are_spooled_later_ones_go_behind_and_drain_in_order(tmp_path: Path) -> None:
    fake = FakeProducer()
    spool = Spool(tmp_path / "gateway", 1 << 20)
    registry = CollectorRegistry()
    metrics = SpoolMetrics(registry)
    gw = gateway(fake, spool, metrics)

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0, 1))  # broker up: produced
        assert seqs(fake.delivered) == [0, 1] and spool.empty
        fake.up = False
        await gw.send(records(2, 3))  # not confirmed: spooled, and the request succeeds
        assert spool.records == 2 and seqs(fake.delivered) == [0, 1]
        await gw.send(records(4))  # behind the spooled ones
        assert spool.records == 3
        fake.up = True
        await gw.send(records(5))  # broker back, but the spool is not drained yet: still behind
        await until(lambda: spool.empty, "the spool drained")
        await gw.send(records(6))  # drained: produced directly again
        await gw.aclose()

    asyncio.run(scenario())
    assert seqs(fake.delivered) == list(range(7))  # each once, in order
    job = {"job": "gateway"}
    assert registry.get_sample_value("gds_spool_spooled_total", job) == 4
    assert registry.get_sample_value("gds_spool_drained_total", job) == 4
    assert registry.get_sample_value("gds_spool_records", job) == 0


def test_a_full_spool_refuses_the_request_whole(tmp_path: Path) -> None:
    fake = FakeProducer()
    fake.up = False
    spool = Spool(tmp_path / "gateway", 600)  # room for about two records
    gw = gateway(fake, spool)

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0))
        with pytest.raises(SpoolFullUnavailableError, match="full"):
            await gw.send(records(1, 2, 3, 4, 5))
        assert spool.records == 1 and spool.full
        assert await gw.problems() != []  # not ready while it refuses
        await gw.aclose()

    asyncio.run(scenario())


def test_ready_while_spooling(tmp_path: Path) -> None:
    fake = FakeProducer()
    fake.up = False
    gw = gateway(fake, Spool(tmp_path / "gateway", 1 << 20))

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0))
        assert await gw.problems() == []
        await gw.aclose()

    asyncio.run(scenario())


def test_without_a_spool_an_unconfirmed_request_fails(tmp_path: Path) -> None:
    fake = FakeProducer()
    gw = gateway(fake, None)

    async def scenario() -> None:
        gw.start()
        await gw.send(records(9))  # the topic is known from now on
        fake.up = False
        with pytest.raises(UnavailableError, match="did not confirm 2 of 2"):
            await gw.send(records(0, 1))
        await gw.aclose()

    asyncio.run(scenario())


def test_records_spooled_by_an_earlier_run_are_drained_before_new_ones(tmp_path: Path) -> None:
    fake = FakeProducer()
    fake.up = False
    first = gateway(fake, Spool(tmp_path / "gateway", 1 << 20))

    async def outage() -> None:
        first.start()
        await first.send(records(0, 1))
        await first.aclose()

    asyncio.run(outage())
    fake.up = True
    spool = Spool(tmp_path / "gateway", 1 << 20)
    second = gateway(fake, spool)

    async def restart() -> None:
        second.start()
        await second.send(records(2))
        await until(lambda: spool.empty, "the earlier run's spool drained")
        await second.aclose()

    asyncio.run(restart())
    assert seqs(fake.delivered) == [0, 1, 2]


class DeadProducer(FakeProducer):
    """A producer librdkafka declared dead: `produce` raises a fatal error, `poll` reports it
    through the error callback and fails what it holds; purge/flush only serve those reports."""

    def __init__(self, error_cb: Callable[[KafkaError], None], log: Log) -> None:
        super().__init__(log)
        self.error_cb = error_cb
        self.dead = False
        self.purged = False

    def kill(self) -> None:
        self.dead = True
        self.up = False

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        if self.dead:
            raise KafkaException(KafkaError(KafkaError._FATAL, "out of order sequence number", fatal=True))
        super().produce(topic, value, key, on_delivery)

    def poll(self, timeout: float) -> int:
        if self.dead:
            self.error_cb(KafkaError(KafkaError._FATAL, "out of order sequence number", fatal=True))
        return super().poll(timeout)

    def purge(self) -> None:
        self.purged = True


def test_a_producer_dead_of_a_fatal_error_is_replaced_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    made: list[DeadProducer] = []
    log = Log(TOPIC)

    def factory(config: dict[str, Any]) -> DeadProducer:
        made.append(DeadProducer(config["error_cb"], log))
        return made[-1]

    spool = Spool(tmp_path / "gateway", 1 << 20)
    registry = CollectorRegistry()
    renewals = Counter("renewals", "", registry=registry)
    gw = GatewayProducer(
        "127.0.0.1:1",
        lambda m, _t: encode_json(m),
        ack_timeout_s=0.2,
        create_topics=False,
        spool=spool,
        retry_s=0.05,
        producer_factory=factory,
        renewals=renewals,
        landed=Landed("127.0.0.1:1", consumer_factory=lambda _config: FakeConsumer(log)),
    )

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0, 1))
        made[0].kill()  # from now on it never delivers again
        await gw.send(records(2, 3))  # refused by the dead producer: spooled, the request succeeds
        await gw.send(records(4))  # behind them
        await until(lambda: spool.empty, "the spool drained through a new producer")
        await gw.send(records(5))
        await gw.aclose()

    asyncio.run(scenario())
    assert len(made) == 2 and made[0].purged
    assert seqs(made[0].delivered) == [0, 1]
    assert seqs(made[1].delivered) == [2, 3, 4, 5]  # each once, in order
    assert registry.get_sample_value("renewals_total") == 1


def test_records_whose_delivery_timed_out_in_flight_but_landed_are_not_sent_again(tmp_path: Path) -> None:
    fake = FakeProducer()
    spool = Spool(tmp_path / "gateway", 1 << 20)
    registry = CollectorRegistry()
    metrics = SpoolMetrics(registry)
    found = Counter("found", "", registry=registry)
    gw = gateway(fake, spool, metrics)
    gw.found = found

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0, 1))
        fake.up, fake.lands_anyway = False, True  # the broker writes them, the answer is lost
        await gw.send(records(2, 3))  # reported timed out: spooled
        await gw.send(records(4))  # behind them, never given to the producer
        assert spool.records == 3
        fake.up = True
        await until(lambda: spool.empty, "the spool drained")
        await gw.aclose()

    asyncio.run(scenario())
    assert seqs(fake.log.values()) == [0, 1, 2, 3, 4]  # each once, in order
    assert registry.get_sample_value("found_total") == 2
    assert registry.get_sample_value("gds_spool_drained_total", {"job": "gateway"}) == 3


def test_read_back_starts_after_the_last_confirmed_offset_and_drops_each_copy_once() -> None:
    log = Log(TOPIC)
    for value in (b"a", b"b", b"c", b"c"):
        log.write(b"k", value)
    landed = Landed("127.0.0.1:1", consumer_factory=lambda _config: FakeConsumer(log))
    landed.confirmed(TOPIC, 0, 1)  # a and b were confirmed to this producer
    spooled = [SpoolRecord(TOPIC, b"k", v) for v in (b"a", b"c", b"c", b"c", b"d")]
    assert landed.filter(spooled) == spooled  # no doubt, no read
    landed.doubt({TOPIC})
    kept = landed.filter(spooled)
    assert [r.value for r in kept] == [b"a", b"c", b"d"]  # a is older than the mark: sent again
    assert landed.dropped == 2


def test_a_drain_chunk_that_fails_after_the_read_back_reads_back_again(tmp_path: Path) -> None:
    """The chunk stays spooled whole, the copies found for it included: the next try must find
    them again, even when this one failed before anything reached the producer."""
    fake = FakeProducer()
    spool = Spool(tmp_path / "gateway", 1 << 20)
    gw = gateway(fake, spool)

    async def scenario() -> None:
        gw.start()
        await gw.send(records(0, 1))
        fake.up, fake.lands_anyway = False, True
        await gw.send(records(2, 3))  # written, reported timed out: spooled
        await gw.send(records(4))  # behind them
        fake.refuse = 1  # the first drain's produce is refused: nothing of it is queued
        fake.up = True
        await until(lambda: spool.empty, "the spool drained")
        await gw.aclose()

    asyncio.run(scenario())
    assert fake.refuse == 0  # the refusal happened
    assert seqs(fake.log.values()) == [0, 1, 2, 3, 4]
