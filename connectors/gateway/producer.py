"""The gateway's Kafka producer: a request is answered 2xx only once the broker confirmed all of it.

One idempotent, acks=all producer (PRODUCER_DEFAULTS) is shared by all requests; a poll thread
serves the delivery reports, and each request waits on its own batch (one future per request,
not per sample) with a deadline. Records not confirmed by then make the request fail with
`UnavailableError` (503 + Retry-After): the sender keeps its data and retries. librdkafka may still
deliver them later, so a retry can duplicate samples; the storage writes are idempotent on
(series, time) and the alert state tolerates a repeated sample, losing one would not be.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.errors import ConnectorError
from connectors.gateway.parse import Record
from connectors.kafka.sink import PRODUCER_DEFAULTS
from connectors.kafka.source import broker_list
from connectors.kafka.topics import DAY_MS, TopicSpec, ensure_topics
from rules.metric import Metric

log = logging.getLogger(__name__)

Encode = Callable[[Metric, str], bytes]
"""`encode(metric, topic) -> value bytes` (JSON, or Confluent Avro for the topic's subject)."""


class UnavailableError(ConnectorError):
    """Kafka did not confirm every record in time: answer 503 with Retry-After."""


class _Batch:
    """One request's records in flight; the future resolves once all are reported."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop, self.remaining, self.errors = loop, n, list[str]()
        self.done: asyncio.Future[None] = loop.create_future()
        self.lock = threading.Lock()

    def report(self, err: KafkaError | None, msg: Message) -> None:  # the poll thread
        with self.lock:
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err.str()}")
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class GatewayProducer:
    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        encode: Encode,
        *,
        ack_timeout_s: float = 10.0,
        create_topics: bool = True,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.bootstrap = ",".join(broker_list(bootstrap))
        self.encode = encode
        self.ack_timeout_s = ack_timeout_s
        self.create_topics = create_topics
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            **PRODUCER_DEFAULTS,
            # a record not delivered by the request's deadline fails instead of lingering
            "message.timeout.ms": str(max(1000, int(ack_timeout_s * 1000))),
            "linger.ms": "2",
            "error_cb": self._on_error,
            **(extra or {}),
        }
        self.producer = Producer(config)
        self.known_topics: set[str] = set()
        self.last_error = ""
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="gateway-kafka-poll", daemon=True)

    def start(self) -> None:
        self._poller.start()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join()
        self.producer.flush(timeout_s)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = err.str()
        if err.fatal():  # idempotence broken: nothing sent from now on is safe; let the pod restart
            log.error("fatal Kafka producer error: %s", err.str())

    def _ensure(self, topics: set[str]) -> None:
        """Missing metric topics are created (the local broker does not auto-create)."""
        missing = topics - self.known_topics
        if not missing:
            return
        try:
            existing = set(self.producer.list_topics(timeout=min(5.0, self.ack_timeout_s)).topics)
        except KafkaException as exc:
            raise UnavailableError(f"Kafka metadata: {exc}") from exc
        self.known_topics |= existing & topics
        missing -= existing
        if missing and self.create_topics:
            specs = [TopicSpec(name, partitions=4, retention_ms=7 * DAY_MS) for name in sorted(missing)]
            try:
                ensure_topics(self.bootstrap, specs, timeout_s=self.ack_timeout_s)
            except ConnectorError as exc:
                raise UnavailableError(f"cannot create {', '.join(sorted(missing))}: {exc}") from exc
            self.known_topics |= missing
            log.info("created topic(s) %s", ", ".join(sorted(missing)))

    def _produce(self, records: Sequence[Record], batch: _Batch) -> None:
        self._ensure({r.topic for r in records})
        for i, r in enumerate(records):
            try:
                self.producer.produce(
                    r.topic, self.encode(r.metric, r.topic), r.key, on_delivery=batch.report
                )
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain it once
                try:
                    self.producer.produce(
                        r.topic, self.encode(r.metric, r.topic), r.key, on_delivery=batch.report
                    )
                except BufferError as exc:
                    unsent = len(records) - i
                    with batch.lock:
                        batch.remaining -= unsent
                    raise UnavailableError(
                        f"the producer queue is full ({unsent} records not queued)"
                    ) from exc

    async def send(self, records: Sequence[Record]) -> None:
        """Produce `records` and wait until the broker confirmed all; `UnavailableError` otherwise."""
        if not records:
            return
        batch = _Batch(asyncio.get_running_loop(), len(records))
        await asyncio.to_thread(self._produce, records, batch)
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), self.ack_timeout_s)
        except TimeoutError:
            raise UnavailableError(
                f"Kafka did not confirm {batch.remaining} of {len(records)} records within "
                f"{self.ack_timeout_s:g}s ({self.last_error or 'no error reported yet'})"
            ) from None
        if batch.errors:
            raise UnavailableError(f"{len(batch.errors)} of {len(records)} records failed: {batch.errors[0]}")

    async def problems(self) -> list[str]:
        """Readiness: the brokers answer a metadata request."""
        try:
            await asyncio.to_thread(self.producer.list_topics, timeout=3.0)
        except KafkaException as exc:
            return [f"Kafka: {exc}"]
        return []
