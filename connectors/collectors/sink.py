"""The collector's Kafka sink with a local spool: samples taken while Kafka is unreachable are kept
on disk (connectors/kafka/spool.py) and produced in order when it returns.

Per batch: while the spool holds anything, a drain is tried (at most every `retry_s`, after a cheap
metadata probe; at most `drain_step` records per batch, so polling goes on during a long drain) and
the batch goes behind the spooled records; otherwise the batch is produced and
what the broker did not confirm within librdkafka's `message.timeout.ms` is spooled. A batch that
does not fit in a full spool is dropped, counted (`gds_spool_dropped_total`) and logged: never
silently truncated. One spool directory per worker (`{dir}/w{index}`), so each keeps its order.
Records reported failed after they reached the producer may be in Kafka all the same (timed out in
flight): the drain reads their partitions back first and leaves out the copies it finds
(connectors/kafka/landed.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.errors import ConnectorError
from connectors.kafka.landed import Landed
from connectors.kafka.sink import producer_config
from connectors.kafka.spool import Spool, SpoolFullError, SpoolMetrics, SpoolRecord

log = logging.getLogger("connectors.collectors.sink")

DELIVERY_TIMEOUT_MS: Final = 10_000
"""librdkafka's `message.timeout.ms` for the collector: how long a sample may wait for an
unreachable broker before it is spooled (KAFKA_EXTRA_CONFIG can change it)."""

Message_ = KafkaSinkMessage[bytes | None, bytes | None]


_METRICS: SpoolMetrics | None = None


def spool_metrics() -> SpoolMetrics:
    """The process-wide `gds_spool_*` collectors on the default registry (built once)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = SpoolMetrics()
    return _METRICS


def _record(msg: Message_) -> SpoolRecord:
    if msg.topic is None or msg.value is None:
        raise ConnectorError(f"collector message without topic or value: {msg!r}")
    return SpoolRecord(msg.topic, msg.key, msg.value)


class _Partition(StatelessSinkPartition[Message_]):
    def __init__(
        self,
        producer: Producer,
        spool: Spool,
        job: str,
        retry_s: float,
        clock: Callable[[], float],
        metrics: SpoolMetrics,
        flush_s: float,
        drain_step: int = 20_000,
        landed: Landed | None = None,
    ) -> None:
        self._producer = producer
        self._landed = landed
        self._spool = spool
        self._job = job
        self._retry_s = retry_s
        self._clock = clock
        self._metrics = metrics
        self._next_drain = 0.0
        self._flush_s = flush_s
        self._drain_step = drain_step

    def _send(self, records: Sequence[SpoolRecord]) -> list[SpoolRecord]:
        """Produce and wait for every outcome; the records the broker did not confirm, in order."""
        failed: dict[int, KafkaError] = {}
        landed = self._landed

        def report(i: int) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    failed[i] = err
                elif landed is not None:
                    landed.confirmed(msg.topic(), msg.partition(), msg.offset())  # type: ignore[arg-type]

            return on_delivery

        for i, r in enumerate(records):
            try:
                self._producer.produce(r.topic, r.value, r.key, on_delivery=report(i))
            except BufferError:
                self._producer.poll(1)
                self._producer.produce(r.topic, r.value, r.key, on_delivery=report(i))
            self._producer.poll(0)
        left = self._producer.flush(self._flush_s)
        if (left or failed) and landed is not None:  # given to the producer: they may have landed
            landed.doubt({records[i].topic for i in failed} if not left else {r.topic for r in records})
        if left:  # not even timed out yet: treat as unconfirmed (a later delivery makes a duplicate)
            raise ConnectorError(f"{left} messages still unconfirmed after {self._flush_s:.0f} s")
        if failed:
            first = failed[min(failed)]
            log.warning("%d of %d messages not delivered (%s)", len(failed), len(records), first.str())
        return [r for i, r in enumerate(records) if i in failed]

    def _produce_all(self, records: Sequence[SpoolRecord]) -> None:
        kept = records if self._landed is None else self._landed.filter(records)
        try:
            if failed := self._send(kept):
                raise ConnectorError(f"{len(failed)} spooled messages not delivered yet")
        except ConnectorError:
            if self._landed is not None:
                self._landed.chunk_failed(records)
            raise
        self._metrics.drained.labels(self._job).inc(len(records))

    def _try_drain(self) -> None:
        now = self._clock()
        if now < self._next_drain:
            return
        self._next_drain = now + self._retry_s
        try:
            self._producer.list_topics(timeout=2.0)  # cheap probe: no 10 s delivery timeouts while down
            if self._spool.drain(self._produce_all, max_records=self._drain_step):
                log.info("Kafka is back: the spool is drained")
                if self._landed is not None:
                    self._landed.forget()
            else:  # more left: the next batch goes on at once (polls keep running meanwhile)
                self._next_drain = now
        except (KafkaException, ConnectorError) as exc:
            log.warning("Kafka still unreachable, %d records spooled: %s", self._spool.records, exc)

    def write_batch(self, items: list[Message_]) -> None:
        records = [_record(m) for m in items]
        if not self._spool.empty:
            self._try_drain()
        if self._spool.empty:
            try:
                records = self._send(records)
            except ConnectorError as exc:
                log.warning("%s; spooling the batch", exc)
        if records:
            self._keep(records)
        self._metrics.show(self._job, [self._spool])

    def _keep(self, records: list[SpoolRecord]) -> None:
        try:
            self._spool.append(records)
        except SpoolFullError as exc:
            self._metrics.dropped.labels(self._job).inc(len(records))
            log.error("dropped %d samples: Kafka unreachable and %s", len(records), exc)
            return
        self._metrics.spooled.labels(self._job).inc(len(records))
        if self._next_drain == 0.0 or self._spool.records == len(records):
            log.warning("Kafka unreachable: spooling to %s", self._spool.path)
            self._next_drain = self._clock() + self._retry_s

    def close(self) -> None:
        if not self._spool.empty:
            self._next_drain = 0.0
            self._try_drain()
        self._producer.flush(self._flush_s)
        self._spool.close()


class SpoolingKafkaSink(DynamicSink[Message_]):
    """The collector's sink: `KafkaSinkMessage`s (with topic) to Kafka, via a spool when it is down.

    `spool_dir/w{worker}` holds each worker's spool, at most `max_bytes` each.
    """

    def __init__(
        self,
        brokers: Sequence[str] | str,
        spool_dir: Path,
        max_bytes: int,
        add_config: Mapping[str, Any] | None = None,
        *,
        job: str = "collect",
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = producer_config(
            brokers, {"message.timeout.ms": str(DELIVERY_TIMEOUT_MS), **(add_config or {})}
        )
        self._config.pop("on_delivery", None)  # outcomes are collected per message instead
        self._add_config = dict(add_config or {})
        self._spool_dir = spool_dir
        self._max_bytes = max_bytes
        self._job = job
        self._retry_s = retry_s
        self._clock = clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        producer = Producer(self._config)
        flush_s = int(self._config["message.timeout.ms"]) / 1000 + 5  # every message has an outcome by then
        spool = Spool(self._spool_dir / f"w{worker_index}", self._max_bytes)
        if not spool.empty:
            log.warning(
                "%d records spooled by an earlier run in %s: draining first", spool.records, spool.path
            )
        landed = Landed(self._config["bootstrap.servers"], self._add_config)
        return _Partition(
            producer, spool, self._job, self._retry_s, self._clock, spool_metrics(), flush_s, landed=landed
        )
