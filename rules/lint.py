"""Rule linter for authors: `python -m rules.lint FILE_OR_DIR ...`.

Lists every problem of every file, located (`file:line:col: rule 'X': field: message`, as
Prometheus' rulefmt prints them), then a closing line; exits 1 when there is any problem,
0 otherwise, 2 on a usage error. Nothing runs and nothing is written: it is the loader's own
validation (rules/loader.py, the one the jobs run at start), so a file that lints clean is a
file the jobs load.

- Seed files (`alert_rules:`, or the flat `rules:` / `alerting: {rules:}`) are loaded
  together, as the jobs would: a rule name used in two files is a problem.
- Prometheus rule files (`groups:`) are not loaded by the live job yet: the linter says so,
  points to `python -m flows.backtest --promtool TESTS.yml` (which runs them), and still lists
  each rule that does not map onto our rule model (rules/promql/mapping.py) with the reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from rules.loader import Problem, RuleFileError, load_rules, load_yaml
from rules.promql.mapping import convert_groups, recorded_names

PROMETHEUS_NOTE = (
    "a Prometheus rule file: the live job does not load these yet; `python -m flows.backtest "
    "--promtool TESTS.yml` runs them with their promtool tests. Linted: how its rules map onto ours"
)


@dataclass(frozen=True, slots=True)
class Report:
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]  # said, not counted: the Prometheus pointer, lossy mappings
    rules: int  # rules that load (seed) or map (Prometheus)
    files: int


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory's *.yml and *.yaml, sorted."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted([*p.glob("*.yml"), *p.glob("*.yaml")]) if p.is_dir() else [p])
    return out


def is_prometheus(doc: object) -> bool:
    return (
        isinstance(doc, Mapping)
        and "groups" in doc
        and not any(k in doc for k in ("alert_rules", "rules", "alerting"))
    )


def lint(paths: Sequence[Path]) -> Report:
    """Every problem of `paths`, in file then line order."""
    files = expand(paths)
    problems: list[Problem] = []
    notes: list[str] = []
    seed: list[Path] = []
    prometheus: list[tuple[Path, object]] = []
    for path in files:
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            seed.append(path)  # the loader reports it, located, like any other problem
            continue
        if is_prometheus(doc):
            prometheus.append((path, doc))
        else:
            seed.append(path)
    rules = 0
    if seed:
        try:
            rules += len(load_rules(seed).rules)
        except RuleFileError as exc:
            problems.extend(exc.problems)
    recorded = set().union(*(recorded_names(doc) for _, doc in prometheus))
    for path, doc in prometheus:
        notes.append(f"{path}: {PROMETHEUS_NOTE}")
        conv = convert_groups(doc, source=str(path), recorded=recorded)
        rules += len(conv.rules)
        for u in conv.unmappable:
            where = f" (group {u.group})" if u.group else ""
            expr = f": {u.expr}" if u.expr else ""
            reason = f"not mappable{where}: {u.reason}{expr}"
            problems.append(Problem(str(path), u.name, "", reason, u.line, u.column))
        notes.extend(f"{path}: {n}" for n in conv.notes)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    return Report(tuple(problems), tuple(notes), rules, len(files))


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
    for note in report.notes:
        print(f"NOTE {note}")
    for p in report.problems:
        print(p)
    if report.problems:
        print(f"{len(report.problems)} problem(s) in {report.files} file(s)")
        return 1
    print(f"ok: {report.rules} rule(s) in {report.files} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
