"""rules.promql.plan: seed rules translated to PromQL, proven on the seed suites by running them
through both executors (tests/support/seed_both.py), and the execution plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rules.check import _samples, rule_files
from rules.engine import ShardEngine
from rules.loader import load_rules
from rules.model import Aggregation, Matcher, Op, Rule, RuleSet, Severity
from rules.promql.eval import Evaluator
from rules.promql.gotemplate import compile_template
from rules.promql.group import GroupState, MemoryStore, evaluate_group, firing
from rules.promql.parse import parse_expr
from rules.promql.plan import (
    SEED_GROUP,
    Executor,
    plan,
    seed_alerting_rule,
    seed_expr,
    seed_group,
    seed_promql,
    seed_template,
)
from rules.promql.rulefile import load_prometheus_rules
from rules.promql.stream import prom_labels
from rules.template import render
from tests.support.seed_both import Outcome, run_both

ROOT = Path(__file__).resolve().parents[4]


def _rule(**kw: object) -> Rule:
    base: dict[str, object] = {"name": "R", "metric": "cpu", "op": Op.GT, "threshold": 80.0}
    return Rule(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "promql"),
    [
        (_rule(), "avg_over_time(cpu[1m]) > 80"),
        (_rule(aggregation=Aggregation.MAX, window_s=300), "max_over_time(cpu[5m]) > 80"),
        (_rule(aggregation=Aggregation.LAST, op=Op.LE, threshold=0.5), "last_over_time(cpu[1m]) <= 0.5"),
        (_rule(aggregation=Aggregation.COUNT, op=Op.EQ, threshold=-2.0), "count_over_time(cpu[1m]) == -2"),
        (_rule(aggregation=Aggregation.RATE, window_s=90), "rate(cpu[1m30s]) > 80"),
        (_rule(aggregation=Aggregation.P50), "quantile_over_time(0.5, cpu[1m]) > 80"),
        (_rule(aggregation=Aggregation.P99, op=Op.NE), "quantile_over_time(0.99, cpu[1m]) != 80"),
        (
            _rule(
                matchers=(
                    Matcher.parse("env", "~prod.*"),
                    Matcher.parse("region", "!eu"),
                    Matcher.parse("x", 'a"b'),
                ),
                database_types=("postgresql", "my.sql"),
            ),
            r'avg_over_time(cpu{env=~"prod.*", region!="eu", x="a\"b", '
            r'database_type=~"postgresql|my\\.sql"}[1m]) > 80',
        ),
        (
            _rule(metric="cpu.pct", database_types=("mysql",)),
            'avg_over_time({__name__="cpu.pct", database_type="mysql"}[1m]) > 80',
        ),
        (
            _rule(metric="up", no_data=True, window_s=120),
            "count_over_time(up[1d]) * 0 unless count_over_time(up[2m])",
        ),
    ],
)
def test_seed_rule_as_promql(rule: Rule, promql: str) -> None:
    assert seed_promql(rule) == promql
    assert seed_expr(rule) == parse_expr(promql)  # the same parser as Prometheus files


def test_the_alerting_rule_carries_the_seed_rules_options() -> None:
    rule = _rule(
        for_s=300,
        keep_firing_for_s=600,
        severity=Severity.CRITICAL,
        labels=(("team", "dba"),),
        annotations=(("summary", "{{ $value }} on {{ $labels.instance_id }}"),),
        runbook_url="https://rb/{{ $labels.instance_id }}",
    )
    a = seed_alerting_rule(rule)
    assert (a.name, a.for_s, a.keep_firing_for_s) == ("R", 300, 600)
    assert dict(a.labels) == {"instance": "", "severity": "critical", "team": "dba"}
    assert dict(a.annotations) == {
        "summary": '{{ printf "%.6g" $value }} on {{ $labels.instance_id }}',
        "runbook_url": "https://rb/{{ $labels.instance_id }}",
    }
    g = seed_group(RuleSet((rule,), eval_interval_s=30))
    assert (g.name, g.interval_s, g.rules) == (SEED_GROUP, 30, (a,))


@pytest.mark.parametrize("value", [90.0, 85.123456789, 1234567.0, 0.5, 12345.678, 1e-05, -3.0])
def test_seed_templates_render_the_same_as_go_templates(value: float) -> None:
    rule = _rule(labels=(("team", "dba"), ("odd", "{{x}}")), severity=Severity.CRITICAL, threshold=80.5)
    text = (
        '{{ $value }}|{{ $value | printf "%.1f" }}|{{ $threshold }}|{{ $threshold | printf "%.0f" }}|'
        "{{ $labels.instance_id }}|{{ $labels.region }}|{{ $labels.team }}|{{ $labels.severity }}|"
        "{{ $labels.alertname }}|{{ $labels.metric_name }}|{{ $labels.odd }}|"
        "{{ $value | humanize }}|literal {{"
    )
    engine_labels = {"instance_id": "db1", "database_type": "pg", "team": "dba", "odd": "{{x}}",
                     "severity": "critical", "alertname": "R"}  # fmt: skip
    sample_labels = {"instance_id": "db1", "instance": "db1", "database_type": "pg"}  # no region
    go, notes = seed_template(text, rule)
    got = compile_template(go).render(sample_labels, value, {})
    want = render(text, engine_labels, value, rule.threshold)
    if abs(value) < 1:  # the documented humanize difference
        assert notes and got.split("|")[:-2] == want.split("|")[:-2]
    else:
        assert got == want


def test_the_plan_says_who_runs_each_rule_and_how_it_differs() -> None:
    ruleset = load_rules([ROOT / "tests/rules/seed_flat_rules.yml"])
    groups = load_prometheus_rules([ROOT / "tests/rules/promtool/rules.yml"])
    p = plan(ruleset, groups)
    seed = p.on(Executor.ENGINE)
    assert [r.name for r in seed] == [r.name for r in ruleset.rules]
    assert [r.promql for r in seed] == [seed_promql(r) for r in ruleset.rules]
    assert [r.name for r in p.on(Executor.GROUP)] == [r.name for g in groups for r in g.rules]
    assert p.seed_group == seed_group(ruleset)
    notes = {r.name: " / ".join(r.differences) for r in seed}
    assert "empty 2m window" in notes["CommitRateHigh"] and "extrapolates" in notes["CommitRateHigh"]
    assert "repeats every 30m on the engine" in notes["CommitRateHigh"]
    assert "no-data" in notes["HeartbeatMissing"] and "empty" not in notes["HeartbeatMissing"]
    assert "humanize" in notes["DiskFull"]
    assert "extrapolates" not in notes["QueryLatencyP99"]
    assert all(not r.differences for r in p.on(Executor.GROUP))  # they run as Prometheus runs them


def test_a_window_longer_than_the_staleness_is_a_difference() -> None:
    p = plan(RuleSet((_rule(window_s=600),), staleness_s=300))
    assert any("longer than the staleness" in d for d in p.rules[0].differences)


def seed_suites() -> list[Path]:
    """Every rules.check file under tests/rules whose rule files are seed-format."""
    out = []
    for path in sorted((ROOT / "tests/rules").rglob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not (isinstance(doc, dict) and doc.get("rule_files") and isinstance(doc.get("tests"), list)):
            continue
        rule_docs = [yaml.safe_load(f.read_text(encoding="utf-8")) for f in rule_files(path, doc)]
        if all(isinstance(d, dict) and "groups" not in d for d in rule_docs):
            out.append(path)
    return out


SUITES = seed_suites()


def test_the_seed_suites_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SUITES}
    assert {"tests/rules/bundled_cases.yml", "tests/rules/seed_flat_cases.yml"} <= names, names


def _run_suite(path: Path) -> Outcome:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    ruleset = load_rules(rule_files(path, doc))
    total = Outcome()
    for i, case in enumerate(doc["tests"], start=1):
        o = run_both(ruleset, case, f"{path.name} test #{i}")
        assert o.compared > 0, f"{path.name} test #{i}: nothing compared"
        total.compared += o.compared
        total.excused += o.excused
        total.mismatches += o.mismatches
        total.reasons |= o.reasons
    return total


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_both_executors_agree_on_the_seed_suites(suite: Path) -> None:
    """Engine and group evaluator on the translated group: same alert instances (labels, so
    fingerprints), same pending/firing state, same annotations, at every evaluation, but for the
    documented differences (applied by tests/support/seed_both.py)."""
    outcome = _run_suite(suite)
    assert outcome.mismatches == []
    assert outcome.compared >= 20


def test_the_documented_differences_are_exercised_and_real() -> None:
    """The suites reach both differences, and an excused one really differs: a gap keeps the
    engine's alert firing while the translated rule has resolved."""
    outcome = _run_suite(ROOT / "tests/rules/seed_flat_cases.yml")
    assert {"empty window", "rate: exact slope vs extrapolation"} <= outcome.reasons
    rule = _rule(metric="cpu_usage_percent")
    ruleset = RuleSet((rule,))
    case = {
        "interval": "1m",
        "input_series": [{"series": 'cpu_usage_percent{instance_id="db1"}', "values": "90 90 90 _ _ 90"}],
    }
    samples = _samples(case, 60.0)
    engine = ShardEngine(ruleset)
    engine.ingest(samples)
    engine.advance_to(240)
    assert [b.inst.state.value for b in engine.bindings()] == ["firing"]  # kept through the gap
    store = MemoryStore()
    for m in samples:
        store.append(prom_labels(m), m.ts, m.value)
    state = GroupState()
    for t in (0, 60, 120, 180, 240):
        state, _, _ = evaluate_group(seed_group(ruleset), state, t, store, Evaluator)
    assert firing(state) == []  # resolved at 180, the first empty window
