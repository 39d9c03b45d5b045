"""The repo's own promtool-format suites pass under both tools: Debian's `promtool test rules` (2.42) and
`python -m rules.check` (issue 14, "Done when").

A suite is any YAML file under tests/ or rules/ with `rule_files:` and `tests:` whose rule files are all
Prometheus rule files (`groups:`); seed-format case files (tests/rules/bundled_cases.yml) are rules.check's
only. rules.check runs each suite twice: as promtool 2.42 evaluates (`--prometheus2`, closed window edge) and
with its default, Prometheus 3's left-open windows, which is how a rule author runs it; `--strict` both times,
so a check it could not evaluate fails instead of being skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def promtool_suites() -> list[Path]:
    out = []
    for base in (ROOT / "tests", ROOT / "rules"):
        for path in sorted([*base.rglob("*.yml"), *base.rglob("*.yaml")]):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if not (isinstance(doc, dict) and doc.get("rule_files") and isinstance(doc.get("tests"), list)):
                continue
            rule_docs = [
                yaml.safe_load((path.parent / f).read_text(encoding="utf-8")) for f in doc["rule_files"]
            ]
            if all(isinstance(d, dict) and "groups" in d for d in rule_docs):
                out.append(path)
    return out


SUITES = promtool_suites()


def test_the_repo_has_promtool_suites() -> None:
    # the known ones at least: a broken discovery must not make the test below vacuous
    names = {p.relative_to(ROOT).as_posix() for p in SUITES}
    assert {"tests/rules/promtool/tests.yml", "tests/rules/promtool/aggregated_tests.yml"} <= names, names


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_suite_passes_promtool_and_rules_check(promtool: str, suite: Path) -> None:
    r = subprocess.run(
        [promtool, "test", "rules", suite.name],
        cwd=suite.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, f"promtool test rules {suite}:\n{r.stdout}{r.stderr}"
    assert "SUCCESS" in r.stdout
    for mode in (["--prometheus2"], []):
        c = subprocess.run(
            [sys.executable, "-m", "rules.check", "--strict", *mode, str(suite)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert c.returncode == 0, (
            f"python -m rules.check --strict {' '.join(mode)} {suite}:\n{c.stdout}{c.stderr}"
        )
        checks = sum(len(t.get("alert_rule_test") or []) + len(t.get("promql_expr_test") or [])
                     for t in yaml.safe_load(suite.read_text(encoding="utf-8"))["tests"])  # fmt: skip
        assert f"{checks} passed, 0 failed" in c.stdout, c.stdout
