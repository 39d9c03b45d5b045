"""Rule linter for authors: `python -m rules.lint FILE_OR_DIR ...`.

Lists every problem of every file, located (`file:line:col: rule 'X': field: message`, as
Prometheus' rulefmt prints them), then a closing line; exits 1 when there is any problem,
0 otherwise, 2 on a usage error. Nothing runs and nothing is written: it is the loaders' own
validation, the one the live job and the backtest run at start, so a file that lints clean is a
file the jobs load (and one with a problem is one the live job refuses to start with).

- Seed files (`alert_rules:`, or the flat `rules:` / `alerting: {rules:}`) are loaded
  together by `rules.loader`, as the jobs would: a rule name used in two files is a problem.
- Prometheus rule files (`groups:`) are loaded together by `rules.promql.rulefile`, as the
  jobs would: an expression outside the PromQL subset (the construct named, docs/promql.md), a
  template outside the supported subset, a group name used twice in the rule set, ... Each
  group that loads is shown with what the job will do with it: its interval, its recording
  rules (written to RECORDED_TOPIC) and its alerts (`for`, `keep_firing_for`), in order.
- Seed rules that load are shown with their PromQL, from the rule set's execution plan
  (`rules.promql.plan`): the executor that runs them (the per-instance engine) and where its
  semantics differ from that PromQL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rules.loader import Problem, RuleFileError, load_rules, prometheus_files
from rules.model import RuleSet
from rules.promql.plan import plan
from rules.promql.rulefile import AlertingRule, RuleGroup, load_prometheus_rules_lenient
from rules.promql.stream import DEFAULT_INTERVAL_S


@dataclass(frozen=True, slots=True)
class Report:
    problems: tuple[Problem, ...]
    groups: tuple[RuleGroup, ...]  # the Prometheus groups that load, in rule-set order
    rules: int  # rules that load: seed rules and the groups' rules
    files: int
    seed: RuleSet | None = None  # the seed rules that load (None: none, or a problem)


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory's *.yml and *.yaml, sorted."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted([*p.glob("*.yml"), *p.glob("*.yaml")]) if p.is_dir() else [p])
    return out


def lint(paths: Sequence[Path]) -> Report:
    """Every problem of `paths`, in file then line order, and the Prometheus groups that load."""
    files = expand(paths)
    problems: list[Problem] = []
    rules = 0
    if not files:
        return Report((), (), 0, 0)
    seed: RuleSet | None = None
    try:  # seed files; Prometheus files are passed by (and unreadable ones reported) here
        seed = load_rules(files)
        rules += len(seed.rules)
    except RuleFileError as exc:
        problems.extend(exc.problems)
    groups: list[RuleGroup] = []
    prometheus = prometheus_files(files)
    if prometheus:
        # not lenient: what the live job loads (a group with a problem is refused, not trimmed)
        groups, more = load_prometheus_rules_lenient(prometheus, lenient=False)
        problems.extend(more)
        rules += sum(len(g.rules) for g in groups)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    return Report(tuple(problems), tuple(groups), rules, len(files), seed if seed and seed.rules else None)


def _seconds(s: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g}{unit}"
    return f"{s:g}s"


def describe(group: RuleGroup) -> list[str]:
    """What the jobs do with a group: one line for the group, one per rule, in evaluation order."""
    every = (
        f"every {_seconds(group.interval_s)}"
        if group.interval_s
        else f"every {_seconds(DEFAULT_INTERVAL_S)} (default)"
    )
    lines = [f"GROUP {group.source}: {group.name}: {len(group.rules)} rule(s), evaluated {every}"]
    for r in group.rules:
        at = f"line {r.line}: " if r.line else ""
        if isinstance(r, AlertingRule):
            extra = "".join(
                f", {k} {_seconds(v)}"
                for k, v in (("for", r.for_s), ("keep_firing_for", r.keep_firing_for_s))
                if v
            )
            lines.append(f"  {at}alert {r.name}{extra}: {r.expr_text}")
        else:
            lines.append(f"  {at}record {r.name} (also to RECORDED_TOPIC): {r.expr_text}")
    return lines


def describe_seed(ruleset: RuleSet) -> list[str]:
    """Each seed rule with its PromQL (the plan) and how the engine that runs it differs; the
    empty-window difference, which every rule with a condition has, is said once."""
    by_name = {r.name: r for r in ruleset.rules}
    every = _seconds(ruleset.eval_interval_s)
    lines = [
        f"SEED rules: {len(ruleset.rules)} rule(s) on the per-instance engine, evaluated every {every}; "
        f"as PromQL (rules.promql.plan), which differs on an empty window: the engine keeps the alert "
        f"as it was until the series is stale ({_seconds(ruleset.staleness_s)}), PromQL drops a pending "
        f"alert and resolves a firing one"
    ]
    for p in plan(ruleset).rules:
        r = by_name[p.name]
        extra = "".join(
            f", {k} {_seconds(v)}"
            for k, v in (("for", r.for_s), ("keep_firing_for", r.keep_firing_for_s))
            if v
        )
        lines.append(f"  alert {p.name}{extra}: {p.promql or '(no PromQL form)'}")
        lines.extend(f"    differs: {d}" for d in p.differences if not d.startswith("empty "))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rules.lint",
        description="Check rule files: every problem listed with file:line:col; exit 1 if any.",
    )
    ap.add_argument("paths", nargs="+", type=Path, metavar="FILE", help="rule file or directory")
    args = ap.parse_args(argv)
    report = lint(args.paths)
    if not report.files:
        print("rules.lint: no rule files found in " + ", ".join(map(str, args.paths)), file=sys.stderr)
        return 2
    for p in report.problems:
        print(p)
    if report.problems:
        print(
            f"{len(report.problems)} problem(s) in {report.files} file(s): the jobs refuse to start with them"
        )
        return 1
    if report.seed is not None:
        print("\n".join(describe_seed(report.seed)))
    for g in report.groups:
        print("\n".join(describe(g)))
    print(f"ok: {report.rules} rule(s) in {report.files} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
