"""Differential test (issue 14, item 5): our PromQL group evaluator, run by `rules.check`, fires exactly what
Prometheus fires, at every evaluation point of a few hundred generated scenarios.

Prometheus here is Debian's promtool 2.42 (deploy/local/prometheus.sh install). For each scenario
(tests/support/promql_scenarios.py: a rule file and an input-series test file) promtool first runs a test
file that expects nothing at every evaluation point for every alert; its report of what it got, parsed, is the
firing set (labels, and annotations: `value` is `{{ printf "%.6g" $value }}`). Those sets are then written
back as the checks' expectations (exact labels and annotations): promtool itself must pass that file, which
verifies the extraction, and `rules.check` must pass the very same file, which is the comparison. A difference
fails the test with the scenario (rules, series) and rules.check's report printed.

Documented differences, explicit here:
- window edge: promtool 2.42 selects ranges `[t - range, t]`; rules.check is run with the closed left edge
  (`--prometheus2`), Prometheus 3's `(t - range, t]` being its default.
- STALE: promtool's `stale` notation (a staleness marker) is in the input series; set it False to leave it out
  if the evaluator documents a difference there (none is documented now).

Seed and size: PROMQL_DIFF_SEED (default 14) and PROMQL_DIFF_COUNT (default 300) reproduce or widen a run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.support import promql_scenarios as ps

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
SEED = int(os.environ.get("PROMQL_DIFF_SEED", "14"))
COUNT = int(os.environ.get("PROMQL_DIFF_COUNT", "300"))
STALE = True
# --prometheus2: the closed left window edge of promtool 2.42; --strict: a check rules.check could not
# evaluate (a construct it refuses) fails instead of being reported and skipped.
RULES_CHECK_ARGS = ["--prometheus2", "--strict"]
# What the scenarios must make fire at least once in promtool, or the comparison tests little of the subset.
MUST_FIRE = {
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "rate", "increase", "delta", "deriv",
    "absent", "absent_over_time", "histogram_quantile", "time", "vector", "scalar", "label_replace", "clamp",
    "clamp_min", "clamp_max", "abs", "round", "round to_nearest", "ceil", "floor", "unary minus",
    "sum by", "avg by", "max by", "min by", "count by", "quantile by", "topk by", "bottomk by", "sum without",
    "vector + scalar", "vector - scalar", "vector * scalar", "vector / scalar", "vector % scalar",
    "vector ^ scalar", "vector > scalar", "vector < scalar", "vector >= scalar", "vector <= scalar",
    "vector == scalar", "vector != scalar", "bool", "and", "or", "unless", "ignoring()", "group_left",
    "group_right", "vector CMP vector", "recorded series", "for", "keep_firing_for",
}  # fmt: skip


@pytest.fixture(scope="module")
def scenarios() -> list[ps.Scenario]:
    return ps.generate(SEED, COUNT, stale=STALE)


@pytest.fixture(scope="module")
def firing(promtool: str, scenarios: list[ps.Scenario], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """promtool's firing set per scenario name."""
    d = tmp_path_factory.mktemp("promql-probe")
    files = ps.write(scenarios, d)
    got = ps.promtool_firing(promtool, list(files.values()), d)
    return {name: got[path.name] for name, path in files.items()}


@pytest.fixture(scope="module")
def expected_files(
    scenarios: list[ps.Scenario], firing: dict, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Test files whose checks expect exactly promtool's firing sets."""
    return ps.write(scenarios, tmp_path_factory.mktemp("promql-expect"), firing)


def test_promtool_passes_its_own_firing_sets(promtool: str, expected_files: dict[str, Path]) -> None:
    """The extraction is right: promtool accepts every firing set read from its output as the expectation."""
    d = next(iter(expected_files.values())).parent
    r = subprocess.run(
        [promtool, "test", "rules", *(p.name for p in expected_files.values())],
        cwd=d, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_promtool_rejects_a_changed_firing_set(
    promtool: str, scenarios: list[ps.Scenario], firing: dict, tmp_path: Path
) -> None:
    """...and the expectations bite: one alert removed from one check makes promtool fail."""
    sc = next(s for s in scenarios if any(firing[s.name].values()))
    key = next(k for k, v in sorted(firing[sc.name].items()) if v)
    changed = dict(firing[sc.name])
    changed[key] = frozenset(sorted(changed[key])[1:])
    path = ps.write([sc], tmp_path, {sc.name: changed})[sc.name]
    r = subprocess.run([promtool, "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"alertname: {key[1]}, time:" in r.stderr


def test_scenarios_make_the_subset_fire(scenarios: list[ps.Scenario], firing: dict) -> None:
    """Enough of it fires in Prometheus that agreeing on the firing sets is not agreeing on nothing."""
    fired: Counter[str] = Counter()
    for sc in scenarios:
        names = {a for (_, a), alerts in firing[sc.name].items() if alerts}
        for r in sc.rules:
            if r.kind == "alert" and r.name in names:
                fired.update(r.constructs)
    assert MUST_FIRE - set(fired) == set(), f"never fired in promtool: {sorted(MUST_FIRE - set(fired))}"
    firing_scenarios = sum(1 for sc in scenarios if any(firing[sc.name].values()))
    assert firing_scenarios >= 0.6 * len(scenarios)


def test_generated_rules_are_in_the_subset(scenarios: list[ps.Scenario]) -> None:
    """Every generated expression parses into the supported subset (a refusal would be a generator bug)."""
    from rules.promql.parse import PromqlError, parse_expr

    refused = []
    for sc in scenarios:
        for r in sc.rules:
            try:
                parse_expr(r.expr)
            except PromqlError as exc:
                refused.append(f"{sc.name} {r.name}: {r.expr} -> {exc}")
    assert not refused, "\n".join(refused[:20])


_FAIL_FILE = re.compile(r"^FAIL (\S+?\.test\.yml)")


def test_rules_check_fires_what_promtool_fires(
    scenarios: list[ps.Scenario], expected_files: dict[str, Path]
) -> None:
    """The differential test: rules.check passes promtool's firing sets at every evaluation point."""
    d = next(iter(expected_files.values())).parent
    files = [str(p) for p in expected_files.values()]
    r = subprocess.run(
        [sys.executable, "-m", "rules.check", *RULES_CHECK_ARGS, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if r.returncode == 0:
        checks = sum(len(sc.eval_times()) * len(sc.alertnames) for sc in scenarios)
        assert f"{checks} passed, 0 failed" in r.stdout, r.stdout[-2000:]
        return
    by_file: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        if m := _FAIL_FILE.match(line):
            by_file.setdefault(Path(m.group(1)).name, []).append(line)
    report = [
        f"rules.check exit {r.returncode}; {len(by_file)} of {len(scenarios)} scenarios differ",
        r.stderr[-3000:],
    ]
    for sc in scenarios:
        lines = by_file.get(f"{sc.name}.test.yml")
        if lines and len(report) < 12:
            rules_text = yaml.safe_dump(sc.rule_file(), sort_keys=False, width=200)
            series = "\n".join(f"  {s}: {v}" for s, v in sc.series)
            report.append(
                f"--- {sc.name} (files in {d})\n{rules_text}series (interval {sc.interval_s:g}s, "
                f"evaluation every {sc.eval_interval_s:g}s):\n{series}\n" + "\n".join(lines[:8])
            )
    pytest.fail("\n".join(report), pytrace=False)
