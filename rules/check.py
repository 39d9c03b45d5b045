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

Differences from promtool, on purpose: `exp_labels` is matched as a subset (our alerts
carry every tag of the series, listing them all would make cases brittle); time starts at
the Unix epoch; `stale` ends a series (no sample) rather than writing a staleness marker.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from rules.duration import parse_duration
from rules.engine import ShardEngine
from rules.loader import RuleFileError, load_rules
from rules.model import AlertState, Metric, RulesError, RuleSet

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
                f"{path} is a Prometheus rule file, not a test file: run its promtool tests with "
                f"`python -m flows.backtest --promtool TESTS.yml`; check the rules with "
                f"`python -m rules.lint {path}`"
            )
        if any(k in doc for k in ("alert_rules", "rules", "alerting")):
            return (
                f"{path} is a rule file, not a test file: give a test file whose `rule_files:` lists it "
                f"(see tests/rules/bundled_cases.yml); check the rules with `python -m rules.lint {path}`"
            )
    return f"{path}: expected a mapping with `rule_files:` and `tests:` (a list of test cases)"


def run_file(path: Path) -> tuple[int, list[Failure]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise CaseError(not_a_test_file(path, doc))
    files = [path.parent / f for f in doc.get("rule_files") or []]
    ruleset = load_rules(files)
    if "evaluation_interval" in doc:
        ruleset = replace(ruleset, eval_interval_s=parse_duration(doc["evaluation_interval"]))
    total, failures = 0, []
    for i, case in enumerate(doc["tests"], start=1):
        n, f = run_case(ruleset, case, str(path), i)
        total += n
        failures.extend(f)
    return total, failures


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rules.check", description="Run promtool-style rule test cases."
    )
    ap.add_argument("cases", nargs="+", type=Path)
    args = ap.parse_args(argv)
    total = failed = 0
    for path in args.cases:
        try:
            n, failures = run_file(path)
        except (CaseError, RuleFileError, KeyError, OSError, yaml.YAMLError) as exc:
            print(f"ERROR {path}: {exc}", file=sys.stderr)
            return 2
        total += n
        failed += len({(f.test, f.eval_time, f.alertname) for f in failures})
        for f in failures:
            print(f"FAIL {f}")
        print(f"{path}: {n} checks, {len(failures)} problems")
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
