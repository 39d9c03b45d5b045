"""Evaluation engine for one shard of instances: windows, ticks, staleness, dedup context.

One engine holds every instance whose key hashes to its shard. Samples are appended to
per-series buffers (the only per-message work); alert rules are evaluated on event-time
ticks aligned to the epoch, once an instance's watermark (its newest sample minus the
allowed lateness) has passed the tick. Each evaluation calls the pure `rules.alert.step`.

Silences (rule-file `silences:` and the control plane's, `apply_control`) are decided by the
evaluation tick's event time too: a silence mutes what happens at ticks in [starts_at, ends_at),
so a backtest that folds the same control events shows the same suppressions as the live job.
A live job holds its ticks until its control input caught up (`await_control`): a restart never
notifies what a silence mutes. A new rule set is applied by `reload`, keeping the alert state
of the rules that stayed.

Event time drives everything. In live mode wall time also advances the watermark of an
instance that went silent, so a dead host still goes stale; but only wall time during which
the input was *caught up* counts (`observe_progress`: every source partition had been read to
its end), never time a worker spent busy (a slow sink) or a batch spent in transit, so the
live job and a backtest over the same messages agree. In backtests only data moves time.

The buffers are mutable on purpose: they are touched once per message, and a frozen copy
per message would cost more than the whole rest of the hot path. Everything that is a
state *transition* is frozen and pure (`AlertInstance`, `step`).
"""

from __future__ import annotations

import hashlib
import math
import operator
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from rules import snapshot as snap
from rules.aggregate import aggregator, values_aggregator
from rules.alert import INACTIVE, AlertInstance, Change, ChangeKind, Policy, is_active, step
from rules.control.events import EMPTY, ControlEvent, ControlState, SilenceEvent, fold
from rules.model import (
    Aggregation,
    AlertEvent,
    AlertState,
    Metric,
    NotifyReason,
    Op,
    Rule,
    RulesError,
    RuleSet,
    series_labels,
)
from rules.suppress import STATE_OF, Silences, after_step, decide, event_id, message_id, mute_id, silences_of
from rules.template import render

__all__ = ["ShardEngine", "fingerprint", "message_id", "mute_id"]  # the ids stay importable from here

SNAPSHOT_VERSION: Final = 2
"""`snapshot`'s format: `(2, columns)` (see `snapshot`); version 1 is `(1, {instance: ...})`,
version 0 the bare dict of older jobs: both are still read."""
# A series with no sample for this long and no active alert is forgotten (memory bound).
_FORGET_AFTER_S = 24 * 3600.0
_MISSING: Any = object()
TagsKey = tuple[tuple[str, str], ...]


def fingerprint(rule_name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """Deterministic across processes and restarts (never Python's salted `hash`)."""
    text = rule_name + "\x00" + "\x00".join(f"{k}={v}" for k, v in labels)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def alert_labels(rule: Rule, metric: Metric) -> tuple[tuple[str, str], ...]:
    labels = series_labels(metric)
    del labels["metric_name"]  # implied by the rule, as `__name__` is after aggregation
    labels.update(rule.labels)
    labels["alertname"] = rule.name
    labels["severity"] = rule.severity.value
    return tuple(sorted(labels.items()))


class Binding:
    """One (rule, series) alert instance. Its labels and fingerprint are computed when first
    needed: most alert instances never leave INACTIVE, and eager identities cost ~5 KB a
    series (measured), the bulk of a million series' memory."""

    __slots__ = ("_ident", "inst", "origin", "rule")

    def __init__(self, rule: Rule, origin: Metric, inst: AlertInstance) -> None:
        self.rule = rule
        self.origin = origin  # the series' identity (shared by its bindings; value unused)
        self.inst = inst
        self._ident: tuple[tuple[tuple[str, str], ...], dict[str, str], str] | None = None

    def _identity(self) -> tuple[tuple[tuple[str, str], ...], dict[str, str], str]:
        ident = self._ident
        if ident is None:
            labels = alert_labels(self.rule, self.origin)
            ident = self._ident = (labels, dict(labels), fingerprint(self.rule.name, labels))
        return ident

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        return self._identity()[0]

    def peek_labels(self) -> tuple[tuple[str, str], ...]:
        """`labels` without keeping them (a reload compares every binding once)."""
        return self._ident[0] if self._ident is not None else alert_labels(self.rule, self.origin)

    @property
    def labels_map(self) -> dict[str, str]:
        return self._identity()[1]

    @property
    def fp(self) -> str:
        return self._identity()[2]


_CMP: Final = {
    Op.GT: operator.gt, Op.GE: operator.ge, Op.LT: operator.lt,
    Op.LE: operator.le, Op.EQ: operator.eq, Op.NE: operator.ne,
}  # fmt: skip
"""`Op.holds` as C functions: called once per rule and tick, the hottest call of evaluation."""

Member = tuple[int, Rule, Callable[[float, float], bool], float]
"""(binding index, rule, comparison, threshold)"""


def _group_fn(agg: Aggregation | None) -> tuple[bool, Callable[..., float | None] | None]:
    """(needs_ts, fn): fn of the values alone where there is one (a builtin such as `min` called
    directly), else of (ts, vs); None for no-data rules."""
    if agg is None:
        return False, None
    of_values = values_aggregator(agg)
    return (False, of_values) if of_values is not None else (True, aggregator(agg))


class Plan:
    """How a series with a given list of rules is evaluated: shared by every series whose
    metric selects the same rules (one per metric in practice), not rebuilt per series."""

    __slots__ = ("groups", "horizon", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.horizon = max(r.window_s for r in rules)
        # rules sharing a window and an aggregation share one computation per tick
        groups: dict[tuple[float, Aggregation | None], list[Member]] = {}
        for i, r in enumerate(rules):
            key = (r.window_s, None if r.no_data else r.aggregation)
            groups.setdefault(key, []).append((i, r, _CMP[r.op], r.threshold))
        # (window, needs_ts, fn, members)
        self.groups = [(w, *_group_fn(agg), tuple(ms)) for (w, agg), ms in groups.items()]


class Series:
    """Sample buffer of one series (instance, metric, tags) and the rules bound to it.

    Buffers are `array('d')`: 8 bytes a sample instead of a float object and a pointer."""

    __slots__ = ("bindings", "last_pruned", "origin", "plan", "ts", "unsorted", "vs")

    def __init__(self, origin: Metric, plan: Plan, alerts: Mapping[str, AlertInstance] | None = None) -> None:
        self.origin = origin
        self.ts = array("d")
        self.vs = array("d")
        self.unsorted = False
        self.last_pruned = -math.inf  # newest sample time already pruned from the buffer
        self.plan = plan
        if alerts:
            get = alerts.get
            self.bindings = [Binding(r, origin, get(r.name, INACTIVE)) for r in plan.rules]
        else:  # a new series: every alert instance inactive
            self.bindings = [Binding(r, origin, INACTIVE) for r in plan.rules]

    @property
    def first_ts(self) -> float:
        """The first sample's time (the origin's): no-data rules count absence from here, so
        before its first sample a series is not missing."""
        return self.origin.ts

    @property
    def metric_name(self) -> str:
        return self.origin.metric_name

    @property
    def database_type(self) -> str:
        return self.origin.database_type

    @property
    def tags(self) -> Mapping[str, str]:
        return self.origin.tags


class Instance:
    __slots__ = ("by_metric", "evaluated_until", "max_ts", "series", "traceparent", "wall_at_max")

    def __init__(self, evaluated_until: float) -> None:
        self.max_ts = -math.inf
        self.wall_at_max = 0.0
        self.evaluated_until = evaluated_until
        # newest W3C traceparent seen for this instance, stamped on its events; not snapshotted
        # (trace context, not alert state: the next message that carries one sets it again)
        self.traceparent: str | None = None
        # None marks a series no rule selects, so the check runs once per series
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], Series | None] = {}
        # metric name -> (tags, series) of its last sample: the hot path's lookup compares
        # tag dicts (one C call) instead of building the sorted key of `series` per message.
        # A cache only: cleared whenever `series` loses an entry or is rebound.
        self.by_metric: dict[str, tuple[Mapping[str, str], Series | None]] = {}


@dataclass(slots=True)
class EngineStats:
    samples: int = 0
    late: int = 0
    evaluations: int = 0
    events: int = 0


class ShardEngine:
    def __init__(
        self,
        ruleset: RuleSet,
        *,
        live: bool = False,
        await_control: bool = False,
        control: ControlState = EMPTY,
    ) -> None:
        self.live = live
        self.interval = ruleset.eval_interval_s
        self.lateness = ruleset.allowed_lateness_s
        self.instances: dict[str, Instance] = {}
        self.stats = EngineStats()
        # source partition -> wall time it was last read to its end (SourceProgress markers)
        self.progress: dict[str, float] = {}
        self.parts_total = 0
        self.caught_up = -math.inf
        # `advance_idle`'s instances due at `_idle_at`, from `_idle_next` on still to age
        self._idle_due: list[str] = []
        self._idle_next = 0
        self._idle_at = -math.inf
        # the control plane (silences); `holding` until every control partition caught up
        self.control = control
        self.holding = await_control
        self._control_parts: set[str] = set()
        self._control_total = 0
        # one canonical (key, dict) per distinct tag set: series share them (memory per series)
        self._tags: dict[
            tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str], ...], Mapping[str, str]]
        ] = {}
        self._set_rules(ruleset)

    def _set_rules(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.policy = Policy(ruleset.flap_window_s, ruleset.flap_threshold)
        # critical first, so inhibition sees a source fire in the same tick as its target
        self.rules = sorted(ruleset.rules, key=lambda r: -r.severity.rank)
        self.rules_by_metric: dict[str, list[Rule]] = {}
        for r in self.rules:
            self.rules_by_metric.setdefault(r.metric, []).append(r)
        self._plans: dict[tuple[int, ...], Plan] = {}
        # (metric, database type) -> the plan of its series (None: no rule selects them), for
        # metrics whose rules select by name and database type alone (no label matchers): a new
        # series is mostly one more of a known kind, and its rules are then one lookup, not a
        # `selects` per rule and a plan key (issue 16: at a million series, creating them is
        # most of the difference to the 10k figure)
        self._kinds: dict[tuple[str, str], Plan | None] = {}
        self._kind_metrics = {
            name for name, rules in self.rules_by_metric.items() if not any(r.matchers for r in rules)
        }
        self._set_silences()

    def _set_silences(self) -> None:
        self.silences: Silences = silences_of(self.ruleset.silences, self.control)

    # -- control plane ----------------------------------------------------------------
    def apply_control(self, event: ControlEvent) -> None:
        """Fold a control event (`rules.control.events.fold`); silences apply from the next tick
        on, by event time. Acknowledgements and rule-set events change nothing here."""
        if not isinstance(event, SilenceEvent):
            return
        state = fold(self.control, event)
        if state is not self.control:
            self.control = state
            self._set_silences()

    def control_caught_up(self, part: str, parts: int) -> list[AlertEvent]:
        """Control partition `part` (of `parts`) was read to where it ended at start; once all
        were, the held ticks are evaluated (with every silence known) and the events returned."""
        self._control_parts.add(part)
        self._control_total = max(self._control_total, parts)
        if not self.holding or len(self._control_parts) < self._control_total:
            return []
        self.holding = False
        out: list[AlertEvent] = []
        for iid, inst in list(self.instances.items()):
            self._advance(iid, inst, inst.max_ts - self.lateness, out)
        return out

    def reload(self, ruleset: RuleSet) -> list[AlertEvent]:
        """Switch to `ruleset` without a restart: series are rebound to the new rules, and the
        alert state of every rule kept (same name, same alert labels, so the same fingerprint)
        goes on: an unchanged firing alert is not notified again.

        A firing alert whose rule is gone (or whose labels changed: it is another alert now) is
        resolved at its instance's last evaluated tick, announced as any RESOLVED of an announced
        alert, so nobody is left with an open incident. Settings that shape ticks (evaluation
        interval, allowed lateness) cannot change live: `RulesError`, restart to apply.
        """
        if ruleset.eval_interval_s != self.interval or ruleset.allowed_lateness_s != self.lateness:
            raise RulesError(
                "evaluation_interval and allowed_lateness cannot change in a running job: restart to apply"
            )
        self._set_rules(ruleset)
        out: list[AlertEvent] = []
        for inst in list(self.instances.values()):
            inst.by_metric.clear()  # series are rebound below
            ended: list[tuple[Binding, Change, AlertInstance, float]] = []
            at = inst.evaluated_until
            for key, old in list(inst.series.items()):
                if old is None:
                    del inst.series[key]  # its next sample checks the new rules
                    continue
                m = old.origin
                plan = self._select(m)
                before = {b.rule.name: b for b in old.bindings}
                s = Series(m, plan) if plan is not None else None
                for b in s.bindings if s is not None else ():
                    prev = before.get(b.rule.name)
                    # same name and alert labels: the same alert goes on (labels compared without
                    # caching them on every binding of a large shard)
                    if prev is not None and prev.peek_labels() == alert_labels(b.rule, m):
                        del before[b.rule.name]
                        b.inst = prev.inst
                for b in before.values():  # rules gone (or now another alert)
                    if b.inst.state is AlertState.FIRING:
                        prev_inst = b.inst
                        b.inst = replace(prev_inst, state=AlertState.RESOLVED, resolved_at=at, muted=None)
                        ended.append((b, Change(ChangeKind.RESOLVED, at, NotifyReason.RESOLVED), prev_inst,
                                      prev_inst.value))  # fmt: skip
                inst.series[key] = s
                if s is not None:
                    s.ts, s.vs, s.unsorted, s.last_pruned = old.ts, old.vs, old.unsorted, old.last_pruned
            if ended:
                self._emit(inst, ended, out)
        return out

    # -- ingest ---------------------------------------------------------------------
    def ingest(
        self,
        metrics: Iterable[Metric],
        wall: float = 0.0,
        traceparents: Mapping[str, str] | None = None,
    ) -> list[AlertEvent]:
        """Buffer a batch of samples, then evaluate every tick their watermarks closed.

        `traceparents` ({instance_id: W3C traceparent}, only for instances whose messages in
        this batch carried one, the newest each) replaces each instance's trace context before
        evaluation, so the events of this batch carry it.
        """
        if not isinstance(metrics, list):
            metrics = list(metrics)
        instances = self.instances
        touched: dict[str, Instance] = {}
        late = 0
        for m in metrics:
            ts, _, iid, name, value, tags = m
            inst = instances.get(iid)
            if inst is None:
                inst = self._new_instance(m)
            if ts <= inst.evaluated_until:
                late += 1
                continue
            if ts > inst.max_ts:
                inst.max_ts = ts
            touched[iid] = inst
            hit = inst.by_metric.get(name)
            if hit is not None and hit[0] == tags:
                s = hit[1]
            else:
                s = self._lookup(inst, m)
            if s is None:
                continue
            buf = s.ts
            if buf and ts < buf[-1]:
                s.unsorted = True
            buf.append(ts)
            s.vs.append(value)
        self.stats.late += late
        self.stats.samples += len(metrics) - late
        if traceparents:  # per batch, and only when some message carried trace context
            for iid, tp in traceparents.items():
                inst = instances.get(iid)
                if inst is not None:
                    inst.traceparent = tp
        out: list[AlertEvent] = []
        for iid, inst in touched.items():
            inst.wall_at_max = wall
            if not self.holding:
                self._advance(iid, inst, inst.max_ts - self.lateness, out)
        return out

    def observe_progress(self, part: str, caught_up_at: float, parts: int) -> bool:
        """Record a source partition's progress; True when the whole input's caught-up time
        (the oldest over all `parts` partitions) moved forward."""
        if caught_up_at > self.progress.get(part, -math.inf) or part not in self.progress:
            self.progress[part] = caught_up_at
        self.parts_total = max(self.parts_total, parts)
        if len(self.progress) < self.parts_total:
            return False  # not heard from every partition yet: no evidence of quiet
        oldest = min(self.progress.values())
        if oldest > self.caught_up:
            self.caught_up = oldest
            return True
        return False

    def advance_idle(
        self, caught_up: float, deadline: float = math.inf, clock: Callable[[], float] | None = None
    ) -> list[AlertEvent]:
        """Live only: let wall time move the watermark of instances that went quiet.

        `caught_up` is the wall time up to which every input partition had been read: an
        instance silent since before then really sent nothing, so that much wall time ages it.

        With a `deadline` on `clock`, it stops once the clock passed it (after at least one
        instance) and `idle_pending` is true: the next call carries on with the instances left
        (each checked again: its own samples may have advanced it since), unless `caught_up`
        moved, which scans afresh. Aging is bursty: when wall time crosses a tick, most
        instances of every shard fall due at the same marker, and evaluating them all at once
        held the worker (and every message behind it) for a quarter of a second a tick in
        bench/delivery.py. A caller that slices it lets the source and the sinks run between.
        """
        out: list[AlertEvent] = []
        if self.holding:
            return out
        lateness, interval = self.lateness, self.interval
        instances = self.instances
        due = self._idle_due
        if self._idle_next >= len(due) or caught_up != self._idle_at:
            # one comparison per instance, `_advance` only for those whose watermark crosses a
            # tick. An instance sampled since `caught_up` gains no wall time (its ingest
            # advanced it to its own watermark already).
            due = self._idle_due = [
                iid
                for iid, inst in instances.items()
                if caught_up > inst.wall_at_max
                and inst.max_ts - lateness + (caught_up - inst.wall_at_max) >= inst.evaluated_until + interval
            ]
            self._idle_at = caught_up
            self._idle_next = 0
        i = self._idle_next
        while i < len(due):
            iid = due[i]
            i += 1
            inst = instances.get(iid)  # `_advance` may have forgotten it
            if inst is not None:
                wm = inst.max_ts - lateness + (caught_up - inst.wall_at_max)
                if caught_up > inst.wall_at_max and wm >= inst.evaluated_until + interval:
                    self._advance(iid, inst, wm, out)
            if clock is not None and clock() >= deadline:
                break
        if i < len(due):
            self._idle_next = i
        else:
            self._idle_due, self._idle_next = [], 0
        return out

    @property
    def idle_pending(self) -> bool:
        """`advance_idle` stopped at its deadline with instances left to age."""
        return self._idle_next < len(self._idle_due)

    def next_wake(self) -> float | None:
        """Wall time at which `advance_idle` would evaluate a new tick somewhere."""
        if not self.live or not self.instances:
            return None
        return min(
            inst.wall_at_max + (inst.evaluated_until + self.interval + self.lateness - inst.max_ts)
            for inst in self.instances.values()
        )

    def advance_to(self, wm: float) -> list[AlertEvent]:
        """Evaluate every instance up to event time `wm` (rule unit tests)."""
        out: list[AlertEvent] = []
        for iid, inst in list(self.instances.items()):
            self._advance(iid, inst, wm, out)
        return out

    def flush(self) -> list[AlertEvent]:
        """End of a bounded input: evaluate every tick up to the newest sample."""
        self.holding = False
        out: list[AlertEvent] = []
        for iid, inst in list(self.instances.items()):
            self._advance(iid, inst, inst.max_ts, out)
        return out

    def bindings(self) -> list[Binding]:
        """Every alert instance of this shard (rule unit tests, state-size benchmarks)."""
        return [
            b
            for inst in self.instances.values()
            for s in inst.series.values()
            if s is not None
            for b in s.bindings
        ]

    # -- evaluation -----------------------------------------------------------------
    def _new_instance(self, m: Metric) -> Instance:
        # the last tick strictly before the first sample's watermark: that sample is never late
        first_tick = math.ceil((m.ts - self.lateness) / self.interval) * self.interval - self.interval
        inst = self.instances[sys.intern(m.instance_id)] = Instance(first_tick)
        return inst

    def _lookup(self, inst: Instance, m: Metric) -> Series | None:
        """The series of `m` by its full key (a new one if needed), remembered as its metric's
        last series for the next message's fast lookup."""
        tags_key, tags = self._canonical_tags(m.tags)
        key = (m.metric_name, tags_key)
        s = inst.series.get(key, _MISSING)
        if s is _MISSING:
            s = inst.series[key] = self._new_series(m, tags=tags)
        inst.by_metric[m.metric_name] = (tags, s)
        return s

    def _canonical_tags(self, tags: Mapping[str, str] | None) -> tuple[TagsKey, Mapping[str, str]]:
        items = tuple(sorted(tags.items())) if tags else ()
        canon = self._tags.get(items)
        if canon is None:
            canon = self._tags[items] = (items, dict(items))
        return canon

    def _plan(self, rules: Sequence[Rule]) -> Plan:
        key = tuple(map(id, rules))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(rules)
        return plan

    def _select(self, m: Metric) -> Plan | None:
        """The plan of the rules that select `m`'s series, None if none does."""
        rules = [r for r in self.rules_by_metric.get(m.metric_name, ()) if r.selects(m)]
        return self._plan(rules) if rules else None

    def _new_series(
        self,
        m: Metric,
        old: Mapping[str, AlertInstance] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Series | None:
        """`tags`: `m`'s canonical tags when the caller has them already."""
        name = m.metric_name
        if name in self._kind_metrics:
            kind = (name, m.database_type)
            plan = self._kinds.get(kind, _MISSING)
            if plan is _MISSING:
                plan = self._kinds[kind] = self._select(m)
        else:
            plan = self._select(m)
        if plan is None:
            return None
        # strings interned and tags canonical: a series holds no copy of its own
        origin = Metric(
            m.ts,
            sys.intern(m.database_type),
            sys.intern(m.instance_id),
            sys.intern(name),
            0.0,
            self._canonical_tags(m.tags)[1] if tags is None else tags,
        )
        return Series(origin, plan, old)

    def _advance(self, iid: str, inst: Instance, wm: float, out: list[AlertEvent]) -> None:
        interval = self.interval
        tick = inst.evaluated_until + interval
        if tick > wm:
            return
        last_tick = math.floor(wm / interval) * interval
        while tick <= last_tick:
            tick = self._skip_quiet(inst, tick, last_tick)
            if tick > last_tick:
                break
            self._evaluate(inst, tick, out)
            tick += interval
        inst.evaluated_until = last_tick
        self._prune(iid, inst, last_tick)

    def _skip_quiet(self, inst: Instance, tick: float, last_tick: float) -> float:
        """Jump over ticks where nothing can change: no buffered sample, nothing active."""
        earliest = math.inf
        for s in inst.series.values():
            if s is not None and s.ts:
                first = s.ts[0] if not s.unsorted else min(s.ts)
                if first <= tick:  # the common case: a sample is due at this tick already
                    return tick
                earliest = min(earliest, first)
        for s in inst.series.values():
            if s is None:
                continue
            for b in s.bindings:
                state = b.inst.state
                if state is AlertState.PENDING or state is AlertState.FIRING or b.rule.no_data:
                    return tick
        if earliest == math.inf:
            return last_tick + self.interval
        first_useful = math.ceil(earliest / self.interval) * self.interval
        return max(tick, first_useful)

    def _evaluate(self, inst: Instance, tick: float, out: list[AlertEvent]) -> None:
        self.stats.evaluations += 1
        staleness = self.ruleset.staleness_s
        silences, policy = self.silences, self.policy
        produced: list[tuple[Binding, Change, AlertInstance, float]] = []
        for s in inst.series.values():
            if s is None:
                continue
            if s.unsorted:
                pairs = sorted(zip(s.ts, s.vs, strict=True))
                s.ts = array("d", [p[0] for p in pairs])
                s.vs = array("d", [p[1] for p in pairs])
                s.unsorted = False
            ts, vs = s.ts, s.vs
            hi = bisect_right(ts, tick)
            newest = ts[hi - 1] if hi else s.last_pruned
            stale = tick - newest >= staleness
            bindings = s.bindings
            # consecutive groups of one window (a metric's rules, mostly) share its bounds and
            # its slice of values: one bisect and one copy per window, not per aggregation
            window_vs: Sequence[float] = vs
            at_window, lo = -1.0, 0
            for window, needs_ts, fn, members in s.plan.groups:
                if window != at_window:
                    at_window, lo, window_vs = window, bisect_right(ts, tick - window, 0, hi), vs
                if fn is None:  # no-data rules: the condition is an empty window
                    holds_all: bool | None = lo == hi if tick >= s.first_ts else None
                    value = float(hi - lo)
                elif hi > lo:
                    if window_vs is vs:
                        # a list: min, max, fsum and sorted then read the same float objects
                        # instead of boxing every value of an array('d') again for each
                        # aggregation (60-sample windows: 8-13 % of the engine's time)
                        window_vs = vs[lo:hi].tolist()
                    got = fn(ts[lo:hi], window_vs) if needs_ts else fn(window_vs)
                    holds_all, value = None, math.nan if got is None else got
                else:
                    holds_all, value = None, math.nan
                for i, rule, cmp, threshold in members:
                    b = bindings[i]
                    if fn is None or value != value:  # NaN: nothing to compare
                        holds = holds_all
                    else:
                        holds = cmp(value, threshold)
                    prev = b.inst
                    if not holds and (prev.state is AlertState.INACTIVE or prev.state is AlertState.RESOLVED):
                        continue  # the common case; `step` would return it unchanged
                    nxt, changes = step(
                        prev, holds, value, tick, rule, self.policy, stale=stale and fn is not None
                    )
                    if nxt.state is AlertState.FIRING or changes:
                        # silences mute an announced alert, or let a held-back one go (rules.suppress)
                        nxt, shown = after_step(nxt, changes, tick, b.labels_map, silences, policy)
                        for c in shown:
                            produced.append((b, c, prev, value))
                    b.inst = nxt
        if produced:
            self._emit(inst, produced, out)

    def _emit(
        self,
        inst: Instance,
        produced: list[tuple[Binding, Change, AlertInstance, float]],
        out: list[AlertEvent],
    ) -> None:
        firing = [
            b
            for s in inst.series.values()
            if s is not None
            for b in s.bindings
            if b.inst.state is AlertState.FIRING
        ]
        emitted_before = len(out)
        sources = [f.labels_map for f in firing]
        for b, c, prev, value in produced:
            rule = b.rule
            b.inst, suppressed, record = decide(
                c, prev, b.inst, b.labels_map, self.silences, self.ruleset.inhibit_rules, sources
            )
            if not record:
                continue
            cur = b.inst
            state = STATE_OF[c.kind]
            active_at = prev.active_at if c.kind is ChangeKind.DROPPED else cur.active_at
            shown = cur.value if math.isnan(value) and not c.stale else value
            annotations = tuple(
                (k, render(t, b.labels_map, shown, rule.threshold)) for k, t in rule.annotations
            )
            out.append(
                AlertEvent(
                    alert_name=rule.name,
                    fingerprint=b.fp,
                    state=state,
                    at=c.at,
                    active_at=active_at,
                    fired_at=cur.fired_at if c.kind is not ChangeKind.DROPPED else None,
                    resolved_at=cur.resolved_at if c.kind is ChangeKind.RESOLVED else None,
                    value=shown,
                    threshold=rule.threshold,
                    severity=rule.severity,
                    labels=b.labels,
                    annotations=annotations,
                    runbook_url=render(rule.runbook_url, b.labels_map, shown, rule.threshold),
                    dashboard_url=render(rule.dashboard_url, b.labels_map, shown, rule.threshold),
                    fire_count=cur.fire_count,
                    message_id=event_id(b.fp, c, active_at, cur),
                    notify=c.notify,
                    suppressed=suppressed,
                    stale=c.stale,
                    traceparent=inst.traceparent,
                )
            )
        self.stats.events += len(out) - emitted_before

    def _prune(self, iid: str, inst: Instance, tick: float) -> None:
        dead = []
        for key, s in inst.series.items():
            if s is None:
                continue
            cut = bisect_right(s.ts, tick - s.plan.horizon)
            if cut:
                s.last_pruned = s.ts[cut - 1]
                del s.ts[:cut]
                del s.vs[:cut]
            if (
                not s.ts
                and tick - s.last_pruned >= _FORGET_AFTER_S
                and not any(is_active(b.inst) for b in s.bindings)
            ):
                dead.append(key)
        for key in dead:
            del inst.series[key]
        if dead:
            inst.by_metric.clear()
        if dead and all(s is None for s in inst.series.values()):
            del self.instances[iid]

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Pickled and versioned (`SNAPSHOT_VERSION`), so the runtime gets an immutable copy;
        rules are stored by name.

        Version 2 is columnar: one list or array per field over every series of the shard, the
        sample buffers concatenated, and only the alert instances that are not INACTIVE (what a
        restore assumes for a rule with no entry). Bytewax snapshots every shard at every epoch:
        a tuple per series cost ~7 us a series (seconds per epoch at a million series)."""
        iids: list[str] = []
        marks = array("d")  # max_ts, evaluated_until per instance
        per_instance = array("q")  # series per instance
        names: list[str] = []
        dbts: list[str] = []
        tags: list[Mapping[str, str]] = []  # shared dicts: pickled once each, then referenced
        counts = array("q")
        edges = array("d")  # first_ts, last_pruned per series
        ts = array("d")
        vs = array("d")
        alerts: dict[int, dict[str, AlertInstance]] = {}
        i = 0
        for iid, inst in self.instances.items():
            iids.append(iid)
            marks.append(inst.max_ts)
            marks.append(inst.evaluated_until)
            before = i
            for s in inst.series.values():
                if s is None:
                    continue
                o = s.origin
                names.append(o.metric_name)
                dbts.append(o.database_type)
                tags.append(o.tags)
                counts.append(len(s.ts))
                edges.append(s.first_ts)
                edges.append(s.last_pruned)
                ts += s.ts
                vs += s.vs
                for bnd in s.bindings:
                    if bnd.inst is not INACTIVE:
                        alerts.setdefault(i, {})[bnd.rule.name] = bnd.inst
                i += 1
            per_instance.append(i - before)
        data = (iids, marks, per_instance, names, dbts, tags, counts, edges, ts, vs, alerts)
        return snap.dump(SNAPSHOT_VERSION, data)

    def restore(self, blob: bytes, wall: float = 0.0) -> None:
        """Rebind restored series to the current rules: changed rule files take effect.

        Reads this version, version 1 (a dict of instances holding a tuple per series) and the
        unversioned dict written before (version 0, same layout as 1); refuses any other with
        `SnapshotError`, which says what to do.
        """
        version, data = snap.load(blob, "alert engine", (0, 1, SNAPSHOT_VERSION), unversioned=dict)
        if version < 2:
            self._restore_v1(data, wall)
            return
        iids, marks, per_instance, names, dbts, tags, counts, edges, ts, vs, alerts = data
        i = 0
        at = 0
        for j, iid in enumerate(iids):
            inst = Instance(marks[2 * j + 1])
            inst.max_ts = marks[2 * j]
            inst.wall_at_max = wall
            for _ in range(per_instance[j]):
                n = counts[i]
                found = alerts.get(i)
                self._restore_series(
                    inst, iid, names[i], dbts[i], tags[i], ts[at : at + n], vs[at : at + n],
                    edges[2 * i], edges[2 * i + 1], found,
                )  # fmt: skip
                at += n
                i += 1
            self.instances[iid] = inst

    def _restore_v1(self, data: dict[str, Any], wall: float) -> None:
        for iid, (max_ts, evaluated_until, series) in data.items():
            inst = Instance(evaluated_until)
            inst.max_ts = max_ts
            inst.wall_at_max = wall
            for name, dbt, tags, ts, vs, last_pruned, alerts, *rest in series:
                # snapshots taken before `first_ts` existed: absence counts as it did then
                first_ts = rest[0] if rest else -math.inf
                self._restore_series(inst, iid, name, dbt, tags, ts, vs, first_ts, last_pruned, alerts)
            self.instances[iid] = inst

    def _restore_series(
        self,
        inst: Instance,
        iid: str,
        name: str,
        dbt: str,
        tags: Mapping[str, str],
        ts: Sequence[float],
        vs: Sequence[float],
        first_ts: float,
        last_pruned: float,
        alerts: Mapping[str, AlertInstance] | None,
    ) -> None:
        m = Metric(first_ts, dbt, iid, name, 0.0, tags)
        s = self._new_series(m, {k: _upgrade(a) for k, a in alerts.items()} if alerts else None)
        inst.series[(name, self._canonical_tags(tags)[0])] = s
        if s is not None:  # version 1 held lists: both read
            s.ts, s.vs, s.last_pruned = array("d", ts), array("d", vs), last_pruned


def _upgrade(a: AlertInstance) -> AlertInstance:
    """An `AlertInstance` unpickled from an older snapshot lacks the newer fields (a frozen
    slots dataclass unpickles field by field: the missing trailing ones stay unset)."""
    try:
        a.muted  # noqa: B018 - the probe is the point (the newest field)
        return a
    except AttributeError:
        values = {f: getattr(a, f) for f in AlertInstance.__dataclass_fields__ if hasattr(a, f)}
        # firing before `announced` existed: it was announced then, so its resolution is too
        values.setdefault("announced", a.state is AlertState.FIRING)
        return AlertInstance(**values)  # `muted`: None, nothing muted it before silences could
