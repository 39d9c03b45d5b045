"""Seed rules as PromQL, and the execution plan of a rule set: which executor runs each rule. Pure.

A seed rule (`rules.model.Rule`, from either seed format) is one PromQL alerting rule:

    <agg>_over_time(<metric>{<matchers>, database_type=~"a|b"}[<window>]) <op> <threshold>

with `rate(...)` for `rate`, `quantile_over_time(0.5|0.95|0.99, ...)` for p50/p95/p99, `for`,
`keep_firing_for`, the rule's labels plus `severity`, and its annotations (`runbook_url`,
`dashboard_url` among them) rewritten as Go templates that render what the seed templates render.
`seed_group` gathers a rule set's seed rules into one `RuleGroup` the group evaluator
(`rules.promql.group`) runs as it runs a Prometheus file.

The plan (`plan`) is the one description of what a rule set computes: per rule, its PromQL and
the executor that runs it. Seed rules run on the per-instance engine (`rules.engine`): it has
their shape and is the measured fast path (bench/promql.py: the group path at 0.62 of it). The
rules of Prometheus files run on the group evaluator: their authors asked for Prometheus'
semantics. Where the engine's semantics differ from PromQL's the plan says so, per rule
(`PlannedRule.differences`), rather than hiding it; tests/unit/rules/promql/test_plan.py runs
the seed suites through both executors and accounts for exactly these.

Alert identity is kept: the group evaluator's alert for a seed rule has the engine's labels
(the series' tags, `instance_id`, `database_type`, the rule's labels, `alertname`, `severity`;
`instance` is dropped with an empty rule label, as Prometheus drops a label set to ""), so both
executors give the same fingerprints and message ids.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from rules.model import Aggregation, Matcher, Rule, RuleSet
from rules.promql import ast
from rules.promql.gotemplate import Template, compile_template
from rules.promql.group import REPEAT_INTERVAL_S
from rules.promql.parse import PromqlError, parse_expr
from rules.promql.rulefile import AlertingRule, RecordingRule, RuleGroup
from rules.template import _EXPR, _VAR, render  # the seed template grammar itself: no drift

SEED_GROUP: Final = "seed"
"""The name of the group `seed_group` builds (Prometheus groups must not use it)."""

NO_DATA_MEMORY_S: Final = 86400.0
"""How long the PromQL form of a no-data rule remembers a silent series (its longer range)."""

_QUANTILE = {Aggregation.P50: "0.5", Aggregation.P95: "0.95", Aggregation.P99: "0.99"}
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ALWAYS = frozenset({"instance_id", "database_type"})  # labels every seed series has


class Executor(enum.Enum):
    ENGINE = "engine"  # rules.engine.ShardEngine: one instance's series, threshold rules
    GROUP = "group"  # rules.promql.group: a Prometheus rule group, any rule of the subset


@dataclass(frozen=True, slots=True)
class PlannedRule:
    """One rule of the plan: its PromQL, who runs it, and how that differs from PromQL."""

    name: str
    kind: Literal["alert", "record"]
    executor: Executor
    promql: str  # for a seed rule: its translation ("" when it has none, see differences)
    group: str
    source: str = ""
    line: int | None = None
    differences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    rules: tuple[PlannedRule, ...]
    seed_group: RuleGroup | None  # the seed rules as PromQL (None: no seed rule)
    groups: tuple[RuleGroup, ...]  # the Prometheus files' groups, as loaded

    def on(self, executor: Executor) -> tuple[PlannedRule, ...]:
        return tuple(r for r in self.rules if r.executor is executor)


class PlanError(PromqlError):
    """A seed rule that has no PromQL form (a name PromQL cannot write); the engine still runs it."""


# --------------------------------------------------------------------------- PromQL text


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _number(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _range(seconds: float) -> str:
    """A PromQL duration (`5m`, `1h30m`, `1500ms`): promql-parser refuses fractions."""
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out or "0s"


def _matcher(m: Matcher) -> str:
    # the seed's `metric_name` label is PromQL's `__name__` (rules.promql.stream.prom_labels)
    name = "__name__" if m.name == "metric_name" else m.name
    if not _LABEL_NAME.match(name):
        raise PlanError("label name", f"tag {m.name!r} is not a PromQL label name")
    op = {(False, False): "=", (False, True): "!=", (True, False): "=~", (True, True): "!~"}[
        (m.regex, m.negate)
    ]
    return f"{name}{op}{_string(m.value)}"


def _selector(rule: Rule) -> str:
    matchers = [_matcher(m) for m in rule.matchers]
    if len(rule.database_types) == 1:
        matchers.append(f"database_type={_string(rule.database_types[0])}")
    elif rule.database_types:
        alternatives = "|".join(re.escape(d) for d in rule.database_types)
        matchers.append(f"database_type=~{_string(alternatives)}")
    if _METRIC_NAME.match(rule.metric):
        return rule.metric + ("{" + ", ".join(matchers) + "}" if matchers else "")
    return "{" + ", ".join([f"__name__={_string(rule.metric)}", *matchers]) + "}"


def seed_promql(rule: Rule) -> str:
    """The PromQL expression of a seed rule (module docstring); `PlanError` when it has none."""
    sel = _selector(rule)
    window = _range(rule.window_s)
    if rule.no_data:
        # per series, as the engine: seen within NO_DATA_MEMORY_S, none in the window; value 0
        memory = _range(NO_DATA_MEMORY_S)
        return f"count_over_time({sel}[{memory}]) * 0 unless count_over_time({sel}[{window}])"
    agg = rule.aggregation
    if agg is Aggregation.RATE:
        inner = f"rate({sel}[{window}])"
    elif agg in _QUANTILE:
        inner = f"quantile_over_time({_QUANTILE[agg]}, {sel}[{window}])"
    else:
        inner = f"{agg.value}_over_time({sel}[{window}])"
    return f"{inner} {rule.op.value} {_number(rule.threshold)}"


def seed_expr(rule: Rule) -> ast.Expr:
    """The PromQL AST of a seed rule, read by the same parser as Prometheus files."""
    text = seed_promql(rule)
    try:
        return parse_expr(text)
    except PromqlError as exc:
        raise PlanError(exc.construct, f"rule {rule.name!r} as PromQL {text!r}: {exc}") from exc


# --------------------------------------------------------------------------- templates


def _literal(text: str) -> str:
    """Text that a Go template prints as it is."""
    return text.replace("{{", '{{ "{{" }}')


def seed_template(text: str, rule: Rule) -> tuple[str, tuple[str, ...]]:
    """A seed template (rules/template.py) as a Go template rendering the same text for the
    same alert; and what still differs. `$labels` in Prometheus are the result sample's labels,
    so the labels the rule adds (its own, `alertname`, `severity`) and `$threshold` become
    literals; a tag a series may lack is read with `index` (Go prints `<no value>` for a missing
    `$labels.x`, the seed template nothing)."""
    constants = {**dict(rule.labels), "alertname": rule.name, "severity": rule.severity.value}
    notes: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _EXPR.finditer(text):
        out.append(_literal(text[pos : m.start()]))
        pos = m.end()
        v = _VAR.match(m.group(1))
        if v is None:  # refused by the seed loader; kept as text, as the seed renderer does
            out.append(_literal(m.group(0)))
            continue
        label, fmt = v.group("label"), v.group("fmt")
        if label:
            if label in constants:
                out.append(_literal(constants[label]))
            elif label == "metric_name":
                pass  # not an alert label in the engine (implied by the rule): renders empty
            elif label in _ALWAYS:
                out.append(f"{{{{ $labels.{label} }}}}")
            else:
                out.append(f'{{{{ index $labels "{label}" }}}}')
        elif v.group("var") == "threshold":
            out.append(_literal(render(m.group(0), {}, math.nan, rule.threshold)))
        elif fmt:
            if fmt.endswith("d"):
                notes.append(
                    f'template printf "{fmt}": the seed template truncates $value to an integer, '
                    f"Go prints %!d(float64=...) for a float"
                )
            out.append(f'{{{{ $value | printf "{fmt}" }}}}')
        elif v.group("humanize"):
            notes.append(
                "template humanize: below 1 (and from 1e15) the seed template prints the number "
                "(0.5), Prometheus' humanize an SI prefix (500m)"
            )
            out.append("{{ $value | humanize }}")
        else:
            out.append('{{ printf "%.6g" $value }}')  # the seed's `{:g}`; Go's %v is shortest
    out.append(_literal(text[pos:]))
    return "".join(out), tuple(dict.fromkeys(notes))


# --------------------------------------------------------------------------- rules and groups


def _annotations(rule: Rule) -> tuple[dict[str, str], tuple[str, ...]]:
    texts = dict(rule.annotations)
    for key, url in (("runbook_url", rule.runbook_url), ("dashboard_url", rule.dashboard_url)):
        if url:
            texts[key] = url  # the group evaluator reads the URLs from the annotations
    out: dict[str, str] = {}
    notes: list[str] = []
    for key, text in texts.items():
        out[key], more = seed_template(text, rule)
        notes.extend(more)
    return out, tuple(dict.fromkeys(notes))


def _compiled(texts: dict[str, str]) -> tuple[tuple[str, Template], ...]:
    return tuple((k, compile_template(t)) for k, t in sorted(texts.items()))


def seed_alerting_rule(rule: Rule) -> AlertingRule:
    """A seed rule as the group evaluator's `AlertingRule` (`PlanError` when it has no PromQL)."""
    labels = {k: _literal(v) for k, v in rule.labels}
    labels["severity"] = rule.severity.value
    labels["instance"] = ""  # the engine's alerts have no `instance` label: "" removes it
    annotations, _ = _annotations(rule)
    return AlertingRule(
        name=rule.name,
        expr=seed_expr(rule),
        for_s=rule.for_s,
        keep_firing_for_s=rule.keep_firing_for_s,
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
        source=rule.source,
        expr_text=seed_promql(rule),
        label_templates=_compiled(labels),
        annotation_templates=_compiled(annotations),
    )


def seed_group(ruleset: RuleSet, name: str = SEED_GROUP) -> RuleGroup:
    """The seed rules of `ruleset` as one Prometheus rule group evaluated every
    `evaluation_interval` (rules without a PromQL form are left out: see `plan`)."""
    rules: list[AlertingRule] = []
    for r in ruleset.rules:
        try:
            rules.append(seed_alerting_rule(r))
        except PlanError:
            continue
    sources = ", ".join(dict.fromkeys(r.source for r in ruleset.rules if r.source))
    return RuleGroup(name, ruleset.eval_interval_s, tuple(rules), sources)


def _seconds(s: float) -> str:
    return _range(s) if s > 0 else "0s"


def differences(rule: Rule, ruleset: RuleSet) -> tuple[str, ...]:
    """How the engine's evaluation of `rule` differs from its PromQL form's, one note each."""
    notes: list[str] = []
    window, stale = _seconds(rule.window_s), _seconds(ruleset.staleness_s)
    if rule.no_data:
        notes.append(
            f"no-data: PromQL remembers a silent series for {_seconds(NO_DATA_MEMORY_S)} (its "
            f"longer range), the engine keeps the alert until the series sends again; "
            f"absent_over_time() is not the translation: its result has only the selector's `=` "
            f"labels and appears only when every matching series is silent (one alert for all "
            f"instances, not one per series)"
        )
    else:
        notes.append(
            f"empty {window} window (a gap, or the series stopped): the engine keeps the alert as it "
            f"was until the series is stale ({stale} after its newest sample), PromQL has no result: "
            f"a pending alert is dropped, a firing one resolves (after keep_firing_for)"
        )
        if rule.window_s > ruleset.staleness_s:
            notes.append(
                f"the window ({window}) is longer than the staleness ({stale}): the engine resolves a "
                f"silent series at staleness while PromQL still has samples in the window"
            )
    if rule.aggregation is Aggregation.RATE and not rule.no_data:
        notes.append(
            "rate: the engine's is the exact slope between the first and the last sample in the "
            "window (counter resets counted), Prometheus' rate() extrapolates to the window's edges "
            "(the same for a steady counter sampled across the window); fewer than 2 samples is an "
            "empty window"
        )
    if rule.repeat_interval_s != REPEAT_INTERVAL_S:
        notes.append(
            f"repeats every {_seconds(rule.repeat_interval_s)} on the engine (cooldown/repeat_interval), "
            f"every {_seconds(REPEAT_INTERVAL_S)} on the group evaluator"
        )
    _, template_notes = _annotations(rule)
    notes.extend(template_notes)
    return tuple(notes)


def _planned_seed(rule: Rule, ruleset: RuleSet) -> PlannedRule:
    notes = differences(rule, ruleset)
    try:
        promql = seed_promql(rule)
        seed_expr(rule)
    except PlanError as exc:
        promql, notes = "", (f"no PromQL form: {exc}", *notes)
    return PlannedRule(rule.name, "alert", Executor.ENGINE, promql, SEED_GROUP, rule.source, None, notes)


def _planned_group(group: RuleGroup) -> Iterable[PlannedRule]:
    for r in group.rules:
        kind: Literal["alert", "record"] = "record" if isinstance(r, RecordingRule) else "alert"
        yield PlannedRule(r.name, kind, Executor.GROUP, r.expr_text, group.name, r.source, r.line)


def plan(ruleset: RuleSet, groups: Sequence[RuleGroup] = ()) -> ExecutionPlan:
    """The rule set's plan: seed rules on the engine, Prometheus groups' rules on the group
    evaluator (module docstring), in rule-set order."""
    rules = [_planned_seed(r, ruleset) for r in ruleset.rules]
    for g in groups:
        rules.extend(_planned_group(g))
    seed = seed_group(ruleset) if ruleset.rules else None
    return ExecutionPlan(tuple(rules), seed, tuple(groups))
