"""Liveness and readiness of a flow process: per-flow activity, input stalls (lag without
progress) and blocking dependencies, read by `/healthz` and `/readyz`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE

if TYPE_CHECKING:
    from connectors.ops.server import MonitoringServer

Clock = Callable[[], float]
Lags = Mapping[tuple[str, str, int], float]


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
            # a flow that says what it waits for (a receiver that is down) is not stuck: it stays
            # live (no restart loop through a long outage) and unready, its input waiting in Kafka
            flow_live = age <= self.stale_s and (stalled <= self.stale_s or s.blocked is not None)
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
    """Per-process singletons: the process's `Health` and its one monitoring server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.health = Health()
        self.server: MonitoringServer | None = None


_PROCESS = _Process()


HEALTH = _PROCESS.health


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


def mark_alive(flow: str, health: Health | None = None) -> None:
    """Any sign that the flow's worker thread runs (idle tick, notify, EOF)."""
    (health or HEALTH).alive(flow)
