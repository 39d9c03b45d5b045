"""One evaluation of a Prometheus rule group at time t, as Prometheus' rules/group.go does it. Pure
apart from the store it is given (time is passed in).

Rules run in file order. A recording rule's result is written into the store at t (`__name__`
set to the rule's name, its labels applied) before the next rule reads it, and a series it wrote
at the previous evaluation but not now gets a staleness marker, as Prometheus writes one, so an
instant selector stops seeing it at once. An alerting rule's result vector is its set of active
alerts: a sample present is a condition that holds, absent is false (Prometheus has no "no
evidence"). Each alert instance (its label set: the sample's labels minus `__name__`, the rule's
labels rendered as templates, `alertname`) goes through `rules.alert.step`: pending at its first
evaluation, firing once `for` has elapsed (at once without `for`), a pending one that disappears
is dropped, a firing one resolves, `keep_firing_for` after it first disappeared. `ALERTS{alertname,
alertstate, ...}` = 1 is written for pending and firing alerts, as Prometheus does, so rules and
promtool's `promql_expr_test` can read it.

Transitions become `AlertEvent`s exactly as `rules.engine` builds them (fingerprint of
(alertname, labels), message_id of (fingerprint, active_at, state, repeat)), annotations rendered
with `rules.promql.gotemplate` from the sample's labels and value, so the alerts topic, delivery
and storage take them unchanged. `threshold` is the number a top-level comparison compares with
(`x > 80`: 80), NaN when there is none. Silences and inhibit rules (`suppress`) apply as in the
seed engine (`rules.suppress`, by the evaluation time): an announced firing alert a silence
starts to match is recorded once as muted, its repeats suppressed, and it is announced again
(`unsuppressed`) when the silence ends; inhibition sees the group's alerts firing after this
evaluation (a group is one worker's: sources in other groups do not inhibit). Flap suppression is
not applied; repeats follow the seed default (4h).

A rule whose evaluation fails (many-to-many matching, duplicate label sets after its labels are
applied) leaves its alerts and written series as they were, as in Prometheus, and says why in
`GroupState.errors`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from rules.alert import INACTIVE, AlertInstance, Change, ChangeKind, Policy, step
from rules.engine import fingerprint
from rules.model import AlertEvent, AlertState, Matcher, NotifyReason, Op, Rule, Severity, Suppression
from rules.promql import ast
from rules.promql.eval import STALE_NAN, Evaluator, Labels, PromqlEvalError, Sample, SeriesData, Store
from rules.promql.rulefile import AlertingRule, RecordingRule, RuleGroup
from rules.suppress import NOTHING, STATE_OF, Suppressor, after_step, decide, event_id

NAME = "__name__"
RESOLVED_RETENTION_S = 15 * 60.0
"""How long a resolved alert is kept (Prometheus' resolvedRetention): a new incident of the same
labels within it continues its fire count."""
REPEAT_INTERVAL_S = 4 * 3600.0
_POLICY = Policy()


class WritableStore(Store, Protocol):
    def append(self, labels: Labels, t: float, value: float) -> None:
        """Add a sample (a later one for the same time replaces it)."""
        ...


class MemoryStore:
    """Series in memory, by metric name; bounded by `prune`. A `WritableStore`."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[Labels, tuple[list[float], list[float]]]] = {}

    def append(self, labels: Labels, t: float, value: float) -> None:
        name = dict(labels).get(NAME, "")
        ts, vs = self._by_name.setdefault(name, {}).setdefault(labels, ([], []))
        if not ts or t > ts[-1]:
            ts.append(t)
            vs.append(value)
            return
        i = bisect.bisect_left(ts, t)  # out of order (several partitions): keep the series sorted
        if i < len(ts) and ts[i] == t:
            vs[i] = value
        else:
            ts.insert(i, t)
            vs.insert(i, value)

    def select(self, name: str | None, matchers: tuple[Matcher, ...]) -> Iterable[SeriesData]:
        groups = [self._by_name.get(name, {})] if name is not None else list(self._by_name.values())
        for series in groups:
            for labels, (ts, vs) in series.items():
                if matchers:
                    d = dict(labels)
                    if not all(m.matches(d) for m in matchers):
                        continue
                yield SeriesData(labels, ts, vs)

    def prune(self, before_t: float) -> None:
        """Forget samples older than `before_t`, and series left empty."""
        for name in list(self._by_name):
            series = self._by_name[name]
            for labels in list(series):
                ts, vs = series[labels]
                cut = bisect.bisect_left(ts, before_t)
                if cut:
                    del ts[:cut]
                    del vs[:cut]
                if not ts:
                    del series[labels]
            if not series:
                del self._by_name[name]

    def __len__(self) -> int:
        return sum(len(ts) for s in self._by_name.values() for ts, _ in s.values())


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance of a rule: its state and what its events show."""

    rule: str
    index: int  # the rule's position in its group: two rules may share an alert name
    inst: AlertInstance
    sample_labels: Labels = ()  # the result sample's labels, for templates
    annotations: Labels = ()  # rendered at the last evaluation it was present


@dataclass(frozen=True, slots=True)
class GroupState:
    """Everything a group carries from one evaluation to the next. Never mutated: each
    evaluation returns a new one (the mappings are copied, not changed)."""

    alerts: Mapping[Labels, Alert] = field(default_factory=dict)  # by alert label set
    written: Mapping[int, frozenset[Labels]] = field(default_factory=dict)  # rule index -> series
    errors: tuple[tuple[str, str], ...] = ()  # (rule, why) of the last evaluation
    last_t: float | None = None


EvaluatorFactory = Callable[[Store], Evaluator]


def threshold_of(expr: ast.Expr) -> float:
    """The number a top-level comparison compares with, NaN when there is none."""
    if isinstance(expr, ast.Binary) and expr.op in ast.COMPARISONS:
        if isinstance(expr.rhs, ast.Number):
            return expr.rhs.value
        if isinstance(expr.lhs, ast.Number):
            return expr.lhs.value
    return math.nan


def _as_vector(result: list[Sample] | float, t: float) -> list[Sample]:
    # Prometheus' rule query turns a scalar into one sample without labels
    return [Sample((), result)] if isinstance(result, float) else result


def _with(labels: Labels, extra: Mapping[str, str], drop: str | None = None) -> Labels:
    d = {k: v for k, v in labels if k != drop}
    for k, v in extra.items():
        if v == "":
            d.pop(k, None)  # an empty label is no label
        else:
            d[k] = v
    return tuple(sorted(d.items()))


def _record(
    i: int, rule: RecordingRule, vec: list[Sample], t: float, store: WritableStore, state: GroupState
) -> tuple[list[Sample], frozenset[Labels]]:
    out: list[Sample] = []
    seen: set[Labels] = set()
    extra = {**dict(rule.labels), NAME: rule.name}
    for s in vec:
        labels = _with(s.labels, extra)
        if labels in seen:
            raise PromqlEvalError("vector contains metrics with the same labelset after applying rule labels")
        seen.add(labels)
        out.append(Sample(labels, s.value))
    for s in out:
        store.append(s.labels, t, s.value)
    for gone in state.written.get(i, frozenset()) - seen:
        store.append(gone, t, STALE_NAN)
    return out, frozenset(seen)


def _alert_rule(rule: AlertingRule) -> Rule:
    """The `rules.model.Rule` that `rules.alert.step` reads its durations from."""
    return Rule(
        name=rule.name,
        metric="",
        op=Op.GT,
        threshold=math.nan,
        for_s=rule.for_s,
        keep_firing_for_s=rule.keep_firing_for_s,
        repeat_interval_s=REPEAT_INTERVAL_S,
    )


def _event(
    rule: AlertingRule,
    labels: Labels,
    a: Alert,
    prev: AlertInstance,
    c: Change,
    threshold: float,
    suppressed: Suppression | None,
) -> AlertEvent:
    cur = a.inst
    fp = fingerprint(rule.name, labels)
    state = STATE_OF[c.kind]
    active_at = prev.active_at if c.kind is ChangeKind.DROPPED else cur.active_at
    ann = dict(a.annotations)
    return AlertEvent(
        alert_name=rule.name,
        fingerprint=fp,
        state=state,
        at=c.at,
        active_at=active_at,
        fired_at=cur.fired_at if c.kind is not ChangeKind.DROPPED else None,
        resolved_at=cur.resolved_at if c.kind is ChangeKind.RESOLVED else None,
        value=cur.value,
        threshold=threshold,
        severity=Severity(dict(labels).get("severity") or "warning"),
        labels=labels,
        annotations=a.annotations,
        runbook_url=ann.get("runbook_url", ""),
        dashboard_url=ann.get("dashboard_url", ""),
        fire_count=cur.fire_count,
        message_id=event_id(fp, c, active_at, cur),
        notify=c.notify,
        suppressed=suppressed,
    )


Produced = tuple[int, Labels, AlertInstance, Change, Alert]
"""(rule index, alert labels, the instance before this evaluation, a change, the alert after the
step: a dropped one is no longer in the state, but its event needs it): decided and turned
into an event once every rule of the group ran (inhibition sees the whole group)."""


def _alerting(
    index: int,
    rule: AlertingRule,
    vec: list[Sample],
    t: float,
    alerts: dict[Labels, Alert],
    external_labels: Mapping[str, str],
    suppress: Suppressor,
) -> list[Produced]:
    """Advance `rule`'s alerts (in `alerts`, changed in place: the caller's copy) to `t`."""
    present: dict[Labels, tuple[Sample, Labels]] = {}
    for s in vec:
        sample_labels = dict(s.labels)
        extra = {k: tmpl.render(sample_labels, s.value, external_labels) for k, tmpl in rule.label_templates}
        extra["alertname"] = rule.name
        labels = _with(s.labels, extra, drop=NAME)
        if labels in present:
            raise PromqlEvalError(
                "vector contains metrics with the same labelset after applying alert labels"
            )
        annotations = tuple(
            (k, tmpl.render(sample_labels, s.value, external_labels)) for k, tmpl in rule.annotation_templates
        )
        present[labels] = (s, annotations)
    shim = _alert_rule(rule)
    produced: list[Produced] = []
    for labels in [*present, *(k for k, a in alerts.items() if a.index == index and k not in present)]:
        old = alerts.get(labels)
        prev = old.inst if old is not None else INACTIVE
        hit = present.get(labels)
        if hit is None:
            if prev.state in (AlertState.INACTIVE, AlertState.RESOLVED):
                if (
                    old is not None
                    and prev.resolved_at is not None
                    and t - prev.resolved_at > RESOLVED_RETENTION_S
                ):
                    del alerts[labels]
                continue
            inst, changes = step(prev, False, prev.value, t, shim, _POLICY)
            a = replace(old, inst=inst) if old is not None else Alert(rule.name, index, inst)
        else:
            s, annotations = hit
            inst, changes = step(prev, True, s.value, t, shim, _POLICY)
            a = Alert(rule.name, index, inst, s.labels, annotations)
        if inst.state is AlertState.FIRING or changes:
            # silences mute an announced alert or let a held-back one go (rules.suppress)
            inst, shown = after_step(inst, changes, t, dict(labels), suppress.silences, _POLICY)
            a = replace(a, inst=inst)
            produced.extend((index, labels, prev, c, a) for c in shown)
        if a.inst.state is AlertState.INACTIVE:
            alerts.pop(labels, None)  # a dropped pending alert is forgotten, as in Prometheus
        else:
            alerts[labels] = a
    return produced


def _decide(
    group: RuleGroup, produced: list[Produced], alerts: dict[Labels, Alert], suppress: Suppressor
) -> list[AlertEvent]:
    """Events of this evaluation's changes, each suppressed or announced (in `alerts`)."""
    maps = {labels: dict(labels) for labels, a in alerts.items() if a.inst.state is AlertState.FIRING}
    firing = list(maps.values())
    events: list[AlertEvent] = []
    for index, labels, prev, c, stepped in produced:
        rule = group.rules[index]
        assert isinstance(rule, AlertingRule)
        a = alerts.get(labels, stepped)  # (the state's holds this evaluation's announcements)
        d = maps.get(labels) or dict(labels)
        inst, suppressed, record = decide(
            c, prev, a.inst, d, suppress.silences, suppress.inhibit_rules, firing, flapping=False
        )
        if inst is not a.inst and labels in alerts:
            a = alerts[labels] = replace(a, inst=inst)
        if record:
            events.append(_event(rule, labels, a, prev, c, threshold_of(rule.expr), suppressed))
    return events


def _write_alerts(
    i: int,
    rule: AlertingRule,
    alerts: Mapping[Labels, Alert],
    t: float,
    store: WritableStore,
    state: GroupState,
) -> frozenset[Labels]:
    """`ALERTS{alertname, alertstate, ...}` = 1 for the rule's pending and firing alerts."""
    written: set[Labels] = set()
    for labels, a in alerts.items():
        if a.index != i or a.inst.state not in (AlertState.PENDING, AlertState.FIRING):
            continue
        series = _with(labels, {NAME: "ALERTS", "alertstate": a.inst.state.value})
        store.append(series, t, 1.0)
        written.add(series)
    for gone in state.written.get(i, frozenset()) - written:
        store.append(gone, t, STALE_NAN)
    return frozenset(written)


def evaluate_group(
    group: RuleGroup,
    state: GroupState,
    t: float,
    store: WritableStore,
    evaluator_factory: EvaluatorFactory,
    *,
    external_labels: Mapping[str, str] | None = None,
    suppress: Suppressor = NOTHING,
) -> tuple[GroupState, list[Sample], list[AlertEvent]]:
    """Evaluate every rule of `group` at `t`, in order (module docstring); `suppress`: the
    silences and inhibit rules in force.

    Returns the new state, the recording rules' samples (also written into `store` at `t`) and
    the alert events of this evaluation.
    """
    evaluator = evaluator_factory(store)
    ext = external_labels or {}
    alerts = dict(state.alerts)
    written = dict(state.written)
    recorded: list[Sample] = []
    produced: list[Produced] = []
    errors: list[tuple[str, str]] = []
    for i, rule in enumerate(group.rules):
        try:
            vec = _as_vector(evaluator.instant(rule.expr, t), t)
            if isinstance(rule, RecordingRule):
                out, written[i] = _record(i, rule, vec, t, store, state)
                recorded.extend(out)
            else:
                trial = dict(alerts)
                got = _alerting(i, rule, vec, t, trial, ext, suppress)
                alerts = trial
                produced.extend(got)
                written[i] = _write_alerts(i, rule, alerts, t, store, state)
        except PromqlEvalError as exc:
            errors.append((rule.name, str(exc)))
    events = _decide(group, produced, alerts, suppress) if produced else []
    return GroupState(alerts, written, tuple(errors), t), recorded, events


def firing(state: GroupState, alertname: str | None = None) -> list[tuple[Labels, Alert]]:
    """The firing alerts (of `alertname`), sorted by labels."""
    got = [
        (k, a)
        for k, a in state.alerts.items()
        if a.inst.state is AlertState.FIRING and (alertname is None or a.rule == alertname)
    ]
    return sorted(got, key=lambda ka: ka[0])


def carry_over(
    old: RuleGroup, new: RuleGroup | None, state: GroupState, at: float, suppress: Suppressor = NOTHING
) -> tuple[GroupState, list[AlertEvent]]:
    """The state of `old` for its reloaded version `new` (None: the group is gone), as
    `rules.engine.ShardEngine.reload` carries the seed rules' state.

    An alert goes on under the rule of the same name (the k-th of that name, when several share
    it), so an unchanged firing alert is not notified again and an edited expression or threshold
    applies from the next evaluation; if its labels change with the rule, the old label set is
    absent there and resolves as any alert whose condition stopped holding. The firing alerts of a
    rule that is gone are resolved at `at` (the last evaluated tick), announced when their FIRING
    was; its pending alerts are dropped. Series written by a kept recording rule keep their
    staleness bookkeeping.
    """

    def slots(group: RuleGroup | None) -> dict[tuple[str, int], int]:
        seen: dict[str, int] = {}
        out: dict[tuple[str, int], int] = {}
        for i, r in enumerate(group.rules if group is not None else ()):
            k = seen[r.name] = seen.get(r.name, -1) + 1
            out[(r.name, k)] = i
        return out

    old_slots, new_slots = slots(old), slots(new)
    moved = {i: new_slots.get(key) for key, i in old_slots.items()}
    alerts: dict[Labels, Alert] = {}
    events: list[AlertEvent] = []
    for labels, a in state.alerts.items():
        j = moved.get(a.index)
        if j is not None and new is not None and isinstance(new.rules[j], AlertingRule):
            alerts[labels] = replace(a, index=j)
            continue
        prev = a.inst
        if prev.state is not AlertState.FIRING:
            continue  # pending: dropped; resolved: nothing left to say
        rule = old.rules[a.index]
        assert isinstance(rule, AlertingRule)
        done = replace(prev, state=AlertState.RESOLVED, resolved_at=at, keep_since=None, muted=None)
        c = Change(ChangeKind.RESOLVED, at, NotifyReason.RESOLVED)
        _, suppressed, _ = decide(c, prev, done, dict(labels), suppress.silences, (), ())
        events.append(
            _event(rule, labels, replace(a, inst=done), prev, c, threshold_of(rule.expr), suppressed)
        )
    written = {j: w for i, w in state.written.items() if (j := moved.get(i)) is not None}
    return GroupState(alerts, written, state.errors, state.last_t), events
