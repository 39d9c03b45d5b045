"""Self-monitoring of a flow process: Prometheus metrics, `/healthz`, `/readyz`, heartbeats.

Why a server of our own next to Bytewax's: Bytewax 0.21.1 only serves `/metrics` and
`/dataflow` (its "dataflow API", on when `BYTEWAX_DATAFLOW_API_ENABLED` is set to *any* value,
port `BYTEWAX_DATAFLOW_API_PORT`, default 3030); it has no health endpoints, and a Kubernetes
probe needs one that fails when the worker thread is stuck. Both endpoints read the same
prometheus_client default registry, so `gds_*` and Bytewax's own Python-side gauge
`bytewax_kafka_consumer_lag{step_id,topic,partition}` (set by `KafkaSource` from librdkafka
statistics, `bytewax/connectors/kafka/__init__.py`) appear on ours too; the engine's Rust-side
metrics (`bytewax_item_inp_count_total`, `..._next_batch_duration_seconds`, ...) only appear on
Bytewax's.

Liveness is fed from the worker threads: `record_batch` after each batch and the heartbeat
source on every worker (`HeartbeatSource`), so a thread blocked in a sink or a callback stops
reporting and `/healthz` turns 503 after `HEALTH_STALE_S`, while an idle process keeps passing.

Metrics are module-level and created once per process, even if the module is imported again
(`importlib.reload`, tests): a second registration would raise in prometheus_client.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast

from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, KafkaSinkMessage, KafkaSourceMessage
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from connectors.config import ENV_VARS as CONFIG_ENV_VARS
from connectors.config import ConfigError
from connectors.errors import ConnectorError
from rules.model import AlertEvent, AlertState, NotifyReason, iso

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# name -> (default, description); the README configuration table mirrors this.
ENV_VARS: dict[str, tuple[str, str]] = {
    "METRICS_PORT": (
        "8490",
        "Port of `/metrics`, `/healthz` and `/readyz`; `0` disables the server. A port that is taken "
        "stops the job at start.",
    ),
    "METRICS_HOST": ("127.0.0.1", "Address that server binds to (`0.0.0.0` for pods, so probes reach it)."),
    "HEARTBEAT_INTERVAL_S": (
        "30",
        'Seconds between heartbeats: a `{"type": "heartbeat"}` record on ALERTS_TOPIC per worker, '
        "and the idle liveness tick.",
    ),
    "HEALTH_STALE_S": (
        "900",
        "`/healthz` fails when a flow reported no batch or heartbeat for this long (s), or its input "
        "waited that long without progress; must exceed HEARTBEAT_INTERVAL_S, NOTIFY_DEADLINE_S and "
        "STORAGE_RETRY_DEADLINE_S.",
    ),
    "READY_STALL_S": (
        "60",
        "`/readyz` fails when a flow's input waits (Kafka consumer lag > 0) and it consumed nothing "
        "for this long (s).",
    ),
}

# Retry budgets during which a sink legitimately blocks its worker thread (connectors.config).
BLOCKING_DEADLINES: tuple[str, ...] = ("NOTIFY_DEADLINE_S", "STORAGE_RETRY_DEADLINE_S")

# -- metrics ------------------------------------------------------------------------------

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


# -- settings -----------------------------------------------------------------------------

_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    """The monitoring knobs, validated with every problem listed (like `connectors.config`)."""

    port: int = 8490
    host: str = "127.0.0.1"
    heartbeat_interval_s: float = 30.0
    health_stale_s: float = 900.0
    ready_stall_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> MonitoringSettings:
        env = dict(os.environ) if env is None else env
        problems: list[str] = []

        def get(name: str) -> str:
            return env.get(name, "").strip() or ENV_VARS[name][0]

        def number(name: str, low: float, *, integer: bool = False) -> float:
            raw = get(name)
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r}: not {'an integer' if integer else 'a number'}")
                return float(ENV_VARS[name][0])
            if not math.isfinite(value):
                problems.append(f"{name}={raw!r}: must be a finite number")
                return float(ENV_VARS[name][0])
            if value < low:
                problems.append(f"{name}={raw!r}: must be >= {low:g}")
            return value

        port = int(number("METRICS_PORT", 0, integer=True))
        if port > 65535:
            problems.append(f"METRICS_PORT={port}: must be <= 65535 (0 disables the server)")
        host = get("METRICS_HOST")
        if not _valid_host(host):
            problems.append(f"METRICS_HOST={host!r}: not an IP address or host name")
        heartbeat = number("HEARTBEAT_INTERVAL_S", 0.1)
        stale = number("HEALTH_STALE_S", 1)
        stall = number("READY_STALL_S", 1)
        if stale <= heartbeat:
            problems.append(
                f"HEALTH_STALE_S={stale:g} must be greater than HEARTBEAT_INTERVAL_S={heartbeat:g}: "
                "an idle flow only reports its heartbeats"
            )
        for name in BLOCKING_DEADLINES:
            raw = env.get(name, "").strip() or CONFIG_ENV_VARS.get(name, ("0", ""))[0]
            try:
                deadline = float(raw)
            except ValueError:
                continue  # connectors.config reports it
            if stale <= deadline:
                problems.append(
                    f"HEALTH_STALE_S={stale:g} must be greater than {name}={deadline:g}: a sink retrying "
                    "through an outage blocks the worker thread that long without being stuck"
                )
        if problems:
            raise ConfigError(problems)
        return MonitoringSettings(port, host, heartbeat, stale, stall)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))


# -- health -------------------------------------------------------------------------------


Lags = Mapping[tuple[str, str, int], float]
"""(flow, topic, partition) -> consumer lag in messages."""


def consumer_lag() -> dict[tuple[str, str, int], float]:
    """Bytewax's `bytewax_kafka_consumer_lag` gauge, by (flow, topic, partition).

    `KafkaSource` sets it from librdkafka statistics (every second, while its partition is
    polled, and only once a first message was read); its `step_id` is `{flow}.{input step}`.
    """
    lags: dict[tuple[str, str, int], float] = {}
    for metric in BYTEWAX_CONSUMER_LAG_GAUGE.collect():
        for sample in metric.samples:
            labels = sample.labels
            try:
                key = (labels["step_id"].split(".", 1)[0], labels["topic"], int(labels["partition"]))
            except (KeyError, ValueError):
                continue
            lags[key] = sample.value
    return lags


@dataclass(slots=True)
class _Input:
    """One input partition of a flow, as its source reported it (`record_input`)."""

    progress_at: float  # last time it yielded messages (or was first seen)
    lag: float | None = None  # reported by the source itself; None: read the Bytewax gauge


@dataclass(slots=True)
class _FlowHealth:
    registered_at: float
    last_activity: float | None = None
    last_batch: float | None = None
    batches: int = 0
    ticks: int = 0
    blocked: str | None = None
    inputs: dict[tuple[str, int], _Input] = field(default_factory=dict)


class Health:
    """What `/healthz` and `/readyz` answer, from the activity the flows of this process report.

    Live: every registered flow reported activity (a batch, a source poll or a heartbeat tick),
    or was registered, within `stale_s`, and none has input that waited `stale_s` without
    progress. Ready: live, every flow has run (a first batch, poll or tick: sources built,
    cluster formed), nothing blocks it (a broker that does not answer), and no input waited
    `ready_stall_s` without progress.

    "Input waits without progress": a partition's consumer lag is > 0 and nothing was read from
    it since. A worker that still ticks but reads nothing, or one blocked in a step while
    messages pile up, both qualify; an idle flow (lag 0) never does. Thread-safe: worker
    threads write, the server thread reads.
    """

    def __init__(
        self,
        clock: Clock = time.time,
        stale_s: float = 900.0,
        ready_stall_s: float = 60.0,
        lags: Callable[[], Lags] | None = consumer_lag,
    ) -> None:
        self.clock = clock
        self.stale_s = stale_s
        self.ready_stall_s = ready_stall_s
        self.lags = lags
        self._lock = threading.Lock()
        self._flows: dict[str, _FlowHealth] = {}

    def _state(self, flow: str, now: float) -> _FlowHealth:
        state = self._flows.get(flow)
        if state is None:
            state = self._flows[flow] = _FlowHealth(now)
        return state

    def register(self, flow: str) -> None:
        """The flow is built: its staleness clock starts now."""
        with self._lock:
            self._state(flow, self.clock())

    def alive(self, flow: str) -> None:
        now = self.clock()
        with self._lock:
            state = self._state(flow, now)
            state.last_activity = now
            state.ticks += 1

    def batch(self, flow: str) -> None:
        now = self.clock()
        with self._lock:
            state = self._state(flow, now)
            state.last_activity = state.last_batch = now
            state.batches += 1

    def input(self, flow: str, topic: str, partition: int, consumed: int, lag: float | None = None) -> None:
        """A poll of one input partition on the worker thread: `consumed` messages, `lag` left."""
        now = self.clock()
        with self._lock:
            state = self._state(flow, now)
            state.last_activity = now
            part = state.inputs.setdefault((topic, partition), _Input(now))
            if consumed:
                part.progress_at = now
            if lag is not None:
                part.lag = lag

    def block(self, flow: str, reason: str | None) -> None:
        """Not ready, whatever else holds, while `reason` is set (None clears it)."""
        with self._lock:
            self._state(flow, self.clock()).blocked = reason

    def _stall(self, s: _FlowHealth, lags: dict[tuple[str, int], float], now: float) -> tuple[float, float]:
        """(seconds the longest-waiting partition made no progress, total lag waiting)."""
        for key, part in s.inputs.items():
            if part.lag is not None:
                lags[key] = part.lag
        fallback = s.last_batch if s.last_batch is not None else s.registered_at
        stalled = 0.0
        waiting = 0.0
        for key, lag in lags.items():
            if not lag > 0:
                continue
            waiting += lag
            seen = s.inputs.get(key)
            since = seen.progress_at if seen is not None else fallback
            stalled = max(stalled, now - since)
        return stalled, waiting

    def report(self) -> tuple[bool, bool, dict[str, Any]]:
        """(live, ready, details) at the current clock."""
        lags = self.lags() if self.lags is not None else {}
        now = self.clock()
        flows: dict[str, Any] = {}
        live = True
        ready = True
        with self._lock:
            items = [
                (name, replace(s, inputs={k: replace(v) for k, v in s.inputs.items()}))
                for name, s in self._flows.items()
            ]
        for name, s in items:
            since = s.last_activity if s.last_activity is not None else s.registered_at
            age = now - since
            own = {(t, p): v for (f, t, p), v in lags.items() if f == name}
            stalled, waiting = self._stall(s, own, now)
            flow_live = age <= self.stale_s and stalled <= self.stale_s
            started = s.last_activity is not None
            flow_ready = flow_live and started and s.blocked is None and stalled <= self.ready_stall_s
            live = live and flow_live
            ready = ready and flow_ready
            flows[name] = {
                "live": flow_live,
                "ready": flow_ready,
                "started": started,
                "idle_s": round(age, 3),
                "batches": s.batches,
                "heartbeats": s.ticks,
                "last_batch_age_s": None if s.last_batch is None else round(now - s.last_batch, 3),
                "lag": waiting,
                "stalled_s": round(stalled, 3),
                "blocked": s.blocked,
            }
        if not items:
            ready = False  # imported, no flow built yet
        details = {"stale_s": self.stale_s, "ready_stall_s": self.ready_stall_s, "flows": flows}
        return live, ready, details


class _Process:
    """Per-process singletons; kept across `importlib.reload` so a started server stays guarded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.health = Health()
        self.server: MonitoringServer | None = None


_PROCESS: _Process = cast(_Process, globals().get("_PROCESS")) or _Process()
HEALTH = _PROCESS.health


# -- helpers the flows call ---------------------------------------------------------------


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


_firing_lock = threading.Lock()
_firing: dict[str, int] = {}


def transition_label(event: AlertEvent) -> str:
    """The `state` label of an event: the state entered, or `repeat` for a repeat notification."""
    if event.state is AlertState.FIRING and event.notify is NotifyReason.REPEAT_ELAPSED:
        return "repeat"
    return event.state.value


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


def record_input(
    flow: str,
    topic: str,
    partition: int,
    consumed: int,
    lag: float | None = None,
    *,
    health: Health | None = None,
) -> None:
    """After each poll of a Kafka partition (on the worker thread): what it read, what is left.

    `lag=None` leaves the lag to Bytewax's `bytewax_kafka_consumer_lag` gauge; a source that
    knows it (high watermark - next offset) passes it, which also covers a partition that has
    not read its first message yet (the gauge stays unset until then).
    """
    (health or HEALTH).input(flow, topic, partition, consumed, lag)


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


def mark_alive(flow: str, health: Health | None = None) -> None:
    """Any sign that the flow's worker thread runs (idle tick, notify, EOF)."""
    (health or HEALTH).alive(flow)


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


# -- heartbeat ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One worker of one flow is alive at `at` (Unix seconds, UTC)."""

    flow: str
    at: float
    host: str
    worker: int | None = None


EPOCH_TICK_S = 0.1
"""Longest sleep of the heartbeat input (see `_HeartbeatPartition.next_awake`)."""


class _HeartbeatPartition(StatelessSourcePartition[Heartbeat]):
    def __init__(
        self,
        flow: str,
        interval_s: float,
        clock: Clock,
        host: str,
        worker: int,
        health: Health,
        limit: int | None,
    ) -> None:
        self._flow = flow
        self._interval = interval_s
        self._clock = clock
        self._host = host
        self._worker = worker
        self._health = health
        self._left = limit
        self._next = clock()  # first beat at once: readiness needs no wait

    def next_batch(self) -> list[Heartbeat]:
        if self._left is not None and self._left <= 0:
            raise StopIteration
        now = self._clock()
        self._health.alive(self._flow)  # this runs on the worker thread: it is not stuck
        if now < self._next:  # woken early (Bytewax polls again after an empty batch)
            return []
        self._next = now + self._interval
        if self._left is not None:
            self._left -= 1
        return [Heartbeat(self._flow, now, self._host, self._worker)]

    def next_awake(self) -> datetime:
        # Woken at least every EPOCH_TICK_S although it beats far less often: Bytewax advances an
        # input's epoch only when it is activated, and every other input waits at each epoch
        # boundary until all inputs moved on (backpressure). Sleeping until the next beat held
        # the Kafka input back for up to a whole heartbeat interval.
        return datetime.fromtimestamp(min(self._next, self._clock() + EPOCH_TICK_S), UTC)


class HeartbeatSource(DynamicSource[Heartbeat]):
    """One `Heartbeat` per worker every `interval_s`; also the idle liveness tick of each worker.

    A `DynamicSource` (one partition on *every* worker) rather than a `SimplePollingSource`,
    whose single partition lives on one worker of the cluster: with one pod per process, the
    other pods would never tick and an idle pod would fail its liveness probe.
    `limit` ends the stream after that many heartbeats per worker (tests, bounded runs).
    """

    def __init__(
        self,
        flow: str,
        interval_s: float = 30.0,
        *,
        clock: Clock = time.time,
        host: str | None = None,
        health: Health | None = None,
        limit: int | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"HeartbeatSource({flow!r}): interval_s must be > 0, got {interval_s!r}")
        self.flow = flow
        self.interval_s = interval_s
        self.clock = clock
        self.host = host or socket.gethostname()
        self.health = health
        self.limit = limit

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HeartbeatPartition:
        health = self.health or HEALTH
        return _HeartbeatPartition(
            self.flow, self.interval_s, self.clock, self.host, worker_index, health, self.limit
        )


def heartbeat_record(h: Heartbeat) -> dict[str, Any]:
    """The JSON of a heartbeat; alert records have no `type` key, so consumers can tell them apart."""
    record: dict[str, Any] = {"type": "heartbeat", "flow": h.flow, "at": iso(h.at), "host": h.host}
    if h.worker is not None:
        record["worker"] = h.worker
    return record


def heartbeat_message(h: Heartbeat) -> KafkaSinkMessage[bytes, bytes]:
    """A heartbeat for the `alerts` topic, keyed per worker and marked with a `type` header."""
    key = f"heartbeat:{h.flow}:{h.host}:{'' if h.worker is None else h.worker}"
    value = json.dumps(heartbeat_record(h), separators=(",", ":")).encode()
    return KafkaSinkMessage(key.encode(), value, headers=[("type", b"heartbeat")])


# -- HTTP server --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    health: Health

    def __init__(self, address: tuple[str, int], health: Health) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.health = health
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "gds-monitoring"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            return
        if path in ("/healthz", "/readyz"):
            live, ready, details = cast(_HTTPServer, self.server).health.report()
            ok = live if path == "/healthz" else ready
            details["status"] = "ok" if ok else ("stale" if not live else "not ready")
            body = json.dumps(details, sort_keys=True).encode()
            self._send(200 if ok else 503, body, "application/json")
            return
        self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes hit this every few seconds: keep stderr for the flow's own messages."""


class MonitoringServer:
    """`/metrics`, `/healthz`, `/readyz` on a daemon thread; `port` is the bound one (0 picks)."""

    def __init__(self, host: str, port: int, health: Health) -> None:
        self._httpd = _HTTPServer((host, port), health)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"gds-monitoring:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(host: str, port: int, health: Health | None = None) -> MonitoringServer:
    """A server of its own (tests, tools); flows call `start` for the per-process one."""
    return MonitoringServer(host, port, health or HEALTH)


def start(flow: str, settings: MonitoringSettings | None = None) -> MonitoringServer | None:
    """Register `flow` and start this process's server once; the call flows make at start.

    Idempotent and thread-safe: a second flow or worker gets the running server. A port that
    cannot be bound raises `ConfigError` (one line): the job must not run with its probes and
    metrics answered by whatever else holds the port. `METRICS_PORT=0` runs without a server.
    """
    settings = settings or MonitoringSettings.from_env()
    with _PROCESS.lock:
        HEALTH.stale_s = settings.health_stale_s
        HEALTH.ready_stall_s = settings.ready_stall_s
        HEALTH.register(flow)
        if _PROCESS.server is not None or not settings.enabled:
            return _PROCESS.server
        try:
            _PROCESS.server = MonitoringServer(settings.host, settings.port, HEALTH)
        except OSError as exc:
            raise ConfigError(
                [
                    f"METRICS_PORT={settings.port}: cannot serve on {settings.host}:{settings.port} "
                    f"({exc.strerror or exc}); choose a free port, or METRICS_PORT=0 to run without it"
                ]
            ) from exc
        log.info("monitoring: serving /metrics /healthz /readyz on %s:%d", settings.host, settings.port)
        return _PROCESS.server


def await_dependency(
    flow: str,
    what: str,
    probe: Callable[[], Any],
    *,
    retry_s: float = 5.0,
    health: Health | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`probe()`'s result once it stops raising `ConnectorError`; until then the flow is not ready.

    For what a flow cannot even be built without (the Kafka metadata its sources read at
    build time): the process stays up, `/readyz` says why it is not ready, and one line is
    logged when the dependency fails and one when it answers, not one per attempt.
    """
    h = health or HEALTH
    try:
        return probe()
    except ConnectorError as exc:
        log.error("%s: %s is unreachable (%s); waiting for it, /readyz is 503 meanwhile", flow, what, exc)
        h.block(flow, f"{what} unreachable: {exc}")
    while True:
        sleep(retry_s)
        try:
            result = probe()
        except ConnectorError as exc:
            h.block(flow, f"{what} unreachable: {exc}")
            continue
        h.block(flow, None)
        log.info("%s: %s answers, starting", flow, what)
        return result
