"""promtool-style rule cases: the notation and the CLI rule authors run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.check import CaseError, expand_values, main, parse_series

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("90x2", [90.0, 90.0, 90.0]),
        ("0+120x3", [0.0, 120.0, 240.0, 360.0]),
        ("5-1x2", [5.0, 4.0, 3.0]),
        ("1 _ stale 2", [1.0, None, None, 2.0]),
        ("_x2 1e2", [None, None, 100.0]),
        ("-1.5+0.5x2", [-1.5, -1.0, -0.5]),
    ],
)
def test_expand_values(text: str, values: list[float | None]) -> None:
    assert expand_values(text) == values


def test_bad_notation_is_an_error() -> None:
    with pytest.raises(CaseError, match="bad value"):
        expand_values("90x2 lots")


def test_parse_series() -> None:
    assert parse_series('cpu{instance_id="db1", region="eu"}') == (
        "cpu",
        {"instance_id": "db1", "region": "eu"},
    )
    assert parse_series("up") == ("up", {})
    with pytest.raises(CaseError):
        parse_series("cpu{instance_id=db1}")


def test_bundled_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT / "tests/rules/bundled_cases.yml")]) == 0
    assert capsys.readouterr().out.strip().endswith("7 passed, 0 failed")


def test_a_wrong_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case.yml"
    case.write_text(f"""
rule_files: [{ROOT / "rules/bundled/alert-rules.yml"}]
tests:
  - interval: 1m
    input_series:
      - series: 'cpu_usage_percent{{instance_id="db1"}}'
        values: '10x10'
    alert_rule_test:
      - eval_time: 8m
        alertname: HighCPUUsage
        exp_alerts:
          - exp_labels: {{instance_id: db1}}
""")
    assert main([str(case)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "expected firing alert" in out and "0 passed, 1 failed" in out


def test_a_rule_file_given_as_cases_says_what_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT / "rules/bundled/alert-rules.yml")]) == 2
    err = capsys.readouterr().err
    assert "is a rule file, not a test file" in err and "rules.lint" in err
    assert "expected a mapping" not in err


def test_a_check_without_eval_time_is_at_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case.yml"
    case.write_text(f"""
rule_files: [{ROOT / "rules/bundled/alert-rules.yml"}]
tests:
  - input_series:
      - series: 'cpu_usage_percent{{instance_id="db1"}}'
        values: '99x10'
    alert_rule_test:
      - alertname: HighCPUUsage
        exp_alerts: []
""")
    assert main([str(case)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 0 failed")
