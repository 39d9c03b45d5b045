"""`python -m flows.backtest --promtool TESTS.yml`: promtool suites run by `rules.check`, through the
Prometheus rule-file loader and the group evaluator the live job uses (no hand-written mapping)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import backtest
from rules import check

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / "tests/rules/promtool"


def test_the_repo_suites_pass_with_every_rule_evaluated(capsys: pytest.CaptureFixture[str]) -> None:
    suites = [str(PROMTOOL / "tests.yml"), str(PROMTOOL / "aggregated_tests.yml")]
    assert backtest.main([a for s in suites for a in ("--promtool", s)]) == 0
    out = capsys.readouterr().out
    # recording rules, `max by`, vector matching: evaluated, nothing skipped
    assert not any(line.startswith("SKIP") for line in out.splitlines())
    assert f"{suites[0]}: 16 checks, 0 problems, 0 not evaluated" in out
    assert out.strip().endswith("23 passed, 0 failed")
    assert check.main(suites) == 0
    assert capsys.readouterr().out == out  # one runner, the same report


def test_a_wrong_expectation_fails_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yml").write_text("groups: [{name: g, rules: [{record: 'x:sum', expr: 'sum(x)'}, "
                                    "{alert: A, expr: 'x:sum > 1'}]}]\n")  # fmt: skip
    (tmp_path / "t.yml").write_text(
        "rule_files: [r.yml]\n"
        "tests:\n"
        "  - input_series:\n"
        "      - {series: 'x{instance=\"a\"}', values: '1x3'}\n"
        "      - {series: 'x{instance=\"b\"}', values: '1x3'}\n"
        "    alert_rule_test: [{eval_time: 1m, alertname: A, exp_alerts: []}]\n"
    )
    assert backtest.main(["--promtool", str(tmp_path / "t.yml")]) == 1
    out = capsys.readouterr().out
    # the alert on the recording rule's output fired: sum over both instances is 2
    assert "FAIL" in out and "A: exp: [], got: [{labels: {'alertname': 'A'}" in out
    assert out.strip().endswith("0 passed, 1 failed")


def test_a_rule_file_given_as_a_suite_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest.main(["--promtool", str(PROMTOOL / "rules.yml")]) == 2
    err = capsys.readouterr().err
    assert "is a Prometheus rule file, not a test file" in err and "rules.lint" in err


def test_the_cli_entry_point(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "flows.backtest", "--promtool", str(PROMTOOL / "aggregated_tests.yml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith("7 passed, 0 failed")
