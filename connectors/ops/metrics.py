"""The flows' Prometheus metrics and the helpers that record them (batches, DLQ, transitions,
sink batches), plus the source and sink wrappers that instrument any Bytewax connector."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.inputs import (
    FixedPartitionedSource,
    StatefulSourcePartition,
)
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from connectors.ops.health import HEALTH, Health
from rules.model import AlertEvent, AlertState, NotifyReason

M = TypeVar("M", Counter, Gauge, Histogram)


X = TypeVar("X")


def _metric(kind: type[M], name: str, documentation: str, labelnames: Sequence[str] = (), **kw: Any) -> M:
    """Register a collector once per process; return the registered one on a re-import."""
    try:
        return kind(name, documentation, labelnames, **kw)
    except ValueError:  # duplicated timeseries: this module was imported again
        existing = REGISTRY._names_to_collectors.get(name)  # the only lookup API there is
        if isinstance(existing, kind):
            return existing
        raise


MESSAGES_IN = _metric(Counter, "gds_messages_in", "Messages read from the input topics.", ("flow",))


DLQ_TOTAL = _metric(
    Counter, "gds_dlq", "Messages sent to a dead-letter topic, by pipeline stage.", ("flow", "stage")
)


LATE_SAMPLES = _metric(
    Counter, "gds_late_samples", "Samples older than the allowed lateness, counted and dropped.", ("flow",)
)


ALERT_TRANSITIONS = _metric(
    Counter,
    "gds_alert_transitions",
    "Alert transitions by rule and state entered (pending, firing, resolved, inactive; repeat = "
    "repeat notification of a firing alert).",
    ("flow", "rule", "state"),
)


ALERTS_FIRING = _metric(
    Gauge,
    "gds_alerts_firing",
    "Alert instances firing, as seen by this process since it started (sum over pods).",
    ("rule",),
)


NOTIFY_LATENCY = _metric(
    Histogram,
    "gds_notify_latency_seconds",
    "Time from a sample's arrival (Kafka timestamp) to the notification post it caused.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600),
)


SINK_BATCH_SIZE = _metric(
    Histogram,
    "gds_sink_batch_size",
    "Items per write_batch call of a sink.",
    ("flow", "sink"),
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)


SINK_ERRORS = _metric(
    Counter, "gds_sink_errors", "write_batch calls of a sink that raised.", ("flow", "sink")
)


LAST_BATCH = _metric(
    Gauge,
    "gds_last_batch_timestamp_seconds",
    "Wall-clock time of the last input batch a flow processed (Unix seconds).",
    ("flow",),
)


_BATCH_CHILDREN: dict[str, tuple[Any, Any, Any]] = {}


def record_batch(
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
    children = _BATCH_CHILDREN.get(flow)
    if children is None:  # `.labels()` locks and hashes: resolve once per flow, not per batch
        children = _BATCH_CHILDREN[flow] = (
            MESSAGES_IN.labels(flow),
            LATE_SAMPLES.labels(flow),
            LAST_BATCH.labels(flow),
        )
    messages_in, late_samples, last_batch = children
    if n_in:
        messages_in.inc(n_in)
    if n_dlq:
        DLQ_TOTAL.labels(flow, stage).inc(n_dlq)
    if n_late:
        late_samples.inc(n_late)
    last_batch.set(h.clock())
    h.batch(flow)


def record_dlq(flow: str, stage: str, n: int = 1) -> None:
    """Dead-lettered items of a stage other than the input decode (e.g. `notify`)."""
    if n:
        DLQ_TOTAL.labels(flow, stage).inc(n)


def transition_label(event: AlertEvent) -> str:
    """The `state` label of an event: the state entered, or `repeat` for a repeat notification."""
    if event.state is AlertState.FIRING and event.notify is NotifyReason.REPEAT_ELAPSED:
        return "repeat"
    return event.state.value


_firing_lock = threading.Lock()
_firing: dict[str, int] = {}


def record_events(flow: str, events: Iterable[AlertEvent]) -> None:
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
        ALERT_TRANSITIONS.labels(flow, rule, label).inc(n)
    if delta:
        with _firing_lock:
            for rule, d in delta.items():
                value = max(0, _firing.get(rule, 0) + d)
                _firing[rule] = value
                ALERTS_FIRING.labels(rule).set(value)


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
        while consumed and not isinstance(items[consumed - 1], KafkaSourceMessage):
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


def observe_notify_latency(seconds: float) -> None:
    """Arrival-to-post latency of one notification (negative values, from clock skew, count as 0)."""
    NOTIFY_LATENCY.observe(max(0.0, seconds))


def kafka_timestamp_s(timestamp: tuple[int, int] | None) -> float | None:
    """`KafkaSourceMessage.timestamp` (type, ms) -> Unix seconds; None when the broker set none."""
    if timestamp is None:
        return None
    kind, ms = timestamp
    if kind == 0 or ms < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return ms / 1000.0


def record_sink_batch(flow: str, sink: str, n: int) -> None:
    SINK_BATCH_SIZE.labels(flow, sink).observe(n)


def record_sink_error(flow: str, sink: str) -> None:
    SINK_ERRORS.labels(flow, sink).inc()


class _InstrumentedPartition(StatelessSinkPartition[X]):
    def __init__(self, inner: StatelessSinkPartition[X], flow: str, name: str) -> None:
        self._inner = inner
        self._size = SINK_BATCH_SIZE.labels(flow, name)
        self._errors = SINK_ERRORS.labels(flow, name)

    def write_batch(self, items: list[X]) -> None:
        self._size.observe(len(items))
        try:
            self._inner.write_batch(items)
        except Exception:
            self._errors.inc()
            raise

    def close(self) -> None:
        self._inner.close()


class InstrumentedSink(DynamicSink[X]):
    """Wraps a `DynamicSink` (KafkaSink, NotifySink, StdOutSink) to fill the `gds_sink_*` metrics."""

    def __init__(self, inner: Sink[X], flow: str, name: str) -> None:
        if not isinstance(inner, DynamicSink):
            raise TypeError(f"InstrumentedSink({name!r}): only DynamicSink can be wrapped, got {inner!r}")
        self.inner: DynamicSink[X] = inner
        self.flow = flow
        self.name = name

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InstrumentedPartition[X]:
        return _InstrumentedPartition(
            self.inner.build(step_id, worker_index, worker_count), self.flow, self.name
        )
