"""Wiring shared by the alerting job and the backtest: one evaluation sub-flow for both.

Raw messages are routed by a shard of their Kafka key (instance_id) and decoded *after*
routing, inside one `stateful_batch` per shard: measured on this machine that is what
keeps two processes from spending their time pickling parsed dicts across the exchange.
"""

from __future__ import annotations

import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from connectors.errors import PoisonMessage
from connectors.files import instance_key
from connectors.monitoring import record_batch, record_events
from rules.engine import ShardEngine
from rules.model import AlertEvent, Metric, RuleSet, utc

Decoder = Callable[[bytes, float], Metric]
WallClock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that could not be decoded, on its way to the dead-letter topic."""

    msg: KafkaSourceMessage
    error: str
    stage: str = "decode"


def shard_router(shards: int) -> Callable[[KafkaSourceMessage], str]:
    """Key -> shard name; crc32 because Python's `hash` differs per process."""
    names = [f"s{i:03d}" for i in range(shards)]

    def route(msg: KafkaSourceMessage) -> str:
        key = msg.key if msg.key is not None else instance_key(msg.value)
        if key is None:  # unkeyed and unparseable: any shard will report it
            return names[(msg.partition or 0) % shards]
        if isinstance(key, str):
            key = key.encode()
        return names[zlib.crc32(key) % shards]

    return route


class EngineLogic(StatefulBatchLogic[KafkaSourceMessage, "AlertEvent | Poison", bytes]):
    """Adapts `ShardEngine` to Bytewax: decode a batch, ingest it, emit events."""

    def __init__(
        self, engine: ShardEngine, decode: Decoder, wall: WallClock | None, flush_on_eof: bool, name: str
    ) -> None:
        self.engine = engine
        self.decode = decode
        self.wall = wall
        self.flush_on_eof = flush_on_eof
        self.name = name
        self._late_seen = engine.stats.late

    def on_batch(self, values: list[KafkaSourceMessage]) -> tuple[list[AlertEvent | Poison], bool]:
        now = self.wall() if self.wall is not None else math.inf
        decode = self.decode
        metrics: list[Metric] = []
        out: list[AlertEvent | Poison] = []
        for msg in values:
            raw = msg.value
            if raw is None:
                out.append(Poison(msg, "empty message (tombstone)"))
                continue
            try:
                metrics.append(decode(raw, now))
            except PoisonMessage as exc:
                out.append(Poison(msg, exc.reason))
        events = self.engine.ingest(metrics, 0.0 if now == math.inf else now)
        late = self.engine.stats.late
        record_batch(self.name, len(values), len(values) - len(metrics), late - self._late_seen)
        self._late_seen = late
        if events:
            record_events(self.name, events)
            out.extend(events)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[AlertEvent | Poison], bool]:
        assert self.wall is not None  # notify_at is None without a wall clock
        events = self.engine.advance_idle(self.wall())
        record_events(self.name, events)
        return list(events), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[AlertEvent | Poison], bool]:
        if self.flush_on_eof:
            return list(self.engine.flush()), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> Any:
        wake = self.engine.next_wake()
        return None if wake is None else utc(wake)

    def snapshot(self) -> bytes:
        return self.engine.snapshot()


def evaluate(
    step_id: str,
    raw: Stream[KafkaSourceMessage],
    ruleset: RuleSet,
    decode: Decoder,
    *,
    shards: int,
    wall: WallClock | None,
    flush_on_eof: bool,
    name: str = "alerting",
) -> tuple[Stream[AlertEvent], Stream[Poison]]:
    """The alerting logic as a sub-flow: raw messages in, alert events and poison out.

    `wall=None` runs on event time only (backtests: same input, same output, any speed);
    the live job passes a wall clock so silent instances still go stale.
    """

    def build(resume: bytes | None) -> EngineLogic:
        engine = ShardEngine(ruleset, live=wall is not None)
        if resume is not None:
            engine.restore(resume, wall() if wall is not None else 0.0)
        return EngineLogic(engine, decode, wall, flush_on_eof, name)

    route = shard_router(shards)
    # one Python call per batch rather than one per message (key_on maps item by item)
    keyed = op.flat_map_batch(f"{step_id}-route", raw, lambda batch: [(route(m), m) for m in batch])
    out = op.stateful_batch(f"{step_id}-evaluate", keyed, build)
    items = op.map(f"{step_id}-unkey", out, lambda kv: kv[1])
    split = op.branch(f"{step_id}-split", items, lambda x: isinstance(x, AlertEvent))
    return split.trues, split.falses  # type: ignore[return-value]


def wall_clock() -> float:
    return time.time()


def alert_message(event: AlertEvent) -> KafkaSinkMessage[bytes, bytes]:
    """An alert transition for the `alerts` topic, keyed by fingerprint (ordered per alert)."""
    return KafkaSinkMessage(event.fingerprint.encode(), json.dumps(event.to_record()).encode())


def print_notification(payload: dict[str, Any]) -> str:
    """One readable line plus the JSON that would be posted (embedded mode)."""
    head = f"NOTIFY {payload.get('subject', '')}  message_id={payload.get('message_id', '')}"
    return head + "\n  " + json.dumps(payload, sort_keys=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
