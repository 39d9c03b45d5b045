"""The gateway's Kafka producer: a request is answered 2xx only once all of it is durable, in
Kafka (broker-confirmed) or in the gateway's local spool (fsynced).

One idempotent, acks=all producer (PRODUCER_DEFAULTS) is shared by all requests; a poll thread
serves the delivery reports, and each request waits on its own batch (one future per request,
not per sample). Every record has librdkafka's produce deadline (`message.timeout.ms` =
GATEWAY_ACK_TIMEOUT_S), and the request waits a little longer (`ACK_GRACE_S`), so by then each
record has its outcome: a record reported failed (timed out in the queue) is never sent later, and
only those are spooled (`Spool`, connectors/kafka/spool.py), in the request's order.

While the spool holds records every new request goes behind them (appended, not produced), and
one background task drains it, oldest first, once the brokers answer a metadata probe again; the
spool drops a chunk only after the broker confirmed it. So per series (one sender, one request at
a time, as Prometheus' shards do) order is kept. A full spool refuses the request whole:
`SpoolFullUnavailableError`, 503 + Retry-After, the sender retries.

A record that timed out while in flight (sent, its answer lost) may be in Kafka although reported
failed, and so may part of a drain chunk that failed: before the drain sends such records again it
reads the partitions back from the last offset confirmed to this producer (`Landed`,
connectors/kafka/landed.py) and leaves out those found there. At-least-once where it remains: a
record still without a report at the deadline (librdkafka may yet deliver it) and records in flight
when the process died. The storage writes are idempotent on (series, time) and the alert state
tolerates a repeated sample. Without a spool (GATEWAY_SPOOL
false) an unconfirmed request gets `UnavailableError` (503) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from connectors.errors import ConnectorError
from connectors.gateway.parse import Record
from connectors.kafka.landed import Landed
from connectors.kafka.sink import PRODUCER_DEFAULTS
from connectors.kafka.source import broker_list
from connectors.kafka.spool import Spool, SpoolFullError, SpoolMetrics, SpoolRecord
from connectors.kafka.topics import DAY_MS, TopicSpec, ensure_topics
from rules.metric import Metric

log = logging.getLogger(__name__)

Encode = Callable[[Metric, str], bytes]
"""`encode(metric, topic) -> value bytes` (JSON, or Confluent Avro for the topic's subject)."""


ACK_GRACE_S: Final = 2.0
"""How much longer than the produce deadline a request waits for its delivery reports."""
SPOOL_JOB: Final = "gateway"
"""The `job` label of the gateway's `gds_spool_*` metrics and its directory under SPOOL_DIR."""


class UnavailableError(ConnectorError):
    """Kafka did not confirm every record in time (and no spool took them): 503 with Retry-After."""


class SpoolFullUnavailableError(UnavailableError):
    """Kafka is unreachable and the spool is full: 503 with Retry-After, nothing of it kept."""


class _Batch:
    """One request's (or drain chunk's) records in flight; done once each has its report."""

    def __init__(
        self, n: int, loop: asyncio.AbstractEventLoop | None = None, landed: Landed | None = None
    ) -> None:
        self.loop, self.n, self.remaining, self.landed = loop, n, n, landed
        self.ok: set[int] = set()
        self.errors: list[str] = []
        self.done: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
        self.event = threading.Event()  # for a waiter that is a thread (the drain)
        self.lock = threading.Lock()
        if n == 0:
            self._finished()

    def reporter(self, i: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:  # the poll thread
            if err is not None:
                self.report(i, f"{msg.topic()}: {err.str()}")
                return
            if self.landed is not None:
                self.landed.confirmed(msg.topic(), msg.partition(), msg.offset())  # type: ignore[arg-type]
            self.report(i, None)

        return report

    def report(self, i: int, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.ok.add(i)
            else:
                self.errors.append(error)
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self._finished()

    def not_queued(self, first: int) -> None:
        """Records `first`.. never reached the producer: no report will come for them."""
        with self.lock:
            self.remaining -= self.n - first
            finished = self.remaining == 0
        if finished:
            self._finished()

    def _finished(self) -> None:
        self.event.set()
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    @property
    def doubtful(self) -> bool:
        """Some record reached the producer and was not confirmed: it may be in Kafka all the same."""
        with self.lock:
            return bool(self.errors) or self.remaining > 0

    def unconfirmed(self) -> list[int]:
        """Indices the broker did not confirm (failed, not queued or not reported yet), in order."""
        with self.lock:
            return [i for i in range(self.n) if i not in self.ok]


class GatewayProducer:
    """`spool` None: no spool, an unconfirmed request fails with `UnavailableError` (503)."""

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        encode: Encode,
        *,
        ack_timeout_s: float = 10.0,
        create_topics: bool = True,
        extra: dict[str, str] | None = None,
        spool: Spool | None = None,
        spool_metrics: SpoolMetrics | None = None,
        retry_s: float = 2.0,
        drain_step: int = 20_000,
        producer: Any = None,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        renewals: Counter | None = None,
        landed: Landed | None = None,
        found: Counter | None = None,
    ) -> None:
        self.bootstrap = ",".join(broker_list(bootstrap))
        self.encode = encode
        self.ack_timeout_s = ack_timeout_s
        self.create_topics = create_topics
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            **PRODUCER_DEFAULTS,
            # every record has its outcome by the request's deadline: one reported failed (timed
            # out in the queue) is never delivered later, so spooling it cannot duplicate it
            "message.timeout.ms": str(max(100, int(ack_timeout_s * 1000))),
            "linger.ms": "2",
            **(extra or {}),
        }
        self.wait_s = int(config["message.timeout.ms"]) / 1000 + ACK_GRACE_S
        self._config = config
        self._factory = producer_factory
        self._generation = 0  # which producer an error callback speaks of: only the current one counts
        self.producer = producer if producer is not None else self._make()
        self._fatal: str | None = None  # set (any thread) once librdkafka declared the producer dead
        self._renew_lock = threading.Lock()
        self.renewals = renewals
        self.known_topics: set[str] = set()
        self.last_error = ""
        self.spool = spool
        self.spool_metrics = spool_metrics
        self.landed = landed if landed is not None else Landed(self.bootstrap, extra)
        self.found = found
        self.retry_s = retry_s
        self.drain_step = drain_step
        self._drainer: asyncio.Task[None] | None = None
        self._outage = False  # logged once per outage, not per request
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="gateway-kafka-poll", daemon=True)

    def start(self) -> None:
        self._poller.start()
        if self.spool is not None and not self.spool.empty:
            log.warning(
                "%d records spooled by an earlier run in %s: draining them before new samples",
                self.spool.records,
                self.spool.path,
            )
            self._outage = True
            self._kick()
        self._show()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join()
        self.producer.flush(timeout_s)
        if self.spool is not None:
            self.spool.close()

    async def aclose(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._drainer
        await asyncio.to_thread(self.close)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def _make(self) -> Any:
        generation = self._generation
        return self._factory({**self._config, "error_cb": lambda err: self._on_error(err, generation)})

    def _on_error(self, err: KafkaError, generation: int) -> None:
        if generation != self._generation:
            return  # a replaced producer's last words
        self.last_error = err.str()
        if err.fatal():
            self._fatal = err.str()

    def _current(self) -> Any:
        """The producer, replaced by a new one first when librdkafka declared it dead.

        A fatal error (the idempotent producer's sequence state broken, e.g. by known librdkafka
        bugs after a broker outage) ends a producer for good: every later `produce` fails. A
        server must not stay up refusing or spooling forever, so a new producer (a new producer
        id) takes over; what the old one still held is purged, its reports fail those records
        and they are spooled (or answered 503 without a spool), as for any unconfirmed record.
        Records it had in flight may be in Kafka already: at-least-once, as documented above.
        """
        if self._fatal is None:
            return self.producer
        with self._renew_lock:
            if self._fatal is not None:
                reason, old = self._fatal, self.producer
                self._generation += 1
                self.producer = self._make()
                self._fatal = None
                if self.renewals is not None:
                    self.renewals.inc()
                log.error(
                    "fatal Kafka producer error (%s): replaced the producer; its unconfirmed "
                    "records are spooled and sent again (without a spool: answered 503)",
                    reason,
                )
                with contextlib.suppress(Exception):
                    old.purge()
                with contextlib.suppress(Exception):
                    old.flush(ACK_GRACE_S)  # serves the purged records' failure reports
        return self.producer

    def _ensure(self, topics: set[str]) -> None:
        """Missing metric topics are created (the local broker does not auto-create)."""
        missing = topics - self.known_topics
        if not missing:
            return
        try:
            existing = set(self._current().list_topics(timeout=min(5.0, self.ack_timeout_s)).topics)
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

    def _produce(self, records: Sequence[SpoolRecord], batch: _Batch) -> None:
        """Queue `records`; those the local queue cannot take get no report (`not_queued`)."""
        producer, generation = self._current(), self._generation
        for i, r in enumerate(records):
            try:
                try:
                    producer.produce(r.topic, r.value, r.key, on_delivery=batch.reporter(i))
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let deliveries drain it once
                    producer.produce(r.topic, r.value, r.key, on_delivery=batch.reporter(i))
            except (BufferError, KafkaException) as exc:
                error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
                if isinstance(error, KafkaError) and error.fatal():
                    self._on_error(error, generation)  # the next call gets a new producer
                batch.not_queued(i)
                return

    def _encoded(self, records: Sequence[Record]) -> list[SpoolRecord]:
        return [SpoolRecord(r.topic, r.key.encode(), self.encode(r.metric, r.topic)) for r in records]

    async def send(self, records: Sequence[Record]) -> None:
        """Make `records` durable: broker-confirmed, or spooled (fsynced) behind what is spooled.

        `UnavailableError` (503) when neither: no spool and Kafka did not confirm, or the spool full.
        """
        if not records:
            return
        encoded = await asyncio.to_thread(self._encoded, records)
        if self.spool is not None and not self.spool.empty:  # keep order: behind the spooled ones
            await self._keep(encoded, "")
            return
        batch = _Batch(len(encoded), asyncio.get_running_loop(), self.landed)
        try:
            await asyncio.to_thread(self._ensure, {r.topic for r in encoded})
        except UnavailableError:
            if self.spool is None:
                raise
            batch.not_queued(0)  # the topic cannot be made now: the drain makes it
        else:
            await asyncio.to_thread(self._produce, encoded, batch)
        assert batch.done is not None
        # past the produce deadline every record has its report; one without is unconfirmed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(batch.done), self.wait_s)
        left = batch.unconfirmed()
        if not left:
            return
        reason = batch.errors[0] if batch.errors else self.last_error or "no error reported yet"
        if self.spool is None:
            raise UnavailableError(
                f"Kafka did not confirm {len(left)} of {len(records)} records within "
                f"{self.wait_s:g}s ({reason})"
            )
        if batch.remaining > 0:
            log.warning(
                "%d records without a delivery report after %gs are spooled; a late delivery "
                "would duplicate them (at-least-once)",
                batch.remaining,
                self.wait_s,
            )
        if batch.doubtful:
            self.landed.doubt({encoded[i].topic for i in left})
        await self._keep([encoded[i] for i in left], reason)

    async def _keep(self, records: list[SpoolRecord], reason: str) -> None:
        """Append to the spool (durable on return) and make sure a drain is running."""
        assert self.spool is not None
        try:
            await asyncio.to_thread(self.spool.append, records)
        except SpoolFullError as exc:
            self._show()
            raise SpoolFullUnavailableError(str(exc)) from exc
        if not self._outage:
            self._outage = True
            log.warning(
                "Kafka unreachable (%s): spooling to %s until it answers again",
                reason or self.last_error or "not confirming",
                self.spool.path,
            )
        if self.spool_metrics is not None:
            self.spool_metrics.spooled.labels(SPOOL_JOB).inc(len(records))
        self._show()
        self._kick()

    def _show(self) -> None:
        if self.spool is not None and self.spool_metrics is not None:
            self.spool_metrics.show(SPOOL_JOB, [self.spool])

    # ---------------------------------------------------------------- draining

    def _kick(self) -> None:
        """Start the drain task unless one runs (one drain at a time)."""
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain_loop())

    async def _drain_loop(self) -> None:
        assert self.spool is not None
        spool = self.spool
        while not spool.empty:
            try:
                await asyncio.to_thread(self._current().list_topics, timeout=min(2.0, self.ack_timeout_s))
                await asyncio.to_thread(spool.drain, self._produce_confirmed, max_records=self.drain_step)
            except (KafkaException, ConnectorError) as exc:
                log.debug("spool not drained yet (%d records): %s", spool.records, exc)
                self._show()
                await asyncio.sleep(self.retry_s)
                continue
            finally:
                self._show()
        self.landed.forget()
        if self._outage:
            self._outage = False
            log.info("Kafka is back: the spool %s is drained", spool.path)

    def _produce_confirmed(self, records: Sequence[SpoolRecord]) -> None:
        """The spool's `produce`: returns once the broker confirmed all `records`, raises otherwise."""
        try:
            self._ensure({r.topic for r in records})
        except UnavailableError as exc:
            raise ConnectorError(str(exc)) from exc
        kept = self.landed.filter(records)  # reads the log back first after a doubtful failure
        if self.found is not None and len(kept) < len(records):
            self.found.inc(len(records) - len(kept))
        batch = _Batch(len(kept), landed=self.landed)
        self._produce(kept, batch)
        if not batch.event.wait(self.wait_s):
            self.landed.chunk_failed(records)
            raise ConnectorError(f"{batch.remaining} spooled records without a report after {self.wait_s:g}s")
        if left := batch.unconfirmed():
            self.landed.chunk_failed(records)
            raise ConnectorError(f"{len(left)} spooled records not confirmed: {batch.errors[:1]}")
        if self.spool_metrics is not None:  # those found in Kafka are out of the spool and in Kafka too
            self.spool_metrics.drained.labels(SPOOL_JOB).inc(len(records))

    async def problems(self) -> list[str]:
        """Readiness: the brokers answer a metadata request; with a spool, ready while it takes
        appends (Kafka down is then an outage the spool absorbs, not a reason to shed traffic)."""
        if self.spool is not None:
            return [f"spool full: {self.spool.path} ({self.spool.bytes} bytes)"] if self.spool.full else []
        try:
            await asyncio.to_thread(self._current().list_topics, timeout=3.0)
        except KafkaException as exc:
            return [f"Kafka: {exc}"]
        return []
