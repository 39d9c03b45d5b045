"""Prometheus rule import: expressions that map, those that do not (and say why), promtool suites."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows import backtest
from rules.check import expand_values
from rules.model import Aggregation, Op, Severity
from rules.promql.mapping import (
    NotMappableError,
    convert_groups,
    convert_template,
    parse_condition,
    promql_duration,
    promtool_case,
    rename_series,
    run_suite,
)

SUITE = Path(__file__).resolve().parents[3] / "rules" / "promtool" / "tests.yml"


@pytest.mark.parametrize(
    ("expr", "metric", "op", "threshold", "agg", "window"),
    [
        ("up > 0", "up", Op.GT, 0.0, Aggregation.LAST, 300.0),
        ("cpu_usage_percent >= 1e2", "cpu_usage_percent", Op.GE, 100.0, Aggregation.LAST, 300.0),
        ("avg_over_time(cpu[5m]) > 80", "cpu", Op.GT, 80.0, Aggregation.AVG, 300.0),
        ("min_over_time(cpu[1h30m]) < 5", "cpu", Op.LT, 5.0, Aggregation.MIN, 5400.0),
        ("max_over_time(cpu[30s]) != 0", "cpu", Op.NE, 0.0, Aggregation.MAX, 30.0),
        ("sum_over_time(cpu[1m]) <= -2.5", "cpu", Op.LE, -2.5, Aggregation.SUM, 60.0),
        ("count_over_time(up[10m]) < 3", "up", Op.LT, 3.0, Aggregation.COUNT, 600.0),
        ("last_over_time(up[2m]) == 0", "up", Op.EQ, 0.0, Aggregation.LAST, 120.0),
        ("quantile_over_time(0.95, lag[2m]) > 30", "lag", Op.GT, 30.0, Aggregation.P95, 120.0),
        ("quantile_over_time(0.5, lag[2m]) > 30", "lag", Op.GT, 30.0, Aggregation.P50, 120.0),
        ("quantile_over_time(0.99, lag[2m]) > 30", "lag", Op.GT, 30.0, Aggregation.P99, 120.0),
        ("rate(errors_total[5m]) > 0.5", "errors_total", Op.GT, 0.5, Aggregation.RATE, 300.0),
        ("90 < disk", "disk", Op.GT, 90.0, Aggregation.LAST, 300.0),  # flipped
        ("(avg_over_time(cpu[5m])) > 0x10", "cpu", Op.GT, 16.0, Aggregation.AVG, 300.0),
        ('{__name__="cpu"} > 1', "cpu", Op.GT, 1.0, Aggregation.LAST, 300.0),
    ],
)
def test_mappable_expressions(
    expr: str, metric: str, op: Op, threshold: float, agg: Aggregation, window: float
) -> None:
    c = parse_condition(expr)
    assert (c.metric, c.op, c.threshold, c.aggregation, c.window_s) == (metric, op, threshold, agg, window)


def test_label_matchers_map_and_instance_becomes_instance_id() -> None:
    c = parse_condition('avg_over_time(cpu{instance=~"db-.*", env!="lab", role="primary", x!~"a|b"}[5m]) > 1')
    by_name = {m.name: m for m in c.matchers}
    assert set(by_name) == {"instance_id", "env", "role", "x"}
    assert by_name["instance_id"].matches({"instance_id": "db-1"})
    assert not by_name["instance_id"].matches({"instance_id": "xdb-1"})  # anchored, as PromQL
    assert by_name["env"].matches({"env": "prod"}) and not by_name["env"].matches({"env": "lab"})
    assert by_name["role"].matches({"role": "primary"})
    assert by_name["x"].matches({"x": "c"}) and not by_name["x"].matches({"x": "a"})


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("node_load1 / node_cpus > 2", "unsupported operator '/'"),
        ("sum(cpu) > 1", "aggregation across series"),
        ("avg by (instance) (cpu) > 1", "aggregation across series"),
        ("cpu > bool 1", "bool"),
        ("cpu offset 5m > 1", "offset"),
        ("cpu[5m] > 1", "needs a function"),
        ("quantile_over_time(0.9, lag[5m]) > 1", "only 0.5, 0.95 and 0.99"),
        ("cpu > mem", "a threshold must be a number"),
        ("absent(up) == 1", "absent() has no equivalent"),
        ('{__name__=~"cpu|mem"} > 1', "several metrics"),
        ("up == 0 and on(instance) foo == 1", "unsupported 'and'"),
        ("rate(x[5m:1m]) > 1", "subquery"),
        ("increase(x[5m]) > 1", "increase() has no equivalent"),
        ("cpu", "no comparison"),
        ("cpu > Inf", "Inf or NaN"),
    ],
)
def test_unmappable_expressions_say_why(expr: str, reason: str) -> None:
    with pytest.raises(NotMappableError, match=None) as exc:
        parse_condition(expr)
    assert reason in str(exc.value)


def test_convert_groups_maps_fields_and_reports_everything_it_skips() -> None:
    doc = yaml.safe_load(
        """
groups:
  - name: g
    rules:
      - alert: HighCPU
        expr: avg_over_time(cpu{instance="db1"}[5m]) > 80
        for: 5m
        keep_firing_for: 10m
        labels: {severity: critical, team: dba}
        annotations:
          summary: 'CPU {{ printf "%.1f" $value }} on {{ $labels.instance }}'
          runbook_url: https://runbooks/cpu
          bad: '{{ range $x }}'
      - alert: Paging
        expr: up == 0
        labels: {severity: page}
      - alert: Ratio
        expr: a / b > 1
      - record: job:up:sum
        expr: sum(up)
"""
    )
    conv = convert_groups(doc, source="rules.yml")
    hi, paging = conv.rules
    assert (hi.name, hi.metric, hi.for_s, hi.keep_firing_for_s, hi.severity) == (
        "HighCPU",
        "cpu",
        300.0,
        600.0,
        Severity.CRITICAL,
    )
    assert dict(hi.labels) == {"team": "dba"}
    assert dict(hi.annotations)["summary"] == 'CPU {{ $value | printf "%.1f" }} on {{ $labels.instance_id }}'
    assert hi.runbook_url == "https://runbooks/cpu"
    assert "bad" not in dict(hi.annotations)
    assert paging.severity.value == "page" and paging.severity.rank < Severity.WARNING.rank
    assert [(u.name, u.reason) for u in conv.unmappable] == [
        ("Ratio", "unsupported operator '/'"),
        ("job:up:sum", "recording rule"),
    ]
    assert not any("Paging" in n for n in conv.notes)  # kept as written, nothing to say
    assert any("annotation bad dropped" in n for n in conv.notes)
    assert str(conv.unmappable[0]) == "not mappable: Ratio (group g): unsupported operator '/': a / b > 1"


def test_same_alert_name_with_other_labels_is_kept_but_exact_duplicates_are_not() -> None:
    doc = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {"alert": "CPU", "expr": "cpu > 80", "labels": {"severity": "warning"}},
                    {"alert": "CPU", "expr": "cpu > 95", "labels": {"severity": "critical"}},
                    {"alert": "CPU", "expr": "cpu > 99", "labels": {"severity": "critical"}},
                ],
            }
        ]
    }
    conv = convert_groups(doc)
    assert [r.threshold for r in conv.rules] == [80.0, 95.0]
    assert conv.unmappable[0].reason == "duplicate alert name with the same labels"


def test_bad_documents_are_reported() -> None:
    assert convert_groups({"rules": []}, source="x.yml").unmappable[0].reason == "no `groups:` list"
    assert "without a `rules:`" in convert_groups({"groups": [{"name": "g"}]}).unmappable[0].reason


def test_templates_durations_and_series_are_translated() -> None:
    assert convert_template("{{ humanize $value }} {{ .Labels.instance }} {{ .Value }}") == (
        "{{ $value | humanize }} {{ $labels.instance_id }} {{ $value }}"
    )
    assert convert_template("{{ $labels.instance_id }}") == "{{ $labels.instance_id }}"
    assert [promql_duration(d) for d in ("5m", "1h30m", "500ms", "1d", "2w")] == [
        300.0,
        5400.0,
        0.5,
        86400.0,
        1209600.0,
    ]
    with pytest.raises(NotMappableError):
        promql_duration("5 minutes")
    assert rename_series('up{instance="a:9100", job="node"}') == 'up{instance_id="a:9100", job="node"}'
    assert rename_series("up") == "up"
    # promtool's counting-up notation is read as written (the `explicit_steps` workaround is gone)
    assert expand_values("0+120x2 _x2 5-1x2 7") == [0.0, 120.0, 240.0, None, None, 5.0, 4.0, 3.0, 7.0]
    assert expand_values("1+1x3") == [1.0, 2.0, 3.0, 4.0]
    assert promtool_case({"input_series": [{"series": "up", "values": "0+120x2"}]})["input_series"] == [
        {"series": "up", "values": "0+120x2"}
    ]


def test_promtool_case_renames_instance_in_series_and_expectations() -> None:
    case: dict[str, Any] = {
        "input_series": [{"series": 'cpu{instance="db1"}', "values": "1+1x2"}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "A", "exp_alerts": [{"exp_labels": {"instance": "db1"}}]}
        ],
    }
    out = promtool_case(case)
    assert out["input_series"][0] == {"series": 'cpu{instance_id="db1"}', "values": "1+1x2"}
    assert expand_values(out["input_series"][0]["values"]) == [1.0, 2.0, 3.0]
    assert out["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"] == {"instance_id": "db1"}
    assert case["input_series"][0]["series"] == 'cpu{instance="db1"}'  # input untouched


def test_bundled_promtool_suite_passes() -> None:
    result = backtest.run_promtool(SUITE)
    assert (result.passed, result.failed, result.skipped) == (16, 0, 0)
    assert {u.name for u in result.conversion.unmappable} == {"LoadPerCPU", "instance:cpu:avg5m"}
    assert len(result.conversion.rules) == 5


def test_failures_and_checks_of_unmappable_alerts_are_reported() -> None:
    rules = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {"alert": "CPU", "expr": "cpu > 90", "labels": {"severity": "warning"}},
                    {"alert": "Ratio", "expr": "a / b > 1"},
                ],
            }
        ]
    }
    suite = {
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": 'cpu{instance="db1"}', "values": "95x5"}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "CPU", "exp_alerts": []},  # wrong: it fires
                    {
                        "eval_time": "2m",
                        "alertname": "CPU",
                        "exp_alerts": [{"exp_labels": {"instance": "db1"}}],
                    },
                    {"eval_time": "2m", "alertname": "Ratio", "exp_alerts": []},
                ],
                "promql_expr_test": [{"expr": "cpu", "eval_time": "1m"}],
            }
        ]
    }
    result = run_suite(suite, [("r.yml", rules)], "t.yml")
    status = [(o.alertname, o.eval_time, o.status) for o in result.outcomes]
    assert status == [("Ratio", 120.0, "skip"), ("CPU", 60.0, "fail"), ("CPU", 120.0, "pass")]
    assert "unexpected firing alert" in result.outcomes[1].messages[0]
    assert result.problems == ("test #1: promql_expr_test is not supported (skipped)",)
    assert str(result.outcomes[1]).startswith("FAIL test #1 CPU at 60s")


def test_cli_prints_one_line_per_check_and_the_closing_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest.main(["--promtool", str(SUITE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "16 passed, 0 failed"
    assert sum(1 for line in out if line.startswith("PASS ")) == 16
    assert any(line.startswith("SKIP not mappable: LoadPerCPU") for line in out)


def test_cli_exit_code_is_1_on_a_failed_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yml").write_text("groups: [{name: g, rules: [{alert: A, expr: 'cpu > 1'}]}]\n")
    (tmp_path / "t.yml").write_text(
        "rule_files: [r.yml]\n"
        "tests:\n"
        "  - input_series: [{series: 'cpu{instance=\"x\"}', values: '5x3'}]\n"
        "    alert_rule_test: [{eval_time: 1m, alertname: A, exp_alerts: []}]\n"
    )
    assert backtest.main(["--promtool", str(tmp_path / "t.yml")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "0 passed, 1 failed"


# --------------------------------------------------------------------------- real suites (issue 10, item 9)


def _suite(checks: list[dict[str, Any]], series: str, values: str = "95x10") -> dict[str, Any]:
    return {"tests": [{"interval": "1m", "input_series": [{"series": series, "values": values}],
                       "alert_rule_test": checks}]}  # fmt: skip


def _rules(*rules: dict[str, Any]) -> list[tuple[str, object]]:
    return [("r.yml", {"groups": [{"name": "g", "rules": list(rules)}]})]


def test_series_without_an_instance_label_is_evaluated_not_an_error() -> None:
    suite = _suite(
        [{"eval_time": "2m", "alertname": "Q", "exp_alerts": [{"exp_labels": {"queue": "mail"}}]}],
        'queue_depth{queue="mail"}',
    )
    result = run_suite(suite, _rules({"alert": "Q", "expr": "queue_depth > 90"}), "t.yml")
    assert [(o.status, o.messages) for o in result.outcomes] == [("pass", ())]


def test_check_without_eval_time_is_at_zero_like_promtool() -> None:
    suite = _suite(
        [{"alertname": "A", "exp_alerts": [{"exp_labels": {"instance": "db1"}}]}], 'cpu{instance="db1"}'
    )
    result = run_suite(suite, _rules({"alert": "A", "expr": "cpu > 90"}), "t.yml")
    assert [(o.eval_time, o.status) for o in result.outcomes] == [(0.0, "pass")]


def test_alert_reading_a_recording_rule_is_not_mappable_and_its_checks_skip() -> None:
    record = {"record": "job:cpu:avg", "expr": "avg(cpu)"}
    alert = {"alert": "JobCPU", "expr": "job:cpu:avg > 90"}
    rules = [
        ("rec.yml", {"groups": [{"name": "r", "rules": [record]}]}),
        ("alerts.yml", {"groups": [{"name": "a", "rules": [alert]}]}),
    ]
    conv = convert_groups(rules[1][1], recorded={"job:cpu:avg"})
    assert conv.rules == () and "recording rule" in conv.unmappable[0].reason
    suite = _suite([{"eval_time": "2m", "alertname": "JobCPU", "exp_alerts": [{}]}], 'job:cpu:avg{job="db"}')
    result = run_suite(suite, rules, "t.yml")
    assert [o.status for o in result.outcomes] == ["skip"]
    assert "job:cpu:avg" in result.outcomes[0].messages[0]
    assert {u.name for u in result.conversion.unmappable} == {"job:cpu:avg", "JobCPU"}


def test_duplicate_alert_name_and_labels_skips_the_check_with_the_reason() -> None:
    rules = _rules(
        {"alert": "CPU", "expr": "cpu > 80", "labels": {"severity": "critical"}},
        {"alert": "CPU", "expr": "cpu > 95", "labels": {"severity": "critical"}},
    )
    suite = _suite(
        [{"eval_time": "2m", "alertname": "CPU", "exp_alerts": [{"exp_labels": {"instance": "db1"}}] * 2}],
        'cpu{instance="db1"}',
        "96x10",
    )
    result = run_suite(suite, rules, "t.yml")
    assert [o.status for o in result.outcomes] == ["skip"]
    assert "duplicate alert name with the same labels" in result.outcomes[0].messages[0]


def test_any_severity_string_is_kept_in_labels() -> None:
    suite = _suite(
        [{"eval_time": "2m", "alertname": "Down", "exp_alerts": [{"exp_labels": {"severity": "page"}}]}],
        'up{instance="db1"}',
        "0x10",
    )
    rules = _rules({"alert": "Down", "expr": "up == 0", "labels": {"severity": "page"}})
    result = run_suite(suite, rules, "t.yml")
    assert [(o.status, o.messages) for o in result.outcomes] == [("pass", ())]
    assert result.conversion.notes == ()


def test_promtool_cli_given_a_rule_file_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest.main(["--promtool", str(SUITE.parent / "rules.yml")]) == 2
    err = capsys.readouterr().err
    assert "is a Prometheus rule file, not a test file" in err and "rules.lint" in err


def test_an_unknown_severity_is_one_object_that_survives_pickling() -> None:
    page = Severity("page")
    assert page is Severity("page") and pickle.loads(pickle.dumps(page)) is page
    assert not page.is_known and Severity.CRITICAL.is_known and page.rank < Severity.WARNING.rank
    with pytest.raises(ValueError):
        Severity("")
