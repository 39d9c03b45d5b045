"""Rule unit tests without Python, in promtool's format: `python -m rules.check CASES.yaml ...`.

```yaml
rule_files: [../rules/bundled/alert-rules.yml]   # relative to this file
evaluation_interval: 1m                          # optional, overrides the rule files'
tests:
  - interval: 1m                                 # spacing of input samples
    input_series:
      - series: 'cpu_usage_percent{instance_id="db1", database_type="postgresql", region="eu"}'
        values: '90x20 50x8'                     # promtool notation: a+bxn, axn, _, stale
    alert_rule_test:
      - eval_time: 10m
        alertname: HighCPUUsage
        exp_alerts:                              # the alerts firing at eval_time (empty: none)
          - exp_labels: {instance_id: db1, severity: warning}
            exp_annotations: {summary: "CPU at 90.0% on db1"}
```

When the `rule_files` are Prometheus rule files (`groups:`), the file runs as `promtool test
rules` runs it (`run_prometheus_file`): time starts at 0, every group is evaluated every
`evaluation_interval` (in `group_eval_order` when given) by `rules.promql.group`, input series in
promtool's notation (`stale` writes a staleness marker), `alert_rule_test` compares the firing
alerts' labels (exactly, `alertname` added) and annotations with the evaluation at or just before
`eval_time`, `promql_expr_test` compares an instant query's samples, and a rule's evaluation error
fails the test. A check that needs a rule or an expression outside the PromQL subset is
reported SKIP with the construct named, never passed silently. `--prometheus2` takes range
windows as Prometheus 2 (promtool 2.42) does: `[t - range, t]` instead of `(t - range, t]`.

For the seed formats, differences from promtool, on purpose: `exp_labels` is matched as a subset (our alerts
carry every tag of the series, listing them all would make cases brittle); time starts at
the Unix epoch; `stale` ends a series (no sample) rather than writing a staleness marker.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from rules.duration import parse_duration
from rules.engine import ShardEngine
from rules.loader import RuleFileError, load_rules, load_yaml
from rules.model import AlertState, Metric, RulesError, RuleSet
from rules.promql import ast as pq
from rules.promql.eval import STALE_NAN, Evaluator, Labels, PromqlEvalError, Store
from rules.promql.group import GroupState, MemoryStore, evaluate_group, firing
from rules.promql.parse import PromqlError, parse_expr
from rules.promql.rulefile import RuleGroup, is_prometheus_rule_file, load_prometheus_rules_lenient

_SERIES = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ITEM = re.compile(
    r"^(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|_)(?:([+-])(\d+\.?\d*(?:[eE][+-]?\d+)?))?x(\d+)$"
)


class CaseError(RulesError):
    """A malformed case file; the message names the file and the test."""


def expand_values(text: str) -> list[float | None]:
    """promtool's expanding notation; None is a missing sample (`_`)."""
    out: list[float | None] = []
    for item in str(text).split():
        if item in ("_", "stale"):
            out.append(None)
            continue
        m = _ITEM.match(item)
        if m is None:
            try:
                out.append(float(item))
            except ValueError:
                raise CaseError(f"bad value {item!r} in {text!r}") from None
            continue
        start, sign, step, count = m.groups()
        n = int(count)
        if start == "_":
            out.extend([None] * n)
            continue
        a, b = float(start), float(step or 0) * (-1 if sign == "-" else 1)
        out.extend(a + i * b for i in range(n + 1))
    return out


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    m = _SERIES.match(text)
    if m is None:
        raise CaseError(f'bad series {text!r}: expected metric{{label="value", ...}}')
    labels: dict[str, str] = {}
    body = m.group(2) or ""
    pos = 0
    while pos < len(body.strip()):
        lm = _LABEL.match(body, pos)
        if lm is None:
            raise CaseError(f"bad labels in series {text!r}")
        labels[lm.group(1)] = lm.group(2)
        pos = lm.end()
    return m.group(1), labels


@dataclass(frozen=True, slots=True)
class Failure:
    file: str
    test: int
    eval_time: float
    alertname: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: test #{self.test} at {self.eval_time:g}s, {self.alertname}: {self.message}"


def _samples(case: dict[str, Any], interval: float, instance_required: bool = True) -> list[Metric]:
    out: list[Metric] = []
    for s in case.get("input_series") or []:
        name, labels = parse_series(s["series"])
        iid = labels.pop("instance_id", "")
        if not iid and instance_required:
            raise CaseError(f"series {s['series']!r} needs an instance_id label")
        dbt = labels.pop("database_type", "unknown")
        for i, v in enumerate(expand_values(s.get("values", ""))):
            if v is not None:
                out.append(Metric(i * interval, dbt, iid, name, v, labels))
    out.sort(key=lambda m: m.ts)
    return out


@dataclass(frozen=True, slots=True)
class Skip(Failure):
    """A check that could not be evaluated (a rule or expression outside the subset): why."""


def rule_files(path: Path, doc: dict[str, Any]) -> list[Path]:
    """A test file's `rule_files`, relative to it, globs expanded (as promtool does)."""
    out: list[Path] = []
    for f in doc.get("rule_files") or []:
        p = path.parent / str(f)
        matched = sorted(p.parent.glob(p.name)) if any(c in p.name for c in "*?[") else [p]
        out.extend(matched)
    return out


def eval_time(check: dict[str, Any]) -> float:
    """A check's `eval_time`; none means 0s, as in promtool."""
    return parse_duration(check.get("eval_time") or 0)


def run_case(
    ruleset: RuleSet, case: dict[str, Any], file: str, index: int, *, instance_required: bool = True
) -> tuple[int, list[Failure]]:
    """`instance_required=False`: a series without `instance_id` is one of an instance named ""
    (Prometheus series need no `instance` label; the seed messages always have one)."""
    interval = parse_duration(case.get("interval", "1m"))
    samples = _samples(case, interval, instance_required)
    checks = sorted(case.get("alert_rule_test") or [], key=eval_time)
    engine = ShardEngine(ruleset)
    failures: list[Failure] = []
    fed = 0
    for check in checks:
        at = eval_time(check)
        name = check.get("alertname")
        if not name:
            raise CaseError(f"{file}: test #{index}: a check without `alertname:`")
        upto = fed
        while upto < len(samples) and samples[upto].ts <= at:
            upto += 1
        engine.ingest(samples[fed:upto])
        fed = upto
        engine.advance_to(at)
        firing = [b for b in engine.bindings() if b.rule.name == name and b.inst.state is AlertState.FIRING]
        expected = check.get("exp_alerts") or []
        unmatched = list(firing)
        for exp in expected:
            want_labels = {str(k): str(v) for k, v in (exp.get("exp_labels") or {}).items()}
            want_ann = {str(k): str(v) for k, v in (exp.get("exp_annotations") or {}).items()}
            hit = next((b for b in unmatched if want_labels.items() <= b.labels_map.items()), None)
            if hit is None:
                failures.append(
                    Failure(
                        file,
                        index,
                        at,
                        name,
                        f"expected firing alert with labels {want_labels}, "
                        f"got {[dict(b.labels) for b in firing] or 'none'}",
                    )
                )
                continue
            unmatched.remove(hit)
            if want_ann:
                from rules.template import render

                got = {
                    k: render(t, hit.labels_map, hit.inst.value, hit.rule.threshold)
                    for k, t in hit.rule.annotations
                }
                for k, v in want_ann.items():
                    if got.get(k) != v:
                        failures.append(
                            Failure(
                                file, index, at, name, f"annotation {k}: expected {v!r}, got {got.get(k)!r}"
                            )
                        )
        for b in unmatched:
            failures.append(Failure(file, index, at, name, f"unexpected firing alert {dict(b.labels)}"))
    return len(checks), failures


def not_a_test_file(path: Path, doc: object) -> str:
    """Why `doc` is not a test file, naming what it is when it is a rule file."""
    if isinstance(doc, dict) and "tests" not in doc:
        if "groups" in doc:
            return (
                f"{path} is a Prometheus rule file, not a test file: give the promtool test file whose "
                f"`rule_files:` lists it (see tests/rules/promtool/tests.yml); check the rules with "
                f"`python -m rules.lint {path}`"
            )
        if any(k in doc for k in ("alert_rules", "rules", "alerting")):
            return (
                f"{path} is a rule file, not a test file: give a test file whose `rule_files:` lists it "
                f"(see tests/rules/bundled_cases.yml); check the rules with `python -m rules.lint {path}`"
            )
    return f"{path}: expected a mapping with `rule_files:` and `tests:` (a list of test cases)"


def run_file(path: Path, *, left_open: bool = True) -> tuple[int, list[Failure]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise CaseError(not_a_test_file(path, doc))
    files = rule_files(path, doc)
    if files and all(is_prometheus_rule_file(f) for f in files):
        result = run_prometheus_file(path, left_open=left_open)
        return result.checks, [*result.failures, *result.skipped]
    ruleset = load_rules(files)
    if "evaluation_interval" in doc:
        ruleset = replace(ruleset, eval_interval_s=parse_duration(doc["evaluation_interval"]))
    total, failures = 0, []
    for i, case in enumerate(doc["tests"], start=1):
        n, f = run_case(ruleset, case, str(path), i)
        total += n
        failures.extend(f)
    return total, failures


# ------------------------------------------------------------ promtool files on Prometheus rules


@dataclass(frozen=True, slots=True)
class PromResult:
    checks: int
    failures: tuple[Failure, ...]
    skipped: tuple[Skip, ...]


def _series_labels(text: str) -> Labels:
    """`name{l="v"}` (or `{__name__="n", ...}`) -> sorted labels, read by the PromQL parser."""
    try:
        sel = parse_expr(text)
    except PromqlError as exc:
        raise CaseError(f"bad series {text!r}: {exc}") from None
    if not isinstance(sel, pq.VectorSelector) or any(m.regex or m.negate for m in sel.matchers):
        raise CaseError(f'bad series {text!r}: expected metric{{label="value", ...}}')
    labels = {m.name: m.value for m in sel.matchers}
    if sel.name is not None:
        labels["__name__"] = sel.name
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _prom_values(text: str) -> list[float | None]:
    """promtool's notation; `_` is no sample (None), `stale` a staleness marker."""
    out: list[float | None] = []
    for item in str(text).split():
        out.extend([STALE_NAN] if item == "stale" else expand_values(item))
    return out


def _show_alerts(alerts: list[tuple[Labels, Labels]]) -> str:
    return "[" + ", ".join(f"{{labels: {dict(lb)}, annotations: {dict(an)}}}" for lb, an in alerts) + "]"


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def run_prometheus_file(path: Path, *, left_open: bool = True) -> PromResult:
    """Run a promtool test file whose `rule_files` are Prometheus rule files (module docstring)."""
    doc = load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise CaseError(not_a_test_file(path, doc))
    groups, problems = load_prometheus_rules_lenient(rule_files(path, doc))
    unusable = {p.rule: f"rule {p.rule!r} not evaluated: {p.message} ({p.file}:{p.line})" for p in problems}
    order = [str(g) for g in doc.get("group_eval_order") or []]
    if order:
        known = {g.name for g in groups}
        missing = [g for g in order if g not in known]
        if missing:
            raise CaseError(
                f"{path}: group_eval_order names groups that are not in the rule files: {missing}"
            )
        groups.sort(key=lambda g: order.index(g.name) if g.name in order else len(order))
    interval = parse_duration(doc.get("evaluation_interval") or "1m")
    factory = partial(Evaluator, lookback_s=300.0, left_open=left_open)
    checks = 0
    failures: list[Failure] = []
    skipped: list[Skip] = []
    for index, case in enumerate(doc["tests"], start=1):
        n, f, sk = _prom_case(path, index, case, groups, unusable, interval, factory)
        checks += n
        failures.extend(f)
        skipped.extend(sk)
    return PromResult(checks, tuple(failures), tuple(skipped))


def _prom_case(
    path: Path,
    index: int,
    case: dict[str, Any],
    groups: list[RuleGroup],
    unusable: dict[str, str],
    interval: float,
    factory: Callable[[Store], Evaluator],
) -> tuple[int, list[Failure], list[Skip]]:
    file = str(path)
    step = parse_duration(case.get("interval") or interval)
    store = MemoryStore()
    for s in case.get("input_series") or []:
        labels = _series_labels(str(s["series"]))
        for i, v in enumerate(_prom_values(s.get("values", ""))):
            if v is not None:
                store.append(labels, i * step, v)
    external = {str(k): str(v) for k, v in (case.get("external_labels") or {}).items()}
    alert_checks = sorted(case.get("alert_rule_test") or [], key=eval_time)
    expr_checks = case.get("promql_expr_test") or []
    failures: list[Failure] = []
    skipped: list[Skip] = []
    times = [eval_time(c) for c in alert_checks] + [eval_time(c) for c in expr_checks]
    until = max(times, default=0.0)
    states = [GroupState() for _ in groups]
    pending = list(alert_checks)
    k = 0
    while k * interval <= until + 1e-9:
        ts = k * interval
        for gi, g in enumerate(groups):
            states[gi], _, _ = evaluate_group(g, states[gi], ts, store, factory, external_labels=external)
            for rule, why in states[gi].errors:
                failures.append(Failure(file, index, ts, rule, f"rule evaluation failed: {why}"))
        while pending and eval_time(pending[0]) < ts + interval:
            c = pending.pop(0)
            failures.extend(_alert_check(file, index, c, groups, states, unusable, skipped))
        k += 1
    for c in expr_checks:
        failures.extend(_expr_check(file, index, c, store, factory, skipped))
    return len(alert_checks) + len(expr_checks), failures, skipped


def _alert_check(
    file: str,
    index: int,
    check: dict[str, Any],
    groups: list[RuleGroup],
    states: list[GroupState],
    unusable: dict[str, str],
    skipped: list[Skip],
) -> list[Failure]:
    at = eval_time(check)
    name = check.get("alertname")
    if not name:
        raise CaseError(f"{file}: test #{index}: a check without `alertname:`")
    name = str(name)
    if name in unusable:
        skipped.append(Skip(file, index, at, name, unusable[name]))
        return []
    got = [(lb, a.annotations) for st in states for lb, a in firing(st, name)]
    want = []
    for exp in check.get("exp_alerts") or []:
        labels = {str(k): str(v) for k, v in (exp.get("exp_labels") or {}).items()}
        labels["alertname"] = name
        ann = {str(k): str(v) for k, v in (exp.get("exp_annotations") or {}).items()}
        want.append((tuple(sorted(labels.items())), tuple(sorted(ann.items()))))
    if sorted(got) == sorted(want):
        return []
    msg = f"exp: {_show_alerts(sorted(want))}, got: {_show_alerts(sorted(got))}"
    return [Failure(file, index, at, name, msg)]


def _expr_check(
    file: str,
    index: int,
    check: dict[str, Any],
    store: MemoryStore,
    factory: Callable[[Store], Evaluator],
    skipped: list[Skip],
) -> list[Failure]:
    at = eval_time(check)
    text = str(check.get("expr", ""))
    try:
        expr = parse_expr(text)
    except PromqlError as exc:
        skipped.append(Skip(file, index, at, text, f"expression not evaluated: {exc.construct}: {exc}"))
        return []
    try:
        result = factory(store).instant(expr, at)
    except PromqlEvalError as exc:
        return [Failure(file, index, at, text, f"evaluation failed: {exc}")]
    got = [((), result)] if isinstance(result, float) else [(s.labels, s.value) for s in result]
    want = []
    for exp in check.get("exp_samples") or []:
        labels = _series_labels(str(exp["labels"])) if exp.get("labels") else ()
        want.append((labels, float(exp["value"])))
    got.sort(key=lambda x: x[0])
    want.sort(key=lambda x: x[0])
    ok = len(got) == len(want) and all(
        g[0] == w[0] and _same(g[1], w[1]) for g, w in zip(got, want, strict=True)
    )
    if ok:
        return []
    show = lambda xs: [f"{dict(lb)} {v}" for lb, v in xs]  # noqa: E731
    return [Failure(file, index, at, text, f"exp: {show(want)}, got: {show(got)}")]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rules.check", description="Run promtool-style rule test cases."
    )
    ap.add_argument("cases", nargs="+", type=Path)
    ap.add_argument(
        "--prometheus2",
        action="store_true",
        help="range windows [t - range, t] as promtool 2.42 (default: Prometheus 3, left-open)",
    )
    ap.add_argument("--strict", action="store_true", help="a check that could not be evaluated fails the run")
    args = ap.parse_args(argv)
    total = failed = skipped = 0
    for path in args.cases:
        try:
            n, failures = run_file(path, left_open=not args.prometheus2)
        except (CaseError, RuleFileError, KeyError, OSError, yaml.YAMLError) as exc:
            print(f"ERROR {path}: {exc}", file=sys.stderr)
            return 2
        total += n
        skips = [f for f in failures if isinstance(f, Skip)]
        fails = [f for f in failures if not isinstance(f, Skip)]
        failed += len({(f.test, f.eval_time, f.alertname) for f in fails})
        skipped += len({(f.test, f.eval_time, f.alertname) for f in skips})
        for f in fails:
            print(f"FAIL {f}")
        for f in skips:
            print(f"SKIP {f}")
        print(f"{path}: {n} checks, {len(fails)} problems, {len(skips)} not evaluated")
    tail = f", {skipped} not evaluated (outside the supported PromQL subset)" if skipped else ""
    print(f"{total - failed - skipped} passed, {failed} failed{tail}")
    return 1 if failed or (args.strict and skipped) else 0


if __name__ == "__main__":
    raise SystemExit(main())
