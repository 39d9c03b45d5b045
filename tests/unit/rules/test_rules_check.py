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


# ------------------------------------------------------------ promtool files on Prometheus rules

PROMTOOL = ROOT / "tests/rules/promtool"


@pytest.mark.parametrize("flag", [[], ["--prometheus2"]])
def test_the_repo_promtool_suites_pass(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # the same files pass `promtool test rules` (tests/integration/test_promtool_differential.py)
    assert main([*flag, str(PROMTOOL / "tests.yml"), str(PROMTOOL / "aggregated_tests.yml")]) == 0
    assert capsys.readouterr().out.strip().endswith("23 passed, 0 failed")


def test_a_wrong_prometheus_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rules.yml").write_text((PROMTOOL / "aggregated.yml").read_text())
    suite = (PROMTOOL / "aggregated_tests.yml").read_text()
    (tmp_path / "t.yml").write_text(suite.replace("a replicas lag 50s", "a replicas lag 51s").replace(
        "aggregated.yml", "rules.yml").replace("value: 55", "value: 54"))  # fmt: skip
    assert main([str(tmp_path / "t.yml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "test #1 at 180s, ClusterReplicationLag: exp: [{labels:" in out
    assert "'summary': 'a replicas lag 51s'" in out and "'summary': 'a replicas lag 50s'" in out
    assert "cluster:pg_replication_lag_seconds:max: exp: [" in out and "54.0" in out and "55.0" in out
    assert out.strip().endswith("5 passed, 2 failed")


CASES = """\
rule_files: [rules.yml]
evaluation_interval: 1m
group_eval_order: [second, first]
tests:
  - interval: 1m
    input_series:
      - series: 'up{instance="a"}'
        values: '0 0 stale'
      - series: 'disk_free{instance="a"}'
        values: '10 5 1'
    alert_rule_test:
      - eval_time: 1m
        alertname: Down
        exp_alerts:
          - exp_labels: {instance: a}
      - eval_time: 2m
        alertname: Down
        exp_alerts: []
      - eval_time: 1m
        alertname: DiskWillFill
        exp_alerts: []
    promql_expr_test:
      - expr: up
        eval_time: 2m
        exp_samples: []
      - expr: irate(disk_free[5m])
        eval_time: 2m
        exp_samples: []
"""
RULES = """\
groups:
  - name: first
    rules:
      - alert: Down
        expr: up == 0
  - name: second
    rules:
      - alert: DiskWillFill
        expr: predict_linear(disk_free[1h], 3600) < 0
"""


def test_what_is_outside_the_subset_is_skipped_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "t.yml").write_text(CASES)
    assert main([str(tmp_path / "t.yml")]) == 0
    out = capsys.readouterr().out
    assert "SKIP" in out and "DiskWillFill: rule 'DiskWillFill' not evaluated: function predict_linear" in out
    assert "irate(disk_free[5m]): expression not evaluated: function irate" in out
    # `stale` ends `up` at once (no 5m lookback), so Down resolves at 2m; both checks evaluated
    assert out.strip().endswith("3 passed, 0 failed, 2 not evaluated (outside the supported PromQL subset)")
    assert main(["--strict", str(tmp_path / "t.yml")]) == 1


def test_a_rule_evaluation_error_fails_the_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rules.yml").write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: M\n        expr: a > on() b\n"
    )
    (tmp_path / "t.yml").write_text("""\
rule_files: [rules.yml]
tests:
  - input_series:
      - series: 'a{i="1"}'
        values: '1'
      - series: 'b{i="1"}'
        values: '0'
      - series: 'b{i="2"}'
        values: '0'
    alert_rule_test:
      - alertname: M
        exp_alerts: []
""")
    assert main([str(tmp_path / "t.yml")]) == 1
    assert "M: rule evaluation failed:" in capsys.readouterr().out
