"""Prometheus rule groups on the metric stream: labels, routing, watermarks, ticks. Pure: time is
passed in, nothing here reads a clock or does I/O (flows/common.py wires it).

Labels. A decoded message (`rules.metric.Metric`) becomes one sample of the series

    {__name__=metric_name, instance=instance_id, instance_id=instance_id,
     database_type=database_type, <every tag>}

`instance` is what Prometheus rules name the target by; `instance_id` is kept too, so rules
written for our seed labels work as well. A tag never overrides these four (the identity of
the message wins over a tag of the same name).

Routing. Each group receives the samples of the metric names its selectors can match
(`rules.promql.ast.metric_names`); a group with a selector that has no fixed name
(`{job="x"}`, `{__name__=~"pg_.*"}`) receives every sample. One group is evaluated by one
worker (a `stateful_batch` keyed by group name), as Prometheus evaluates a group in order.

Time. A group evaluates tick T (a multiple of its interval) once its watermark has passed T.
The watermark is taken over the *source partitions*, not over series:

    watermark = min over partitions p of (newest event time read from p) - allowed lateness

so a sample still on its way in a slower partition is never late. A partition known to be
caught up and idle does not hold the group back: it is left out of the minimum from the
moment a `SourceProgress` marker says it was read to its end *after* its newest message arrived
(a silent member). When every partition is idle, wall time during which the input was caught
up ages the newest event time (as `rules.engine` ages a silent instance), so the last ticks are
still evaluated while nothing arrives. A silent partition that speaks again with event times
behind the watermark has its samples counted late and dropped, like any late sample.
The watermark never moves back. Before a live job has heard from every partition (the markers
carry their count) it holds, as it cannot know what an unheard partition carries.

Backtests have no wall time and no markers: the watermark is the minimum over the partitions
seen, and the end of the input evaluates every tick up to the newest sample (`flush`).

Control plane. Silences (rule-file and control-topic, `apply_control`) and inhibit rules apply to
a group's alerts as to the seed rules' (`rules.suppress`, by tick time). With `await_control` a
group buffers samples but evaluates no tick until every control partition caught up
(`control_caught_up`), so a restart never notifies what a silence mutes. `reload` switches to a
new version of the group keeping the alert state of the rules that stayed
(`rules.promql.group.carry_over`); `retire` resolves a removed group's firing alerts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Final

from rules.control.events import EMPTY, ControlEvent, ControlState, SilenceEvent, fold
from rules.metric import Metric
from rules.model import AlertEvent, InhibitRule, Silence
from rules.promql.ast import max_range_s, metric_names
from rules.promql.eval import Evaluator, Store
from rules.promql.group import GroupState, MemoryStore, carry_over, evaluate_group
from rules.promql.rulefile import RecordingRule, RuleGroup
from rules.suppress import Suppressor, silences_of

Labels = tuple[tuple[str, str], ...]
"""Sorted (name, value) pairs, `__name__` included: rules.promql.eval's label set."""

RawSample = tuple[Labels, float, float]
"""(labels, event time, value): one decoded message as a group's store takes it."""

IDENTITY: Final = ("__name__", "instance", "instance_id", "database_type")


def prom_labels(m: Metric) -> Labels:
    """The Prometheus label set of a decoded message (module docstring)."""
    labels = dict(m.tags) if m.tags else {}
    labels["__name__"] = m.metric_name
    labels["instance"] = m.instance_id
    labels["instance_id"] = m.instance_id
    labels["database_type"] = m.database_type
    # an empty label is no label in Prometheus
    return tuple(sorted(kv for kv in labels.items() if kv[1]))


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Routes:
    """metric name -> the groups that read it; `everything` reads every name."""

    by_name: Mapping[str, tuple[str, ...]]
    everything: tuple[str, ...]
    groups: tuple[str, ...]

    def groups_for(self, metric_name: str) -> tuple[str, ...]:
        return self.by_name.get(metric_name, self.everything)


def plan_routes(names: Mapping[str, set[str] | None]) -> Routes:
    """`{group: metric names its selectors match, or None for any}` -> `Routes`."""
    everything = tuple(g for g, ns in names.items() if ns is None)
    known = sorted({n for ns in names.values() for n in ns or ()})
    # group order kept: every name's list is in the order the groups were given
    by_name = {n: tuple(g for g, ns in names.items() if ns is None or n in ns) for n in known}
    return Routes(by_name, everything, tuple(names))


# --------------------------------------------------------------------------- watermark


@dataclass(frozen=True, slots=True)
class PartTime:
    """What one source partition told a group: its newest event time, the wall time that
    message was decoded at, and the wall time it was last read to its end."""

    newest: float = -math.inf
    arrived: float = -math.inf
    caught_up: float = -math.inf

    @property
    def idle(self) -> bool:
        # read to its end after its newest message: whatever it carries next is newer
        return self.caught_up > self.arrived


@dataclass(frozen=True, slots=True)
class InputClock:
    """Per source partition progress, as one group has seen it; `total` is the number of
    partitions of the source (0: unknown, no markers, i.e. a backtest or a test source)."""

    parts: Mapping[str, PartTime] = field(default_factory=dict)
    total: int = 0


def saw(clock: InputClock, part: str, newest: float, wall: float) -> InputClock:
    """Partition `part` delivered messages up to event time `newest`, decoded at `wall`."""
    old = clock.parts.get(part, PartTime())
    if newest <= old.newest and part in clock.parts:
        return clock
    parts = dict(clock.parts)
    parts[part] = replace(old, newest=max(newest, old.newest), arrived=wall)
    return replace(clock, parts=parts)


def progressed(clock: InputClock, part: str, caught_up_at: float, total: int) -> InputClock:
    """A `SourceProgress` marker: `part` (of `total`) was read to its end at wall `caught_up_at`."""
    old = clock.parts.get(part, PartTime())
    if caught_up_at <= old.caught_up and part in clock.parts and total <= clock.total:
        return clock
    parts = dict(clock.parts)
    parts[part] = replace(old, caught_up=max(caught_up_at, old.caught_up))
    return InputClock(parts, max(total, clock.total))


def watermark(clock: InputClock, lateness_s: float) -> float:
    """Event time up to which every sample has arrived (module docstring); -inf when unknown."""
    if not clock.parts or len(clock.parts) < clock.total:
        return -math.inf
    busy = [p.newest for p in clock.parts.values() if not p.idle]
    if busy:
        return min(busy) - lateness_s
    # all quiet: the newest event time, aged by the wall time the whole input was caught up since
    newest = max(clock.parts.values(), key=lambda p: p.newest)
    if newest.newest == -math.inf:
        return -math.inf
    caught_up = min(p.caught_up for p in clock.parts.values())
    return newest.newest - lateness_s + max(0.0, caught_up - newest.arrived)


def ticks(after: float, until: float, interval_s: float) -> list[float]:
    """Ticks T (multiples of `interval_s`) with after < T <= until."""
    if until == -math.inf or until <= after:
        return []
    first = math.floor(after / interval_s) * interval_s + interval_s if after > -math.inf else None
    last = math.floor(until / interval_s) * interval_s
    if first is None:
        return [last]
    n = round((last - first) / interval_s) + 1
    return [first + i * interval_s for i in range(max(0, n))]


def first_tick(earliest_ts: float, interval_s: float) -> float:
    """The first tick a group evaluates: the first at or after its earliest sample."""
    return math.ceil(earliest_ts / interval_s) * interval_s


# --------------------------------------------------------------------------- recorded output


def recorded_metric(name: str, labels: Labels, value: float, t: float, group: str) -> Metric:
    """A recording rule's output sample as a seed-format message (`gds.metrics.recorded`).

    `instance_id` is the `instance_id` label, else `instance`, else the group name (an aggregate
    over instances has none, and the seed format requires one); `database_type` is its label,
    else `prometheus`. Every other label but `__name__` is a tag.
    """
    d = dict(labels)
    d.pop("__name__", None)
    instance = d.pop("instance_id", None) or d.get("instance") or group
    if d.get("instance") == instance:
        del d["instance"]
    database_type = d.pop("database_type", None) or "prometheus"
    return Metric(t, database_type, instance, name, value, d)


def name_of(labels: Labels) -> str:
    for k, v in labels:
        if k == "__name__":
            return v
    return ""


def partition_key(topic: str | None, partition: int | None) -> str:
    """The key `SourceProgress.part` uses for a Kafka partition: `{partition}-{topic}`."""
    return f"{partition if partition is not None else 0}-{topic or ''}"


def newest_by_part(items: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Per partition, the newest event time among `(part, ts)` pairs."""
    out: dict[str, float] = {}
    for part, ts in items:
        if ts > out.get(part, -math.inf):
            out[part] = ts
    return out


# --------------------------------------------------------------------------- one group on a stream

DEFAULT_INTERVAL_S: Final = 60.0
"""A group without `interval:` evaluates every minute: Prometheus' default evaluation_interval."""
LOOKBACK_S: Final = 300.0
"""Prometheus' default lookback delta for an instant selector."""


@dataclass(slots=True)
class GroupStats:
    samples: int = 0
    late: int = 0  # older than a tick already evaluated: dropped
    evaluations: int = 0


@dataclass(frozen=True, slots=True)
class Output:
    """What a step of a group produced: recording-rule samples (seed records) and alert events."""

    recorded: tuple[Metric, ...] = ()
    events: tuple[AlertEvent, ...] = ()

    def __add__(self, other: Output) -> Output:
        if not other.recorded and not other.events:
            return self
        return Output(self.recorded + other.recorded, self.events + other.events)


EMPTY_OUTPUT: Final = Output()


class GroupRunner:
    """One Prometheus rule group on the stream: a bounded `MemoryStore` of its samples, the
    input clock of the source partitions, and `rules.promql.group.evaluate_group` at every tick
    the watermark passed (module docstring). Mutable like `rules.engine.ShardEngine` (touched
    once per batch); each tick's transition is H2's pure `evaluate_group`.
    """

    def __init__(
        self,
        group: RuleGroup,
        *,
        lateness_s: float,
        default_interval_s: float = DEFAULT_INTERVAL_S,
        lookback_s: float = LOOKBACK_S,
        left_open: bool = True,
        silences: Sequence[Silence] = (),
        inhibit_rules: Sequence[InhibitRule] = (),
        control: ControlState = EMPTY,
        await_control: bool = False,
    ) -> None:
        self.default_interval = default_interval_s
        self.lookback = lookback_s
        self._set_group(group)
        self.lateness = lateness_s
        self._factory: Callable[[Store], Evaluator] = partial(
            Evaluator, lookback_s=lookback_s, left_open=left_open
        )
        self.state = GroupState()
        self.store = MemoryStore()
        self.clock = InputClock()
        self.evaluated_until = -math.inf  # the last tick evaluated
        self.earliest = math.inf  # the oldest sample kept before the first tick
        self.newest = -math.inf  # the newest sample seen (`flush` evaluates up to it)
        self.stats = GroupStats()
        # the control plane: silences in force, held until every control partition caught up
        self.file_silences = tuple(silences)
        self.inhibit_rules = tuple(inhibit_rules)
        self.control = control
        self.suppress = Suppressor(silences_of(self.file_silences, control), self.inhibit_rules)
        self.holding = await_control
        self._control_parts: set[str] = set()
        self._control_total = 0

    def _set_group(self, group: RuleGroup) -> None:
        self.group = group
        self.interval = group.interval_s or self.default_interval
        # the oldest sample a future tick can read: its longest range or the lookback
        self.retention = max([self.lookback, *(max_range_s(r.expr) for r in group.rules)])

    def __setstate__(self, state: dict[str, object]) -> None:
        """A runner pickled before the control plane reached groups: nothing silenced it."""
        self.__dict__.update(state)
        if "suppress" not in state:
            self.file_silences, self.inhibit_rules, self.control = (), (), EMPTY
            self.suppress = Suppressor()
            self.holding, self._control_parts, self._control_total = False, set(), 0

    def rehold(self) -> None:
        """After a restart: hold again until the control topic, re-read, caught up."""
        self.holding, self._control_parts, self._control_total = True, set(), 0
        self.control = EMPTY
        self.suppress = Suppressor(silences_of(self.file_silences, EMPTY), self.inhibit_rules)

    # -- control plane ------------------------------------------------------------------
    def apply_control(self, event: ControlEvent) -> None:
        """Fold a control event; a silence applies from the next tick on, by event time."""
        if not isinstance(event, SilenceEvent):
            return
        state = fold(self.control, event)
        if state is not self.control:
            self.control = state
            self.suppress = Suppressor(silences_of(self.file_silences, state), self.inhibit_rules)

    def set_policy(self, silences: Sequence[Silence], inhibit_rules: Sequence[InhibitRule]) -> None:
        """The rule files' silences and inhibit rules changed (a reload of the seed rule set)."""
        self.file_silences, self.inhibit_rules = tuple(silences), tuple(inhibit_rules)
        self.suppress = Suppressor(silences_of(self.file_silences, self.control), self.inhibit_rules)

    def control_caught_up(self, part: str, parts: int) -> Output:
        """Control partition `part` (of `parts`) caught up; once all did, the held ticks run."""
        self._control_parts.add(part)
        self._control_total = max(self._control_total, parts)
        if not self.holding or len(self._control_parts) < self._control_total:
            return EMPTY_OUTPUT
        self.holding = False
        return self.advance(watermark(self.clock, self.lateness))

    def reload(self, group: RuleGroup) -> Output:
        """Switch to a new version of this group (same name), keeping the state of the rules
        that stayed (`carry_over`); resolutions of the rules that are gone are returned."""
        at = self.evaluated_until
        state, events = carry_over(self.group, group, self.state, at, self.suppress)
        self.state = state
        self._set_group(group)
        return Output((), tuple(events))

    def retire(self) -> Output:
        """The group was removed from the rule files: its firing alerts resolve now."""
        state, events = carry_over(self.group, None, self.state, self.evaluated_until, self.suppress)
        self.state = state
        return Output((), tuple(events))

    def ingest(self, samples: Sequence[RawSample], newest: Mapping[str, float], wall: float) -> Output:
        """A decoded batch: the group's samples and, per source partition, the newest event
        time of *every* message of the batch (a partition carrying only other metrics still
        moves this group's time)."""
        until = self.evaluated_until
        kept = 0
        store = self.store
        for labels, ts, value in samples:  # the store keeps each series sorted
            if ts <= until:
                continue
            store.append(labels, ts, value)
            kept += 1
            if ts < self.earliest:
                self.earliest = ts
        self.stats.samples += kept
        self.stats.late += len(samples) - kept
        clock = self.clock
        for part, ts in newest.items():
            clock = saw(clock, part, ts, wall)
            if ts > self.newest:
                self.newest = ts
        self.clock = clock
        return self.advance(watermark(clock, self.lateness))

    def progress(self, part: str, caught_up_at: float, total: int) -> Output:
        """A `SourceProgress` marker (live): may let a quiet input's time move on."""
        self.clock = progressed(self.clock, part, caught_up_at, total)
        return self.advance(watermark(self.clock, self.lateness))

    def flush(self) -> Output:
        """End of a bounded input: every tick up to the newest sample."""
        self.holding = False
        return self.advance(self.newest)

    def advance(self, wm: float) -> Output:
        """Evaluate every tick up to event time `wm`, in order."""
        if self.holding:
            return EMPTY_OUTPUT  # the control plane is not known yet (module docstring)
        if self.earliest == math.inf and self.evaluated_until == -math.inf:
            return EMPTY_OUTPUT  # no sample yet: nothing to start the ticks from
        after = self.evaluated_until
        if after == -math.inf:
            after = first_tick(self.earliest, self.interval) - self.interval
        due = ticks(after, wm, self.interval)
        if not due:
            return EMPTY_OUTPUT
        recorded: list[Metric] = []
        events: list[AlertEvent] = []
        name = self.group.name
        for t in due:
            self.state, out, evs = evaluate_group(
                self.group, self.state, t, self.store, self._factory, suppress=self.suppress
            )
            # a staleness marker (a series that vanished) or a NaN result has no seed form (JSON)
            recorded.extend(
                recorded_metric(name_of(s.labels), s.labels, s.value, t, name)
                for s in out
                if s.value == s.value
            )
            events.extend(evs)
        self.stats.evaluations += len(due)
        self.evaluated_until = due[-1]
        self.store.prune(due[-1] - self.retention)
        return Output(tuple(recorded), tuple(events))


def group_metric_names(group: RuleGroup) -> set[str] | None:
    """The metric names a group's selectors can read; None when some selector has no fixed name.

    Names the group records itself are left out: their samples come from the group, not the
    stream."""
    names: set[str] = set()
    recorded = {r.name for r in group.rules if isinstance(r, RecordingRule)}
    for r in group.rules:
        ns = metric_names(r.expr)
        if ns is None:
            return None
        names |= ns
    return names - recorded
