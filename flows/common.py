"""Wiring shared by the alerting job and the backtest: one evaluation sub-flow for both.

Raw messages are routed by a shard of their Kafka key (instance_id) and decoded *after*
routing, inside one `stateful_batch` per shard: measured on this machine that is what
keeps two processes from spending their time pickling parsed dicts across the exchange.

The control plane (silences from `gds.control`, rule sets loaded while the job runs) is a
second, rare input broadcast to every shard beside the metric messages.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any, NoReturn

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.config import ConfigError, MonitoringSettings, Settings
from connectors.control.source import ControlCaughtUp
from connectors.control.watch import RulesUpdate
from connectors.errors import ConnectorError, PoisonMessage
from connectors.kafka.dlq import dead_letter_from
from connectors.kafka.files import instance_key
from connectors.kafka.message import MESSAGE_TYPES, Message, MessageChunk
from connectors.kafka.serde import encode_json, make_decoder
from connectors.kafka.source import SourceProgress
from connectors.ops.health import mark_alive
from connectors.ops.heartbeat import HeartbeatSource
from connectors.ops.metrics import METRICS, InstrumentedSource, Metrics
from connectors.ops.placement import balanced_names, legacy_names
from connectors.ops.runtime import keep_thread_state, tune_gc, tune_malloc
from connectors.ops.server import await_dependency, start
from connectors.ops.slices import WorkSlices
from connectors.ops.trace import traceparent_of
from rules.control.events import EMPTY, ControlState, SilenceEvent, fold
from rules.engine import ShardEngine
from rules.metric import Metric
from rules.model import AlertEvent, RulesError, RuleSet
from rules.promql.rulefile import RuleGroup
from rules.promql.stream import (
    EMPTY_OUTPUT,
    GroupRunner,
    Output,
    RawSample,
    Routes,
    group_metric_names,
    partition_key,
    plan_routes,
    prom_labels,
)

Decoder = Callable[[bytes, float], Metric]
WallClock = Callable[[], float]
Topics = Mapping[str, str]
"""`{VARIABLE: topic}`: the topics a job uses by name, checked at start."""


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that could not be decoded, on its way to the dead-letter topic."""

    msg: Message
    error: str
    stage: str = "decode"


def shard_names(shards: int, legacy: bool = False) -> list[str]:
    """The state's shard keys, index i at position i (`shard_router` picks by index): names
    Bytewax spreads evenly over workers, or with `legacy` the names of recovery stores written
    before those (`connectors.ops.placement`)."""
    return legacy_names(shards) if legacy else list(balanced_names(shards))


def shard_router(shards: int, legacy: bool = False) -> Callable[[Message], str]:
    """Key -> shard name; crc32 because Python's `hash` differs per process."""
    names = shard_names(shards, legacy)

    def route(msg: Message) -> str:
        key = msg.key if msg.key is not None else instance_key(msg.value)
        if key is None:  # unkeyed and unparseable: any shard will report it
            return names[(msg.partition or 0) % shards]
        if isinstance(key, str):
            key = key.encode()
        return names[zlib.crc32(key) % shards]

    return route


def decode_batch(
    values: Sequence[Message],
    decode: Decoder,
    now: float,
    traces: dict[str, str] | None = None,
    sources: list[Message] | None = None,
) -> tuple[list[Metric], list[Poison]]:
    """Decode a batch after routing; what cannot be decoded becomes `Poison` (to the DLQ).

    Any exception of the decoder is poison too, with its type in the reason: one message a
    decoder was not written for must cost one dead letter, not the worker (it would re-read
    the same message after every restart).

    With `traces` given, the W3C `traceparent` header of each decoded message that has one is
    recorded there by instance_id (a later message of the batch wins); messages without
    headers cost one truthiness check. With `sources` given, the message of each decoded
    metric is appended there (same order as the metrics).
    """
    metrics: list[Metric] = []
    poison: list[Poison] = []
    for msg in values:
        raw = msg.value
        if raw is None:
            poison.append(Poison(msg, "empty message (tombstone)"))
            continue
        try:
            metric = decode(raw, now)
            metrics.append(metric)
            if sources is not None:
                sources.append(msg)
            if traces is not None and msg.headers:
                tp = traceparent_of(msg.headers)
                if tp is not None:
                    traces[metric.instance_id] = tp
        except PoisonMessage as exc:
            poison.append(Poison(msg, exc.reason))
        except ConnectorError:  # the schema registry is down: not the message's fault, retry
            raise
        except Exception as exc:
            poison.append(Poison(msg, f"unexpected {type(exc).__name__} while decoding: {str(exc)[:500]}"))
    return metrics, poison


class RulesVersion:
    """The newest rule set a process's shards run (`RulesUpdate`s applied): a shard built
    after a reload (its first item came later) starts with it, not with the start-up set."""

    def __init__(self, ruleset: RuleSet, version: str = "", loaded_at: float = -math.inf) -> None:
        self._lock = threading.Lock()
        self.ruleset, self.version, self.loaded_at = ruleset, version, loaded_at

    def offer(self, update: RulesUpdate) -> None:
        with self._lock:
            if update.loaded_at > self.loaded_at:
                self.ruleset, self.version, self.loaded_at = update.ruleset, update.version, update.loaded_at

    def current(self) -> tuple[RuleSet, str, float]:
        with self._lock:
            return self.ruleset, self.version, self.loaded_at


class EngineLogic(StatefulBatchLogic[list[Any], "AlertEvent | Poison", "bytes | None"]):
    """Adapts `ShardEngine` to Bytewax: decode a batch, ingest it, emit events.

    Items are chunks: lists of a shard's messages (`evaluate` routes a source batch in one pass
    and sends each shard its share as one item), so Bytewax's per-item cost, and the pickling
    of items crossing the worker exchange, is paid per chunk, not per message.

    Items that are not metric messages are rare and handled per batch: `SourceProgress`
    (live input caught up), control events and `ControlCaughtUp` markers (silences), and
    `RulesUpdate`s (a rule set loaded while running; each version applied once, newest wins).
    """

    def __init__(
        self,
        engine: ShardEngine,
        decode: Decoder,
        wall: WallClock | None,
        flush_on_eof: bool,
        name: str,
        metrics: Metrics | None = None,
        *,
        control: bool = False,
        rules: RulesVersion | None = None,
        built_with: tuple[str, float] = ("", -math.inf),
        snapshots: bool = True,
        slices: WorkSlices | None = None,
        window: Callable[[list[Metric]], list[Metric]] | None = None,
    ) -> None:
        self.engine = engine
        self.decode = decode
        self.wall = wall
        self.flush_on_eof = flush_on_eof
        self.name = name
        self.metrics = metrics or METRICS
        self._late_seen = engine.stats.late
        # look for markers only where some can come: live (progress) or with a control input
        self._scan = wall is not None or control
        self._rules = rules
        # the rule set the engine was built with (`RulesVersion.current`)
        self.rules_version, self.rules_loaded_at = built_with
        self.snapshots = snapshots
        # the worker's slices for aging by wall time (live); None: all at once
        self.slices = slices
        # a backtest's event-time window, applied to each decoded batch
        self.window = window

    def on_batch(self, chunks: list[list[Any]]) -> tuple[list[AlertEvent | Poison], bool]:
        values = chunks[0] if len(chunks) == 1 else list(chain.from_iterable(chunks))
        now = self.wall() if self.wall is not None else math.inf
        marks: list[Any] = [v for v in values if v.__class__ not in MESSAGE_TYPES] if self._scan else []
        progress: list[SourceProgress] = []
        events: list[AlertEvent] = []
        if marks:  # rare: about one per partition and second, and control-plane items
            values = [v for v in values if v.__class__ in MESSAGE_TYPES]
            # control first: a silence that arrived with these samples applies to their ticks
            for m in marks:
                if m.__class__ is SourceProgress:
                    progress.append(m)
                elif m.__class__ is ControlCaughtUp:
                    events += self.engine.control_caught_up(m.part, m.parts)
                elif m.__class__ is RulesUpdate:
                    events += self._reload(m)
                else:
                    self.engine.apply_control(m)
        traces: dict[str, str] = {}  # {instance_id: traceparent}, only from messages that had one
        metrics, poison = decode_batch(values, self.decode, now, traces)
        if self.window is not None:
            metrics = self.window(metrics)
        out: list[AlertEvent | Poison] = list(poison)
        ingested = self.engine.ingest(metrics, 0.0 if now == math.inf else now, traces or None)
        events = events + ingested if events else ingested
        moved = False
        if progress:
            # after the batch: the markers came behind these messages from their partitions
            for p in progress:
                moved |= self.engine.observe_progress(p.part, p.caught_up_at, p.parts)
            mark_alive(self.name)  # an idle worker still evaluates: that is liveness too
        if moved or self.engine.idle_pending:
            events = events + self._age()
        late = self.engine.stats.late
        self.metrics.record_batch(self.name, len(values), len(poison), late - self._late_seen)
        self._late_seen = late
        if events:
            self.metrics.record_events(self.name, events)
            out.extend(events)
        return out, StatefulBatchLogic.RETAIN

    def _age(self) -> list[AlertEvent]:
        """Wall time ages silent instances, in the worker's slices when it has some: what is
        left waits for the next batch or for `on_notify` (`connectors.ops.slices`)."""
        if self.slices is None:
            return self.engine.advance_idle(self.engine.caught_up)
        deadline = self.slices.deadline()
        if deadline is None:
            return []
        events = self.engine.advance_idle(self.engine.caught_up, deadline, self.slices.clock)
        if self.engine.idle_pending:
            self.slices.used_up()
        return events

    def on_notify(self) -> tuple[list[AlertEvent | Poison], bool]:
        events = self._age() if self.engine.idle_pending else []
        if events:
            self.metrics.record_events(self.name, events)
        return list(events), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        # only while aging is left over: Bytewax asks every shard after each call
        if self.slices is None or not self.engine.idle_pending:
            return None
        return datetime.fromtimestamp(self.slices.next_start(), UTC)

    def _reload(self, update: RulesUpdate) -> list[AlertEvent]:
        """Apply a loaded rule set once per version (every worker's watcher sends it), newest
        load time wins."""
        if update.version == self.rules_version or update.loaded_at <= self.rules_loaded_at:
            return []
        try:
            events = self.engine.reload(update.ruleset)
        except RulesError as exc:  # the watcher refuses these first; never take the job down
            logging.getLogger(__name__).error("rules %s not applied: %s", update.version, exc)
            return []
        self.rules_version, self.rules_loaded_at = update.version, update.loaded_at
        if self._rules is not None:
            self._rules.offer(update)
        return events

    def on_eof(self) -> tuple[list[AlertEvent | Poison], bool]:
        # aging left for a later slice is done now: a bounded run ends with what it decided
        out: list[AlertEvent | Poison] = []
        if self.engine.idle_pending:
            out.extend(aged := self.engine.advance_idle(self.engine.caught_up))
            self.metrics.record_events(self.name, aged)
        if self.flush_on_eof:
            out.extend(self.engine.flush())
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        # Bytewax asks at every epoch, recovery or not: without it nothing reads the answer
        return self.engine.snapshot() if self.snapshots else None


def evaluate(
    step_id: str,
    raw: Stream[Message],
    ruleset: RuleSet,
    decode: Decoder,
    *,
    shards: int,
    wall: WallClock | None,
    flush_on_eof: bool,
    name: str = "alerting",
    metrics: Metrics | None = None,
    control: Stream[Any] | None = None,
    await_control: bool = False,
    preload: ControlState | None = None,
    rules_version: str = "",
    snapshots: bool = True,
    window: Callable[[list[Metric]], list[Metric]] | None = None,
    legacy_shards: bool = False,
) -> tuple[Stream[AlertEvent], Stream[Poison]]:
    """The alerting logic as a sub-flow: raw messages in, alert events and poison out.

    `wall=None` runs on event time only (backtests: same input, same output, any speed);
    the live job passes a wall clock and a source with `SourceProgress` markers
    (`metric_source(progress=True)`), so silent instances still go stale once the input is
    known to be caught up. The markers are broadcast to every shard. Counts go to `metrics`
    (default: the process's `METRICS`).

    `control` is the control plane's stream: `ControlEvent`s and `ControlCaughtUp` markers
    (`connectors.control.source`) and `RulesUpdate`s (`connectors.control.watch`), broadcast to
    every shard. With `await_control` (the control topic is read), a shard buffers samples but
    closes no tick until it has seen `ControlCaughtUp` from every control partition: a
    restart re-reads the control topic first, so it never notifies what a silence mutes.
    `preload` is a control plane folded beforehand (a backtest's silences, applied by event
    time from the first sample on). `rules_version` names `ruleset` (its content hash), so the
    watcher's first look does not apply it a second time. `snapshots=False` (a process without
    recovery) answers Bytewax's per-epoch snapshot calls with nothing instead of the shard's state.
    `window` filters each decoded batch before the engine sees it (a backtest's event-time
    window, `connectors.kafka.replay.EventWindow.keep`). `legacy_shards`: the shard names of
    recovery stores written before the balanced ones (`connectors.ops.placement.check_store`).
    """
    rules = RulesVersion(ruleset, rules_version)
    slices: dict[int, WorkSlices] = {}  # one per worker thread, shared by its shards

    def build(resume: bytes | None) -> EngineLogic:
        keep_thread_state()  # on the worker thread (connectors/ops/runtime.py)
        current, version, loaded_at = rules.current()
        engine = ShardEngine(current, live=wall is not None, await_control=await_control)
        if preload is not None:
            for silence in preload.silences.values():
                engine.apply_control(silence)
        if resume is not None:
            engine.restore(resume, wall() if wall is not None else 0.0)
        return EngineLogic(
            engine,
            decode,
            wall,
            flush_on_eof,
            name,
            metrics,
            control=control is not None,
            rules=rules,
            built_with=(version, loaded_at),
            snapshots=snapshots,
            slices=None if wall is None else slices.setdefault(threading.get_ident(), WorkSlices(wall)),
            window=window,
        )

    route = shard_router(shards, legacy_shards)
    names = shard_names(shards, legacy_shards)  # the router's: its common case is inlined below
    crc32 = zlib.crc32

    def route_batch(batch: list[Any]) -> list[tuple[str, list[Any]]]:
        """One (shard, messages) item per shard of the batch, in the batch's order: Bytewax
        costs ~2 us per item and operator (and a pickle per item crossing processes); a
        source batch of 1000 messages becomes at most `shards` items."""
        chunks: dict[str, list[Any]] = {}
        marks = []
        for m in batch:
            if m.__class__ is SourceProgress:
                marks.append(m)
                continue
            key = m.key
            # `route`'s common case inline (a bytes key): a call less per message
            shard = names[crc32(key) % shards] if key.__class__ is bytes else route(m)
            chunk = chunks.get(shard)
            if chunk is None:
                chunks[shard] = chunk = MessageChunk()
            chunk.append(m)
        out = list(chunks.items())
        if marks:  # progress markers go to every shard, behind its messages of this batch
            for n in names:
                chunk = chunks.get(n)
                if chunk is None:
                    out.append((n, marks))
                else:
                    chunk.extend(marks)
        return out

    def route_all(batch: list[Any]) -> list[tuple[str, list[Any]]]:
        """One shard: the whole batch is its chunk, as it came (`EngineLogic` takes progress
        markers out of a chunk and applies them after its messages)."""
        return [(names[0], MessageChunk(batch))]

    # one Python call per batch rather than one per message (key_on maps item by item)
    keyed = op.flat_map_batch(f"{step_id}-route", raw, route_all if shards == 1 else route_batch)
    if control is not None:  # every control item to every shard (rare: no per-message cost)
        broadcast = op.flat_map_batch(
            f"{step_id}-broadcast-control", control, lambda batch: [(n, list(batch)) for n in names]
        )
        keyed = op.merge(f"{step_id}-with-control", keyed, broadcast)
    out = op.stateful_batch(f"{step_id}-evaluate", keyed, build)
    items = op.map(f"{step_id}-unkey", out, lambda kv: kv[1])
    split = op.branch(f"{step_id}-split", items, lambda x: isinstance(x, AlertEvent))
    return split.trues, split.falses  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class GroupInput:
    """One decoded source batch as a rule group sees it: its samples, the newest event time of
    every partition in the batch (all messages, so time moves for every group) and the
    `SourceProgress` markers that came behind them."""

    group: str  # Bytewax's builder is not told its key: the first item names the group
    samples: list[RawSample]
    newest: dict[str, float]
    wall: float
    progress: tuple[SourceProgress, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupControl:
    """A control-plane item (`ControlEvent`, `ControlCaughtUp`, `RulesUpdate`) for one group."""

    group: str
    item: Any


class GroupSet:
    """Process-wide: the newest Prometheus rule groups (routing follows them, and a group's
    runner is built from them) and the control plane this process has read, replayed to a
    group that a reload adds (it did not exist when those items were broadcast)."""

    def __init__(self, groups: Sequence[RuleGroup], version: str = "") -> None:
        self._lock = threading.Lock()
        self.version, self.loaded_at = version, -math.inf
        self._set(groups)
        self.control: ControlState = EMPTY
        self.caught_up: list[ControlCaughtUp] = []

    def _set(self, groups: Sequence[RuleGroup]) -> None:
        self.by_name = {g.name: g for g in groups}
        self.routes: Routes = plan_routes({g.name: group_metric_names(g) for g in groups})

    def offer(self, update: RulesUpdate) -> tuple[list[str], list[str]]:
        """Take a newer set; (every group the update concerns: the new ones and the removed
        ones, the groups that are new)."""
        with self._lock:
            before = list(self.by_name)
            if update.loaded_at > self.loaded_at and update.version != self.version:
                self.version, self.loaded_at = update.version, update.loaded_at
                self._set(update.groups)
            added = [g for g in self.by_name if g not in before]
            return [*before, *added], added

    def observe(self, item: Any) -> None:
        with self._lock:
            if item.__class__ is ControlCaughtUp:
                self.caught_up.append(item)
            elif isinstance(item, SilenceEvent):
                self.control = fold(self.control, item)

    def replay(self) -> list[Any]:
        """What a group added now must be told: the silences and markers read so far."""
        with self._lock:
            return [*self.control.silences.values(), *self.caught_up]

    def names(self) -> list[str]:
        with self._lock:
            return list(self.by_name)

    def group(self, name: str) -> RuleGroup | None:
        with self._lock:
            return self.by_name.get(name)


class GroupLogic(
    StatefulBatchLogic["GroupInput | GroupControl", "AlertEvent | Metric", "GroupRunner | None"]
):
    """Adapts `rules.promql.stream.GroupRunner` (one Prometheus rule group) to Bytewax.

    Control items are applied in arrival order before the batch's samples (a silence that came
    with them applies to their ticks); a `RulesUpdate` is applied once per version, newest load
    time wins: the group's new version, or, when it is gone, its firing alerts resolved and its
    state discarded."""

    def __init__(
        self,
        runner: GroupRunner | None,
        start: Callable[[str], GroupRunner | None],
        flush_on_eof: bool,
        name: str,
        metrics: Metrics | None = None,
        *,
        built_with: tuple[str, float] = ("", -math.inf),
        pending: Output = EMPTY_OUTPUT,
    ) -> None:
        self.runner = runner  # None until the first item names the group (or a snapshot's)
        self._pending = pending  # a resumed group's resolutions (its rules changed while down)
        self.start = start
        self.flush_on_eof = flush_on_eof
        self.name = name
        self.metrics = metrics or METRICS
        self.rules_version, self.rules_loaded_at = built_with

    def on_batch(self, values: list[GroupInput | GroupControl]) -> tuple[list[AlertEvent | Metric], bool]:
        runner = self.runner
        if runner is None:
            runner = self.runner = self.start(values[0].group)
            if runner is None:  # a group removed by a reload: items still in flight
                return [], StatefulBatchLogic.DISCARD
        late = runner.stats.late
        out, self._pending = self._pending, EMPTY_OUTPUT
        inputs: list[GroupInput] = []
        for v in values:
            if v.__class__ is GroupInput:
                inputs.append(v)
                continue
            item = v.item  # type: ignore[union-attr]
            if item.__class__ is ControlCaughtUp:
                out = out + runner.control_caught_up(item.part, item.parts)
            elif item.__class__ is RulesUpdate:
                got = self._reload(runner, item)
                if got is None:  # the group is gone
                    self.runner = None
                    return self._emit(out + runner.retire(), 0), StatefulBatchLogic.DISCARD
                out = out + got
            else:
                runner.apply_control(item)
        for i in inputs:
            out = out + runner.ingest(i.samples, i.newest, i.wall)
            for p in i.progress:  # behind the batch's messages, as they were read
                out = out + runner.progress(p.part, p.caught_up_at, p.parts)
        return self._emit(out, runner.stats.late - late), StatefulBatchLogic.RETAIN

    def _reload(self, runner: GroupRunner, update: RulesUpdate) -> Output | None:
        if update.version == self.rules_version or update.loaded_at <= self.rules_loaded_at:
            return EMPTY_OUTPUT
        self.rules_version, self.rules_loaded_at = update.version, update.loaded_at
        new = next((g for g in update.groups if g.name == runner.group.name), None)
        if new is None:
            return None
        runner.set_policy(update.ruleset.silences, update.ruleset.inhibit_rules)
        return runner.reload(new) if new != runner.group else EMPTY_OUTPUT

    def _emit(self, out: Output, late: int) -> list[AlertEvent | Metric]:
        if late:
            self.metrics.record_batch(self.name, 0, 0, late)
        if out.events:
            self.metrics.record_events(self.name, out.events)
        return [*out.recorded, *out.events]

    def on_eof(self) -> tuple[list[AlertEvent | Metric], bool]:
        if self.flush_on_eof and self.runner is not None:
            return self._emit(self.runner.flush(), 0), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> GroupRunner | None:
        return self.runner


def evaluate_groups(
    step_id: str,
    raw: Stream[Message],
    groups: Sequence[RuleGroup],
    decode: Decoder,
    *,
    lateness_s: float,
    wall: WallClock | None,
    flush_on_eof: bool,
    name: str = "alerting",
    metrics: Metrics | None = None,
    skip_topics: Collection[str] = (),
    count_input: bool = False,
    ruleset: RuleSet | None = None,
    control: Stream[Any] | None = None,
    await_control: bool = False,
    preload: ControlState | None = None,
    rules_version: str = "",
) -> tuple[Stream[AlertEvent], Stream[Metric], Stream[Poison]]:
    """Prometheus rule groups as a sub-flow: raw messages in; alert events, recording-rule
    samples (seed records, for RECORDED_TOPIC) and poison out (`rules.promql.stream`).

    Messages are decoded where they were read and each group gets one `GroupInput` per source
    batch (its samples by metric name, every partition's newest event time, the progress
    markers); one worker evaluates a group (`stateful_batch` keyed by its name), as Prometheus
    does. `skip_topics` (the recorded topic) are not fed back: a group has its own outputs.
    `count_input`: this sub-flow is the job's only decoder, so it counts messages and dead
    letters in `/metrics` (beside the seed engine, that one does).

    The control plane as for the seed rules (`evaluate`): `ruleset`'s silences and inhibit rules
    apply to the groups' alerts, `control` items (silences, `ControlCaughtUp`, `RulesUpdate`) are
    broadcast to every group (group names are known: routing follows the newest rule set,
    `GroupSet`), ticks are held until the control topic caught up (`await_control`), `preload`
    is a backtest's folded control topic. A reload can add a group: samples are routed to its
    name from then on and it starts with the silences this process has read.
    """
    current = GroupSet(groups, rules_version)
    file_silences = ruleset.silences if ruleset is not None else ()
    inhibit = ruleset.inhibit_rules if ruleset is not None else ()
    skip = frozenset(skip_topics)
    counter = metrics or METRICS

    def split(batch: list[Any]) -> list[Any]:
        now = wall() if wall is not None else math.inf
        msgs: list[Message] = []
        progress: list[SourceProgress] = []
        for m in batch:
            if m.__class__ in MESSAGE_TYPES:
                if m.topic not in skip:
                    msgs.append(m)
            elif m.__class__ is SourceProgress:
                progress.append(m)
        sources: list[Message] = []
        decoded, poison = decode_batch(msgs, decode, now, sources=sources)
        routes = current.routes  # the newest rule set's (a reload may add or remove groups)
        samples: dict[str, list[RawSample]] = {g: [] for g in routes.groups}
        newest: dict[str, float] = {}
        for metric, msg in zip(decoded, sources, strict=True):
            part = partition_key(msg.topic, msg.partition)
            if metric.ts > newest.get(part, -math.inf):
                newest[part] = metric.ts
            for g in routes.groups_for(metric.metric_name):
                samples[g].append((prom_labels(metric), metric.ts, metric.value))
        if count_input:
            counter.record_batch(name, len(msgs), len(poison))
        at = 0.0 if now == math.inf else now
        marks = tuple(progress)
        out: list[Any] = list(poison)
        if decoded or marks:
            out.extend((g, GroupInput(g, samples[g], newest, at, marks)) for g in routes.groups)
        return out

    def start(group: str) -> GroupRunner | None:
        found = current.group(group)
        if found is None:
            return None
        runner = GroupRunner(
            found, lateness_s=lateness_s, silences=file_silences, inhibit_rules=inhibit,
            await_control=await_control,
        )  # fmt: skip
        for silence in preload.silences.values() if preload is not None else ():
            runner.apply_control(silence)
        return runner

    def build(resume: GroupRunner | None) -> GroupLogic:
        pending = EMPTY_OUTPUT
        if resume is not None:
            if await_control:
                resume.rehold()  # the control topic is re-read from its start after a restart
            found = current.group(resume.group.name)
            if found is not None and found != resume.group:  # rule files changed while it was down
                pending = resume.reload(found)
        built_with = (current.version, current.loaded_at)
        return GroupLogic(resume, start, flush_on_eof, name, metrics, built_with=built_with, pending=pending)

    def broadcast(batch: list[Any]) -> list[tuple[str, GroupControl]]:
        out: list[tuple[str, GroupControl]] = []
        for m in batch:
            if m.__class__ is RulesUpdate:
                names, added = current.offer(m)
                for g in added:  # it missed what was broadcast before it existed
                    out.extend((g, GroupControl(g, c)) for c in current.replay())
            else:
                current.observe(m)
                names = current.names()
            out.extend((g, GroupControl(g, m)) for g in names)
        return out

    items = op.flat_map_batch(f"{step_id}-decode", raw, split)
    parts = op.branch(f"{step_id}-poison", items, lambda x: isinstance(x, Poison))
    keyed: Stream[Any] = parts.falses
    if control is not None:  # rare items: every one to every group
        ctl = op.flat_map_batch(f"{step_id}-broadcast-control", control, broadcast)
        keyed = op.merge(f"{step_id}-with-control", keyed, ctl)
    out = op.stateful_batch(f"{step_id}-evaluate", keyed, build)
    values = op.map(f"{step_id}-unkey", out, lambda kv: kv[1])
    split_out = op.branch(f"{step_id}-split", values, lambda x: isinstance(x, AlertEvent))
    return split_out.trues, split_out.falses, parts.trues  # type: ignore[return-value]


def wall_clock() -> float:
    return time.time()


def alert_message(event: AlertEvent) -> KafkaSinkMessage[bytes, bytes]:
    """An alert transition for the `alerts` topic, keyed by fingerprint (ordered per alert).
    orjson: 1 us a record against the stdlib's 12 (compact, UTF-8; the same JSON values)."""
    return KafkaSinkMessage(event.fingerprint.encode(), orjson.dumps(event.to_record()))


def recorded_message(m: Metric) -> KafkaSinkMessage[bytes, bytes]:
    """A recording rule's sample for RECORDED_TOPIC: the seed JSON, keyed by instance_id."""
    return KafkaSinkMessage(m.instance_id.encode(), encode_json(m))


def print_notification(payload: dict[str, Any]) -> str:
    """One readable line plus the JSON that would be posted (embedded mode)."""
    head = f"NOTIFY {payload.get('subject', '')}  message_id={payload.get('message_id', '')}"
    return head + "\n  " + json.dumps(payload, sort_keys=True)


def poison_line(p: Poison) -> str:
    """A dead letter as one printed line (embedded runs have no DLQ topic)."""
    return f"DLQ {p.msg.topic}@{p.msg.offset}: {p.error}"


def settings_decoder(settings: Settings) -> Decoder:
    """The configured input format; the bundled sample is always JSON."""
    return make_decoder(
        "json" if settings.embedded else settings.input_format,
        settings.schema_registry_url or None,
        max_future_s=settings.max_future_s,
    )


def poison_to_dlq(p: Poison) -> KafkaSinkMessage[bytes | None, bytes]:
    return dead_letter_from(p.msg, p.error, p.stage, time.time())


def settings_source(settings: Settings, topics: str | None = None, **kw: Any) -> Any:
    """The KafkaSource a job reads: METRIC_TOPICS (regex or comma list) from the settings.

    Wrapped in `InstrumentedSource`, so every poll reports to `/healthz` and `/readyz`
    (a partition with lag that yields nothing is a stalled pipeline).
    """
    from connectors.kafka.source import metric_source

    spec = settings.metric_topics if topics is None else topics
    names: str | list[str] = (
        spec if spec.startswith("^") else [t.strip() for t in spec.split(",") if t.strip()]
    )
    kw.setdefault("starting_offset", settings.kafka_start)
    source = metric_source(
        list(settings.bootstrap),
        names,
        add_config=dict(settings.kafka_extra),
        tail=settings.kafka_tail,
        **kw,
    )
    return InstrumentedSource(source) if isinstance(source, FixedPartitionedSource) else source


def lazy_flow(namespace: dict[str, Any], build: Callable[[], Dataflow]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds `flow` on first access (`python -m bytewax.run`),
    so importing a flow module (tests) reads no environment and connects to nothing."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module protocol's name
        if name == "flow":
            value = namespace["flow"] = build()
            tune_gc()  # start-up is over: freeze what it allocated (connectors/ops/runtime.py)
            # a long-running job gives back what a catch-up left free (a backtest ends instead)
            tune_malloc()
            return value
        raise AttributeError(name)

    return __getattr__


def configure_logging() -> None:
    """INFO to stderr, unless the host process configured logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per notification is noise and CPU on the hot
    # path (and a child whose stderr is a pipe nobody reads blocks on it)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def exit_with(job: str, problems: Sequence[str]) -> NoReturn:
    """Every problem, one line each (credentials redacted), then exit status 2."""
    print(f"flows.{job}: {ConfigError(list(problems))}", file=sys.stderr)
    raise SystemExit(2)


def load_settings() -> tuple[Settings | None, MonitoringSettings | None, list[str]]:
    """Both settings from the environment, and the problems of both (not only the first's)."""
    problems: list[str] = []
    settings = monitoring = None
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        problems += exc.problems
    try:
        monitoring = MonitoringSettings.from_env()
    except ConfigError as exc:
        problems += exc.problems
    return settings, monitoring, problems


def start_live(job: str, settings: Settings, monitoring: MonitoringSettings, topics: Topics) -> None:
    """Before a Kafka job builds its flow: its monitoring server, the broker, the topics it uses.

    The server comes first, so that while the broker does not answer the pod is up and says
    why it is not ready (Bytewax itself would wait forever, silently, for the metadata of its
    input topics). A missing topic is a configuration problem: exit, rather than panic at
    the first write.
    """
    from connectors.kafka.topics import missing_topics, topic_names

    try:
        start(job, monitoring)
    except ConfigError as exc:
        exit_with(job, exc.problems)
    bootstrap = ",".join(settings.bootstrap)
    existing = await_dependency(
        job, f"Kafka at {bootstrap}", partial(topic_names, bootstrap, dict(settings.kafka_extra))
    )
    problems = missing_topics(dict(topics), existing, bootstrap)
    if problems:
        exit_with(job, problems)
    from connectors.ops.selfmetrics import start as start_selfmetrics

    start_selfmetrics(job, settings, monitoring)  # own health as metrics on gds.metrics.pipeline.{env}


class _Discard(DynamicSink[Any]):
    """Where a liveness-only heartbeat goes."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        return _DiscardPartition()


class _DiscardPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


def add_liveness(flow: Dataflow, job: str, interval_s: float) -> None:
    """A heartbeat on every worker that only feeds `/healthz`: an idle worker, or one that
    holds no input partition, still proves its loop runs (and the pod becomes ready)."""
    beats = op.input("liveness", flow, HeartbeatSource(job, interval_s))
    op.output("liveness-out", beats, _Discard())


def build_or_exit(
    job: str,
    build: Callable[[Settings], Dataflow],
    topics: Callable[[Settings], Topics] = lambda settings: {},
) -> tuple[Settings, Dataflow]:
    """Settings from the environment and the job's flow; a bad configuration exits with status 2
    and every problem listed, before anything connects. A tailing Kafka job also serves
    `/metrics`, `/healthz` and `/readyz`, waits for its broker, and checks `topics(settings)`
    (`{VARIABLE: topic}` it reads or writes by name) exist."""
    configure_logging()
    settings, monitoring, problems = load_settings()
    if problems or settings is None or monitoring is None:
        exit_with(job, problems)
    if not settings.embedded:
        start_live(job, settings, monitoring, topics(settings))
    try:
        flow = build(settings)
    except ConfigError as exc:
        exit_with(job, exc.problems)
    except ConnectorError as exc:  # e.g. METRIC_TOPICS matches no topic
        exit_with(job, [str(exc)])
    if not settings.embedded and settings.kafka_tail:  # a bounded run must end: no endless heartbeat
        add_liveness(flow, job, monitoring.heartbeat_interval_s)
    return settings, flow
