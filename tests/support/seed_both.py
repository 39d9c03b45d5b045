"""Run a seed-format rule case through both executors: the per-instance engine (as rules.check
does) and the group evaluator on `rules.promql.plan.seed_group`, and compare them at every
evaluation point.

Compared, per alert instance (its label set, so its fingerprint): the state when pending or
firing, and for alerts firing in both with the same value, the rendered annotations. The
differences the plan documents (`rules.promql.plan.differences`) are applied explicitly, never
guessed from the results: from an evaluation where the engine's window for the alert's series is
empty (fewer than 2 samples for `rate`), where the series is stale with samples still in the
window, or where the engine's exact-slope rate and PromQL's extrapolated rate fall on different
sides of the threshold, the alert is *diverged* and left out, until an evaluation without that
cause where neither executor has it pending or firing (both are back to nothing, so they agree
again). Any other difference is a mismatch.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rules.aggregate import rate
from rules.alert import is_active
from rules.check import _samples, eval_time
from rules.duration import parse_duration
from rules.engine import ShardEngine, alert_labels
from rules.model import Aggregation, AlertState, Metric, Rule, RuleSet
from rules.promql import ast
from rules.promql.eval import Evaluator, Labels
from rules.promql.group import GroupState, MemoryStore, evaluate_group
from rules.promql.plan import seed_expr, seed_group
from rules.promql.stream import prom_labels
from rules.template import render


@dataclass
class Series:
    rule: Rule
    ts: list[float] = field(default_factory=list)
    vs: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    compared: int = 0  # (alert, evaluation) pairs compared
    excused: int = 0  # pairs left out as a documented difference
    mismatches: list[str] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)  # which documented differences applied


def _prom_value(
    rule: Rule, key: Labels, t: float, evaluator: Evaluator, cache: dict[str, dict[Labels, float]]
) -> float:
    """The PromQL value of the rule's left-hand side (before the comparison) for the alert."""
    if rule.name not in cache:
        expr = seed_expr(rule)
        assert isinstance(expr, ast.Binary)
        result = evaluator.instant(expr.lhs, t)
        assert not isinstance(result, float)
        extra = {**dict(rule.labels), "alertname": rule.name, "severity": rule.severity.value}
        by: dict[Labels, float] = {}
        for s in result:
            d = {k: v for k, v in s.labels if k not in ("__name__", "instance")}
            by[tuple(sorted({**d, **extra}.items()))] = s.value
        cache[rule.name] = by
    return cache[rule.name].get(key, math.nan)


def _cause(
    s: Series, key: Labels, t: float, staleness: float, evaluator: Evaluator, cache: dict[str, Any]
) -> str | None:
    """The documented difference in force for this alert at `t`, if any."""
    rule = s.rule
    hi = bisect_right(s.ts, t)
    if hi == 0:
        return None  # before the series' first sample: both have nothing
    lo = bisect_right(s.ts, t - rule.window_s, 0, hi)
    if rule.no_data:
        return None  # absence is the condition; NO_DATA_MEMORY_S is far beyond any suite
    need = 2 if rule.aggregation is Aggregation.RATE else 1
    if hi - lo < need:
        return "empty window"
    if t - s.ts[hi - 1] >= staleness:
        return "stale with samples in the window"
    if rule.aggregation is Aggregation.RATE:
        exact = rate(s.ts[lo:hi], s.vs[lo:hi])
        prom = _prom_value(rule, key, t, evaluator, cache)
        if (
            exact is not None
            and not math.isnan(prom)
            and rule.op.holds(exact, rule.threshold) != rule.op.holds(prom, rule.threshold)
        ):
            return "rate: exact slope vs extrapolation"
    return None


def _annotations(rule: Rule, labels: Mapping[str, str], value: float) -> dict[str, str]:
    out = {k: render(t, labels, value, rule.threshold) for k, t in rule.annotations}
    for key, url in (("runbook_url", rule.runbook_url), ("dashboard_url", rule.dashboard_url)):
        if url:
            out[key] = render(url, labels, value, rule.threshold)
    return out


def run_both(ruleset: RuleSet, case: Mapping[str, Any], where: str) -> Outcome:
    interval = parse_duration(case.get("interval", "1m"))
    samples: list[Metric] = _samples(dict(case), interval)
    step = ruleset.eval_interval_s
    checks = case.get("alert_rule_test") or []
    until = max([eval_time(c) for c in checks] + [m.ts for m in samples] + [0.0])
    ticks = [k * step for k in range(int(until // step) + 1)]

    series: dict[Labels, Series] = {}
    store = MemoryStore()
    for m in samples:
        store.append(prom_labels(m), m.ts, m.value)
        for r in ruleset.rules:
            if r.selects(m):
                s = series.setdefault(alert_labels(r, m), Series(r))
                s.ts.append(m.ts)
                s.vs.append(m.value)

    group = seed_group(ruleset)
    factory = partial(Evaluator, lookback_s=300.0, left_open=True)
    engine = ShardEngine(ruleset)
    state = GroupState()
    out = Outcome()
    diverged: set[Labels] = set()
    fed = 0
    for t in ticks:
        upto = fed
        while upto < len(samples) and samples[upto].ts <= t:
            upto += 1
        engine.ingest(samples[fed:upto])
        fed = upto
        engine.advance_to(t)
        state, _, _ = evaluate_group(group, state, t, store, factory)
        assert not state.errors, state.errors
        eng = {b.labels: b for b in engine.bindings() if is_active(b.inst)}
        grp = {k: a for k, a in state.alerts.items() if is_active(a.inst)}
        evaluator = factory(store)
        cache: dict[str, Any] = {}
        for key in sorted(set(series) | set(eng) | set(grp)):
            found = series.get(key)
            cause = _cause(found, key, t, ruleset.staleness_s, evaluator, cache) if found else None
            if cause and (key in eng or key in grp):
                # an alert neither has active is unaffected: the engine keeps "nothing" as well
                diverged.add(key)
                out.reasons.add(cause)
            elif key in diverged and key not in eng and key not in grp:
                diverged.discard(key)  # both back to nothing: they agree again
            if key in diverged:
                out.excused += 1
                continue
            e, g = eng.get(key), grp.get(key)
            if e is None and g is None:
                continue
            out.compared += 1
            at = f"{where} at {t:g}s, {dict(key)}"
            e_state = e.inst.state if e else AlertState.INACTIVE
            g_state = g.inst.state if g else AlertState.INACTIVE
            if e_state is not g_state:
                out.mismatches.append(f"{at}: engine {e_state.value}, group {g_state.value}")
                continue
            if e is None or g is None or e_state is not AlertState.FIRING:
                continue
            if e.inst.value == g.inst.value:
                want = _annotations(e.rule, e.labels_map, e.inst.value)
                if want != dict(g.annotations):
                    out.mismatches.append(f"{at}: annotations engine {want}, group {dict(g.annotations)}")
            elif (
                not math.isclose(e.inst.value, g.inst.value, rel_tol=1e-9)
                and e.rule.aggregation is not Aggregation.RATE  # exact slope vs extrapolation
                and e.inst.keep_since is None  # keep_firing_for: the engine shows the newest value
            ):
                out.mismatches.append(f"{at}: value engine {e.inst.value}, group {g.inst.value}")
    return out
