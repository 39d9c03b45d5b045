"""The downsampling job: `python -m bytewax.run flows.rollups`.

Raw metric messages -> per-series event-time windows at 1m, cascaded to 5m and 1h
(rules/rollup/windows.py) -> ClickHouse `metrics_{1m,5m,1h}` (connectors/storage/clickhouse.py) and the
`metrics-aggregated` topic (JSON). Undecodable messages go to the DLQ as in the alerting job.

The windows are written by hand inside one `stateful_batch` per shard of the Kafka key, and
messages are decoded after routing, like the alerting job (flows/common.py): measured 4x
faster than bytewax's `fold_window`, and parsed objects never cross the worker exchange.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import urlparse

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from connectors.config import Settings
from connectors.kafka.message import Message
from connectors.kafka.replay import FileSource
from connectors.ops.metrics import METRICS
from flows.common import (
    Decoder,
    Poison,
    WallClock,
    build_or_exit,
    decode_batch,
    lazy_flow,
    poison_line,
    poison_to_dlq,
    settings_decoder,
    settings_source,
    shard_router,
    wall_clock,
)
from rules.metric import utc
from rules.rollup.windows import DEFAULT_RESOLUTIONS, Resolution, Rollup, RollupConfig, RollupShard

LATE_TOTAL = METRICS.rollup_late
WINDOWS_TOTAL = METRICS.rollup_windows


class RollupLogic(StatefulBatchLogic[Message, "Rollup | Poison", bytes]):
    """Adapts `RollupShard` to Bytewax: decode a batch, ingest it, emit closed windows."""

    def __init__(
        self, shard: RollupShard, decode: Decoder, wall: WallClock | None, flush_on_eof: bool
    ) -> None:
        self.shard = shard
        self.decode = decode
        self.wall = wall
        self.flush_on_eof = flush_on_eof

    def _counted(self, out: list[Rollup | Poison], late_before: int) -> list[Rollup | Poison]:
        late = self.shard.stats.late - late_before
        if late:
            LATE_TOTAL.inc(late)
        WINDOWS_TOTAL.inc(sum(1 for x in out if type(x) is Rollup))
        return out

    def on_batch(self, values: list[Message]) -> tuple[list[Rollup | Poison], bool]:
        now = self.wall() if self.wall is not None else math.inf
        metrics, poison = decode_batch(values, self.decode, now)
        out: list[Rollup | Poison] = list(poison)
        late = self.shard.stats.late
        out.extend(self.shard.ingest(metrics, 0.0 if now == math.inf else now))
        return self._counted(out, late), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Rollup | Poison], bool]:
        assert self.wall is not None  # notify_at is None without a wall clock
        out: list[Rollup | Poison] = list(self.shard.advance_idle(self.wall()))
        return self._counted(out, self.shard.stats.late), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Rollup | Poison], bool]:
        if self.flush_on_eof:
            out: list[Rollup | Poison] = list(self.shard.flush())
            return self._counted(out, self.shard.stats.late), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> Any:
        wake = self.shard.next_wake()
        return None if wake is None else utc(wake)

    def snapshot(self) -> bytes:
        return self.shard.snapshot()


def rollup_windows(
    step_id: str,
    raw: Stream[Message],
    decode: Decoder,
    *,
    config: RollupConfig,
    shards: int,
    wall: WallClock | None,
    flush_on_eof: bool,
) -> tuple[Stream[Rollup], Stream[Poison]]:
    """The rollups as a sub-flow: raw messages in, closed windows and poison out.

    `wall=None` runs on event time only (replays); live, a wall clock closes the last
    windows of instances that went quiet.
    """

    def build(resume: bytes | None) -> RollupLogic:
        shard = RollupShard(config, live=wall is not None)
        if resume is not None:
            shard.restore(resume, wall() if wall is not None else 0.0)
        return RollupLogic(shard, decode, wall, flush_on_eof)

    # the names its recovery stores hold: balanced names (`connectors.ops.placement`) would
    # orphan them, and unlike the alerting job this one does not detect which a store has
    route = shard_router(shards, legacy=True)
    # one Python call per batch rather than one per message (key_on maps item by item), as
    # the alerting flow routes (flows/common.py `evaluate`)
    keyed = op.flat_map_batch(f"{step_id}-route", raw, lambda batch: [(route(m), m) for m in batch])
    out = op.stateful_batch(f"{step_id}-windows", keyed, build)
    items = op.map(f"{step_id}-unkey", out, lambda kv: kv[1])
    split = op.branch(f"{step_id}-split", items, lambda x: type(x) is Rollup)
    return split.trues, split.falses  # type: ignore[return-value]


class BatchLogic(StatefulBatchLogic[Rollup, list[Rollup], list[Rollup]]):
    """Gathers one table's rollups into large lists.

    Rather than `op.collect`: its timeout restarts with every item, so a steady trickle could
    hold a list back indefinitely (here the deadline counts from the first item), and it
    deep-copies its buffer at every snapshot (here the list is handed over as is). The
    buffer is this step's state, so it is in the recovery snapshots: batching costs no
    at-least-once.
    """

    def __init__(self, acc: list[Rollup], wall: WallClock | None, timeout_s: float, max_size: int) -> None:
        self.acc = acc
        self.wall = wall
        self.timeout_s = timeout_s
        self.max_size = max_size
        self.deadline: float | None = None

    @staticmethod
    def build(
        resume: list[Rollup] | None, *, wall: WallClock | None, timeout_s: float, max_size: int
    ) -> BatchLogic:
        logic = BatchLogic(list(resume or ()), wall, timeout_s, max_size)
        if logic.acc and wall is not None:
            logic.deadline = wall()
        return logic

    def _emit(self) -> tuple[list[list[Rollup]], bool]:
        out, self.acc, self.deadline = self.acc, [], None
        return ([out] if out else []), StatefulBatchLogic.DISCARD

    def on_batch(self, values: list[Rollup]) -> tuple[list[list[Rollup]], bool]:
        if not self.acc and self.wall is not None:
            self.deadline = self.wall() + self.timeout_s
        self.acc.extend(values)
        if len(self.acc) >= self.max_size:
            return self._emit()
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Rollup]], bool]:
        return self._emit()

    def on_eof(self) -> tuple[list[list[Rollup]], bool]:
        return self._emit()

    def notify_at(self) -> Any:
        return None if self.deadline is None else utc(self.deadline)

    def snapshot(self) -> list[Rollup]:
        return list(self.acc)


@dataclass(frozen=True)
class RollupOutputs:
    """Where the streams go; `aggregated=None` skips the Kafka topic."""

    clickhouse: Sink[list[Rollup]]
    dlq: Sink[Any]
    dlq_fn: Callable[[Poison], Any] = poison_to_dlq
    aggregated: Sink[Any] | None = None
    aggregated_fn: Callable[[Rollup], Any] | None = None


def aggregated_message(r: Rollup) -> KafkaSinkMessage[bytes, bytes]:
    """A rollup for the `metrics-aggregated` topic, keyed by series (ordered per series)."""
    return KafkaSinkMessage(r.series.key.encode(), json.dumps(r.to_record()).encode())


def build_flow(
    source: Source[Any],
    outputs: RollupOutputs,
    decode: Decoder,
    *,
    config: RollupConfig | None = None,
    shards: int = 64,
    wall: WallClock | None = wall_clock,
    flush_on_eof: bool = False,
    batch_timeout_s: float = 2.0,
    batch_max: int = 10_000,
    name: str = "rollups",
) -> Dataflow:
    """Rollups reach ClickHouse in lists of up to `batch_max` per table, at least every
    `batch_timeout_s` of wall time (live) or at the end (replays): ClickHouse makes one part
    per insert, so inserts should be few and large."""
    flow = Dataflow(name)
    raw = op.input("metrics", flow, source)
    rollups, poison = rollup_windows(
        "rollup",
        raw,
        decode,
        config=config or RollupConfig(),
        shards=shards,
        wall=wall,
        flush_on_eof=flush_on_eof,
    )
    per_table = op.key_on("by-table", rollups, lambda r: r.resolution)
    batches = op.stateful_batch(
        "batch",
        per_table,
        partial(BatchLogic.build, wall=wall, timeout_s=batch_timeout_s, max_size=batch_max),
    )
    op.output("clickhouse", op.map("unkey-batch", batches, lambda kv: kv[1]), outputs.clickhouse)
    if outputs.aggregated is not None:
        fn = outputs.aggregated_fn or aggregated_message
        op.output("aggregated-topic", op.map("aggregated-record", rollups, fn), outputs.aggregated)
    op.output("dlq", op.map("dlq-record", poison, outputs.dlq_fn), outputs.dlq)
    return flow


def from_settings(settings: Settings) -> Dataflow:
    from connectors.storage.clickhouse import ClickHouseRollupSink, open_clickhouse
    from connectors.storage.retry import STORAGE_RETRY

    retry = replace(STORAGE_RETRY, deadline_s=settings.storage_retry_deadline_s)
    resolutions: tuple[Resolution, ...] = DEFAULT_RESOLUTIONS
    ttl = dict(zip((r.name for r in resolutions), settings.rollup_ttl_days, strict=True))
    sink = ClickHouseRollupSink(
        partial(open_clickhouse, settings.clickhouse_url or None, settings.clickhouse_path),
        database=settings.clickhouse_database,
        resolutions=resolutions,
        ttl_days=ttl,
        retry=retry,
    )
    config = RollupConfig(resolutions, lateness_s=settings.rollup_lateness_s)
    decode = settings_decoder(settings)
    if settings.embedded:
        # also printed: the sample is older than the tables' TTL, which ClickHouse applies on insert
        outputs = RollupOutputs(
            sink,
            StdOutSink(),
            poison_line,
            StdOutSink(),
            lambda r: "ROLLUP " + json.dumps(r.to_record()),
        )
        return build_flow(
            FileSource([settings.sample_path]),
            outputs,
            decode,
            config=config,
            shards=settings.shards,
            wall=None,
            flush_on_eof=True,
        )

    from connectors.kafka.sink import kafka_sink

    brokers = list(settings.bootstrap)
    extra = dict(settings.kafka_extra)
    source = settings_source(settings)
    outputs = RollupOutputs(
        sink,
        kafka_sink(brokers, settings.dlq_topic, extra),
        poison_to_dlq,
        kafka_sink(brokers, settings.aggregated_topic, extra),
        aggregated_message,
    )
    # a bounded run (KAFKA_TAIL=false) flushes its open windows at the end, like a replay
    return build_flow(
        source, outputs, decode, config=config, shards=settings.shards, flush_on_eof=not settings.kafka_tail
    )


def _default_flow() -> Dataflow:
    # the topics it writes, checked at start
    settings, flow = build_or_exit(
        "rollups", from_settings, lambda s: {"DLQ_TOPIC": s.dlq_topic, "AGGREGATED_TOPIC": s.aggregated_topic}
    )
    url = urlparse(settings.clickhouse_url)  # never log the password of the URL
    target = (
        f"{url.scheme}://{url.hostname}:{url.port}" if url.hostname else f"chdb at {settings.clickhouse_path}"
    )
    mode = (
        "replaying bundled sample " + str(settings.sample_path)
        if settings.embedded
        else f"tailing {settings.metric_topics} on {','.join(settings.bootstrap)}"
    )
    print(json.dumps({"job": "rollups", "mode": mode, "clickhouse": target}), file=sys.stderr)
    return flow


__getattr__ = lazy_flow(globals(), _default_flow)
