"""Heartbeats: one source partition on every worker that proves the worker loop runs and puts
a `{"type": "heartbeat"}` record on the alerts topic."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.inputs import (
    DynamicSource,
    StatelessSourcePartition,
)

from connectors.ops.epochs import EpochClock
from connectors.ops.health import HEALTH, Clock, Health
from rules.metric import iso


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One worker of one flow is alive at `at` (Unix seconds, UTC)."""

    flow: str
    at: float
    host: str
    worker: int | None = None


EPOCH_TICK_S = 0.1
"""Longest sleep of the heartbeat input (see `_HeartbeatPartition.next_awake`): the bound on its
lateness at an epoch's end should `EpochClock` have it wrong (another epoch interval than the
command line's, as `bytewax.testing.run_main` may be given)."""


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
        self._epoch = EpochClock(clock=clock)

    def next_batch(self) -> list[Heartbeat]:
        if self._left is not None and self._left <= 0:
            raise StopIteration
        now = self._clock()
        self._epoch.seen(now)
        self._health.alive(self._flow)  # this runs on the worker thread: it is not stuck
        if now < self._next:  # woken early (Bytewax polls again after an empty batch)
            return []
        self._next = now + self._interval
        if self._left is not None:
            self._left -= 1
        return [Heartbeat(self._flow, now, self._host, self._worker)]

    def next_awake(self) -> datetime:
        # Woken at its epoch's end although it beats far less often: Bytewax ends an input's
        # epoch only when it is activated, and every other input waits at each epoch boundary
        # until all inputs moved on (connectors/ops/epochs.py). Sleeping until the next beat held
        # the Kafka input back for up to a whole heartbeat interval; waking every EPOCH_TICK_S
        # alone, ~0.05 s more every epoch.
        now = self._clock()
        self._epoch.seen(now)  # the first ask comes right after Bytewax started the first epoch
        return self._epoch.wake_dt(min(self._next, now + EPOCH_TICK_S))


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
