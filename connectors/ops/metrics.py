"""The flows' Prometheus metrics, built in one `Metrics` object bound to the registry it is
given, plus the source and sink wrappers that instrument any Bytewax connector.

As Alertmanager's `NewMetrics(registerer)`: a process has one `Metrics` on prometheus_client's
default registry (`METRICS`, which `/metrics` serves), and whatever records takes it as a
parameter that defaults to that one. A test builds its own on a fresh `CollectorRegistry`, so
nothing registers twice and no test depends on another's counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from bytewax.inputs import (
    FixedPartitionedSource,
    StatefulSourcePartition,
)
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from connectors.kafka.message import is_message
from connectors.ops.health import HEALTH, Health
from rules.model import AlertEvent, AlertState, NotifyReason

X = TypeVar("X")
R = TypeVar("R")

NOTIFY_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600)
SINK_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def transition_label(event: AlertEvent) -> str:
    """The `state` label of an event: the state entered, or `repeat` for a repeat notification."""
    if event.state is AlertState.FIRING and event.notify is NotifyReason.REPEAT_ELAPSED:
        return "repeat"
    return event.state.value


class Metrics:
    """Every `gds_*` collector of a process, registered on `registry` when built.

    Building a second one on the same registry raises (prometheus_client refuses a duplicated
    name): one per registry, by design. The recording methods are thread-safe (worker threads
    call them); `registry` is what a server serves or a test reads.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        # -- input, DLQ, alerts (the flows' batch logic)
        self.messages_in = Counter(
            "gds_messages_in", "Messages read from the input topics.", ("flow",), registry=r
        )
        self.dlq = Counter(
            "gds_dlq",
            "Messages sent to a dead-letter topic, by pipeline stage.",
            ("flow", "stage"),
            registry=r,
        )
        self.late_samples = Counter(
            "gds_late_samples",
            "Samples older than the allowed lateness, counted and dropped.",
            ("flow",),
            registry=r,
        )
        self.alert_transitions = Counter(
            "gds_alert_transitions",
            "Alert transitions by rule and state entered (pending, firing, resolved, inactive; repeat = "
            "repeat notification of a firing alert).",
            ("flow", "rule", "state"),
            registry=r,
        )
        self.alerts_firing = Gauge(
            "gds_alerts_firing",
            "Alert instances firing, as seen by this process since it started (sum over pods).",
            ("rule",),
            registry=r,
        )
        self.last_batch = Gauge(
            "gds_last_batch_timestamp_seconds",
            "Wall-clock time of the last input batch a flow processed (Unix seconds).",
            ("flow",),
            registry=r,
        )
        # -- control plane (connectors.control.watch)
        self.rule_reloads = Counter(
            "gds_rule_reloads",
            "Rule-set reloads a running job attempted, by outcome (loaded, refused); once per process.",
            ("flow", "outcome"),
            registry=r,
        )
        # -- sinks (InstrumentedSink)
        self.sink_batch_size = Histogram(
            "gds_sink_batch_size",
            "Items per write_batch call of a sink.",
            ("flow", "sink"),
            buckets=SINK_BATCH_BUCKETS,
            registry=r,
        )
        self.sink_errors = Counter(
            "gds_sink_errors", "write_batch calls of a sink that raised.", ("flow", "sink"), registry=r
        )
        # -- notification delivery (connectors.notify.sink)
        self.notify_latency = Histogram(
            "gds_notify_latency_seconds",
            "Time from a sample's arrival (Kafka timestamp) to the notification post it caused.",
            buckets=NOTIFY_LATENCY_BUCKETS,
            registry=r,
        )
        self.notify_delivered = Counter(
            "gds_notify_delivered_total", "Notifications accepted (2xx) by the service.", registry=r
        )
        self.notify_retried = Counter(
            "gds_notify_retried_total", "Notification attempts scheduled for a retry.", registry=r
        )
        self.notify_undeliverable = Counter(
            "gds_notify_undeliverable_total",
            "Notifications handed to the DLQ callback, by reason.",
            ("reason",),
            registry=r,
        )
        self.notify_muted = Counter(
            "gds_notify_muted_total", "Notifications not posted: instance in maintenance.", registry=r
        )
        self.notify_skipped = Counter(
            "gds_notify_skipped_total",
            "Items reaching the notify sink that were not meant for delivery.",
            registry=r,
        )
        # -- stores (connectors.storage.retry; read back by connectors.ops.selfmetrics)
        self.store_up = Gauge(
            "gds_store_up",
            "1 when the store's last operation succeeded, 0 from a transient failure until one succeeds.",
            ("store",),
            registry=r,
        )
        self.store_errors = Counter(
            "gds_store_errors",
            "Failed attempts of store operations (retried or not).",
            ("store",),
            registry=r,
        )
        self.alert_records_skipped = Counter(
            "gds_alert_records_skipped",
            "Records of the alerts topic that are not alert transitions (heartbeats), skipped by storage.",
            ("kind",),
            registry=r,
        )
        # -- rollups (flows.rollups)
        self.rollup_late = Counter(
            "gds_rollup_late_samples_total", "Samples dropped: their window had already closed.", registry=r
        )
        self.rollup_windows = Counter(
            "gds_rollup_windows_total", "Rollup rows emitted (all resolutions).", registry=r
        )
        # `.labels()` locks and hashes: children resolved once per flow, not per batch
        self._batch_children: dict[str, tuple[Any, Any, Any]] = {}
        self._firing_lock = threading.Lock()
        self._firing: dict[str, int] = {}

    def record_batch(
        self,
        flow: str,
        n_in: int,
        n_dlq: int = 0,
        n_late: int = 0,
        *,
        stage: str = "decode",
        health: Health | None = None,
    ) -> None:
        """After each input batch (in `StatefulBatchLogic.on_batch`): counts, liveness, readiness."""
        h = health or HEALTH
        children = self._batch_children.get(flow)
        if children is None:
            children = self._batch_children[flow] = (
                self.messages_in.labels(flow),
                self.late_samples.labels(flow),
                self.last_batch.labels(flow),
            )
        messages_in, late_samples, last_batch = children
        if n_in:
            messages_in.inc(n_in)
        if n_dlq:
            self.dlq.labels(flow, stage).inc(n_dlq)
        if n_late:
            late_samples.inc(n_late)
        last_batch.set(h.clock())
        h.batch(flow)

    def record_dlq(self, flow: str, stage: str, n: int = 1) -> None:
        """Dead-lettered items of a stage other than the input decode (e.g. `notify`)."""
        if n:
            self.dlq.labels(flow, stage).inc(n)

    def record_events(self, flow: str, events: Iterable[AlertEvent]) -> None:
        """Count alert transitions by rule/state and keep `gds_alerts_firing` (call on every event).

        The gauge starts at 0 in a new process, while alerts restored from a snapshot may be
        firing; it never goes below 0, and catches up as those alerts resolve or re-fire.
        """
        counts: dict[tuple[str, str], int] = {}
        delta: dict[str, int] = {}
        for e in events:
            label = transition_label(e)
            key = (e.alert_name, label)
            counts[key] = counts.get(key, 0) + 1
            if label == "firing":
                delta[e.alert_name] = delta.get(e.alert_name, 0) + 1
            elif e.state is AlertState.RESOLVED and e.fired_at is not None:
                delta[e.alert_name] = delta.get(e.alert_name, 0) - 1
        for (rule, label), n in counts.items():
            self.alert_transitions.labels(flow, rule, label).inc(n)
        if delta:
            with self._firing_lock:
                for rule, d in delta.items():
                    value = max(0, self._firing.get(rule, 0) + d)
                    self._firing[rule] = value
                    self.alerts_firing.labels(rule).set(value)

    def observe_notify_latency(self, seconds: float) -> None:
        """Arrival-to-post latency of one notification (negative values, from clock skew, count as 0)."""
        self.notify_latency.observe(max(0.0, seconds))


METRICS = Metrics(REGISTRY)
"""This process's metrics, on the default registry (with Bytewax's lag gauge and the process
collectors): what the flows record into and `/metrics` serves."""


def kafka_timestamp_s(timestamp: tuple[int, int] | None) -> float | None:
    """A source message's `timestamp` (type, ms) -> Unix seconds; None when the broker set none."""
    if timestamp is None:
        return None
    kind, ms = timestamp
    if kind == 0 or ms < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return ms / 1000.0


S = TypeVar("S")


class _InstrumentedSourcePartition(StatefulSourcePartition[X, S]):
    def __init__(
        self, inner: StatefulSourcePartition[X, S], flow: str, topic: str, partition: int, health: Health
    ) -> None:
        self._inner = inner
        self._flow = flow
        self._topic = topic
        self._partition = partition
        self._health = health

    def next_batch(self) -> Iterable[X]:
        batch = self._inner.next_batch()
        items = batch if isinstance(batch, list) else list(batch)
        consumed = len(items)
        while consumed and not is_message(items[consumed - 1]):
            consumed -= 1  # in-band markers a source appends (`SourceProgress`) are not input
        self._health.input(self._flow, self._topic, self._partition, consumed)
        return items

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class InstrumentedSource(FixedPartitionedSource[X, S]):
    """Wraps a `FixedPartitionedSource` (KafkaSource) to report every poll to `Health`.

    That is the input side of liveness and of "no progress while input waits": each poll
    proves the worker loop runs, and a partition that yields nothing while its lag is > 0 is
    stalled. Partition names `"{partition}-{topic}"` are KafkaSource's; the flow name is the
    first part of the step id (`{flow}.{step}`), like the lag gauge's.
    """

    def __init__(self, inner: FixedPartitionedSource[X, S], health: Health | None = None) -> None:
        if not isinstance(inner, FixedPartitionedSource):
            raise TypeError(f"InstrumentedSource: only FixedPartitionedSource can be wrapped, got {inner!r}")
        self.inner = inner
        self.health = health

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> _InstrumentedSourcePartition[X, S]:
        index, _, topic = for_part.partition("-")
        partition = int(index) if index.isdigit() and topic else -1
        return _InstrumentedSourcePartition(
            self.inner.build_part(step_id, for_part, resume_state),
            step_id.split(".", 1)[0],
            topic if partition >= 0 else for_part,
            partition,
            self.health or HEALTH,
        )


class _SinkCounters:
    """The `gds_sink_*` metrics of one sink partition: batch sizes, and calls that raised."""

    def __init__(self, flow: str, name: str, metrics: Metrics) -> None:
        self._size = metrics.sink_batch_size.labels(flow, name)
        self._errors = metrics.sink_errors.labels(flow, name)

    def write(self, write_batch: Callable[[list[X]], None], items: list[X]) -> None:
        self._size.observe(len(items))
        self.counted(write_batch, items)

    def counted(self, call: Callable[..., R], *args: Any) -> R:
        try:
            return call(*args)
        except Exception:
            self._errors.inc()
            raise


class _InstrumentedPartition(StatelessSinkPartition[X]):
    def __init__(self, inner: StatelessSinkPartition[X], flow: str, name: str, metrics: Metrics) -> None:
        self._inner = inner
        self._counters = _SinkCounters(flow, name, metrics)

    def write_batch(self, items: list[X]) -> None:
        self._counters.write(self._inner.write_batch, items)

    def close(self) -> None:
        self._inner.close()


class InstrumentedSink(DynamicSink[X]):
    """Wraps a `DynamicSink` (KafkaSink, NotifySink, StdOutSink) to fill the `gds_sink_*` metrics."""

    def __init__(self, inner: Sink[X], flow: str, name: str, metrics: Metrics | None = None) -> None:
        if not isinstance(inner, DynamicSink):
            raise TypeError(f"InstrumentedSink({name!r}): only DynamicSink can be wrapped, got {inner!r}")
        self.inner: DynamicSink[X] = inner
        self.flow = flow
        self.name = name
        self.metrics = metrics or METRICS

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InstrumentedPartition[X]:
        return _InstrumentedPartition(
            self.inner.build(step_id, worker_index, worker_count), self.flow, self.name, self.metrics
        )


class _InstrumentedStatefulPartition(StatefulSinkPartition[X, S]):
    def __init__(self, inner: StatefulSinkPartition[X, S], flow: str, name: str, metrics: Metrics) -> None:
        self._inner = inner
        self._counters = _SinkCounters(flow, name, metrics)

    def write_batch(self, values: list[X]) -> None:
        self._counters.write(self._inner.write_batch, values)

    def snapshot(self) -> S:
        # a partition that writes asynchronously fails here
        return self._counters.counted(self._inner.snapshot)

    def close(self) -> None:
        self._inner.close()


class InstrumentedPartitionedSink(FixedPartitionedSink[X, S]):
    """`InstrumentedSink` for a `FixedPartitionedSink` (the pipelined notification sink)."""

    def __init__(
        self, inner: FixedPartitionedSink[X, S], flow: str, name: str, metrics: Metrics | None = None
    ) -> None:
        self.inner = inner
        self.flow = flow
        self.name = name
        self.metrics = metrics or METRICS

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def part_fn(self, item_key: str) -> int:
        return self.inner.part_fn(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> _InstrumentedStatefulPartition[X, S]:
        return _InstrumentedStatefulPartition(
            self.inner.build_part(step_id, for_part, resume_state), self.flow, self.name, self.metrics
        )
