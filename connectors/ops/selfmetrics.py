"""The pipeline's own health, fed back into the pipeline as seed-format metrics.

Every `SELF_METRICS_INTERVAL_S` a daemon thread of each live flow process reads this process's
Prometheus registry and produces what it finds to `gds.metrics.pipeline.{environment}`, one
message per value, keyed like any instance (`instance_id` = `{flow}@{host}`). The alerting job
reads that topic like any other metric topic, so the bundled self-monitoring rules
(`rules/bundled/alert-rules.yml`: KafkaConsumerLagHigh, TimescaleDBDown, ClickHouseInsertErrors,
DeadLetterRate, and MetricsAbsent as the dead man's switch) evaluate the pipeline itself.

A thread rather than a dataflow step because the worker thread is exactly what blocks when a
store is down (a sink retries inside `write_batch`): the thread keeps reporting `timescaledb_up
0` while the flow waits. What it produces (metric_name: from):

- `up` 1: this process is running (MetricsAbsent fires when it stops arriving);
- `kafka_consumer_lag` {topic, partition}: Bytewax's `bytewax_kafka_consumer_lag` gauge;
- `timescaledb_up`, `clickhouse_up`, `redis_up` 0/1: `gds_store_up{store}` (connectors/storage/retry.py),
  only once the store was used by this process;
- `timescaledb_error_rate`, `clickhouse_insert_error_rate`, `redis_error_rate` (failed attempts/s),
  `dlq_rate` {stage} (dead letters/s), `sink_error_rate` {sink}: rates of the matching counters
  over the last interval.

Nothing here may stop a flow: a broker that is down loses self-metrics (librdkafka buffers
them a while), logged once per failure streak.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from confluent_kafka import Producer
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from connectors.config import KafkaSettings, MonitoringSettings

log = logging.getLogger(__name__)

DATABASE_TYPE: Final = "pipeline"

_STORE_UP: Final = {"timescaledb": "timescaledb_up", "clickhouse": "clickhouse_up", "redis": "redis_up"}
_STORE_ERRORS: Final = {
    "timescaledb": "timescaledb_error_rate",
    "clickhouse": "clickhouse_insert_error_rate",
    "redis": "redis_error_rate",
}


@dataclass(frozen=True, slots=True)
class SelfSample:
    """One value of the pipeline's health, before it becomes a seed message."""

    metric_name: str
    value: float
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Rates:
    """Counter values at the previous tick, to turn counters into per-second rates."""

    at: float
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


def _samples(registry: Collector, name: str) -> Iterable[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name` (a counter's `_total` included)."""
    for family in registry.collect():
        for s in family.samples:
            if s.name == name:
                yield s.labels, float(s.value)


def read_health(registry: Collector, flow: str, rates: _Rates, now: float) -> list[SelfSample]:
    """What this process knows about its own health, for flow `flow` (pure given the registry).

    Counters become rates against the values `rates` saw at its last call (0 at start: the
    counters start with the process), and `rates` moves on to `now`.
    """
    out = [SelfSample("up", 1.0)]
    for labels, value in _samples(registry, "bytewax_kafka_consumer_lag"):
        step = labels.get("step_id", "")
        if step.split(".", 1)[0] != flow:
            continue
        tags: tuple[tuple[str, str], ...] = (
            ("partition", labels.get("partition", "")),
            ("topic", labels.get("topic", "")),
        )
        out.append(SelfSample("kafka_consumer_lag", value, tags))
    for labels, value in _samples(registry, "gds_store_up"):
        name = _STORE_UP.get(labels.get("store", ""))
        if name is not None:
            out.append(SelfSample(name, value))
    elapsed = now - rates.at
    counters: list[tuple[str, tuple[tuple[str, str], ...], float]] = []
    for labels, value in _samples(registry, "gds_store_errors_total"):
        name = _STORE_ERRORS.get(labels.get("store", ""))
        if name is not None:
            counters.append((name, (), value))
    for labels, value in _samples(registry, "gds_dlq_total"):
        if labels.get("flow") == flow:
            counters.append(("dlq_rate", (("stage", labels.get("stage", "")),), value))
    for labels, value in _samples(registry, "gds_sink_errors_total"):
        if labels.get("flow") == flow:
            counters.append(("sink_error_rate", (("sink", labels.get("sink", "")),), value))
    for name, tags, value in counters:
        before = rates.seen.get((name, tags), 0.0)
        rates.seen[(name, tags)] = value
        rate = max(0.0, value - before) / elapsed if elapsed > 0 else 0.0
        out.append(SelfSample(name, rate, tags))
    rates.at = now
    return out


def seed_record(s: SelfSample, *, flow: str, host: str, environment: str, at: float) -> dict[str, Any]:
    """The seed message of one sample (the collectors' shape)."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "timestamp": stamp,
        "database_type": DATABASE_TYPE,
        "instance_id": f"{flow}@{host}",
        "metric_name": s.metric_name,
        "value": s.value,
        "tags": {"environment": environment, "flow": flow, **dict(s.tags)},
        "metadata": {"collector": "selfmetrics"},
    }


def self_metrics_topic(environment: str) -> str:
    return f"gds.metrics.{DATABASE_TYPE}.{environment}"


class SelfMetricsReporter:
    """Reads the registry and produces the samples every `interval_s` on a daemon thread.

    `tick()` is one round (tests call it directly); `start()` runs rounds until `stop()`.
    """

    def __init__(
        self,
        flow: str,
        producer: Producer,
        topic: str,
        *,
        interval_s: float = 30.0,
        environment: str = "production",
        host: str | None = None,
        registry: Collector = REGISTRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"SelfMetricsReporter({flow!r}): interval_s must be > 0, got {interval_s!r}")
        self.flow = flow
        self.producer = producer
        self.topic = topic
        self.interval_s = interval_s
        self.environment = environment
        self.host = host or socket.gethostname()
        self.registry = registry
        self.clock = clock
        self._rates = _Rates(clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.produced = 0

    @property
    def instance_id(self) -> str:
        return f"{self.flow}@{self.host}"

    def tick(self) -> list[dict[str, Any]]:
        now = self.clock()
        records = [
            seed_record(s, flow=self.flow, host=self.host, environment=self.environment, at=now)
            for s in read_health(self.registry, self.flow, self._rates, now)
        ]
        key = self.instance_id.encode()
        for r in records:
            try:
                self.producer.produce(self.topic, json.dumps(r).encode(), key, on_delivery=self._delivered)
            except (BufferError, Exception) as exc:  # a full queue or a closed producer: skip a round
                self._report_failure(f"{type(exc).__name__}: {exc}")
                break
        self.producer.poll(0)
        return records

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.produced += 1
            self._failing = False
        else:
            self._report_failure(str(err))

    def _report_failure(self, what: str) -> None:
        if not self._failing:  # once per streak: a dead broker must not flood the log
            log.warning("selfmetrics: cannot produce to %s: %s", self.topic, what)
        self._failing = True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never take the flow down; say why once per round
                log.exception("selfmetrics: round failed")
            self._stop.wait(self.interval_s)

    def start(self) -> SelfMetricsReporter:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"gds-selfmetrics:{self.flow}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, flush_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
        self.producer.flush(flush_s)


_started: dict[str, SelfMetricsReporter] = {}
_lock = threading.Lock()


def start(flow: str, kafka: KafkaSettings, monitoring: MonitoringSettings) -> SelfMetricsReporter | None:
    """Start this process's reporter for `flow` once (idempotent); None when turned off.

    The call a flow makes at start-up, beside `connectors.ops.start`, with the settings it
    checked. Needs KAFKA_BOOTSTRAP_SERVERS (no broker, nothing to feed back); creates the
    topic if missing.
    """
    interval, environment = monitoring.self_metrics_interval_s, monitoring.self_metrics_environment
    if kafka.embedded or not interval > 0:
        return None
    with _lock:
        if flow in _started:
            return _started[flow]
        from connectors.errors import ConnectorError
        from connectors.kafka.topics import DAY_MS, TopicSpec, ensure_topics

        bootstrap = ",".join(kafka.bootstrap)
        topic = self_metrics_topic(environment)
        try:
            ensure_topics(bootstrap, [TopicSpec(topic, partitions=1, retention_ms=7 * DAY_MS)])
        except ConnectorError as exc:  # e.g. no admin rights: producing will say if it is missing
            log.warning("selfmetrics: could not ensure topic %s: %s", topic, exc)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 100, **kafka.kafka_extra})
        reporter = SelfMetricsReporter(flow, producer, topic, interval_s=interval, environment=environment)
        _started[flow] = reporter.start()
        log.info("selfmetrics: %s reports to %s every %gs", reporter.instance_id, topic, interval)
        return reporter
