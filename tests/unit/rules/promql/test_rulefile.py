"""Prometheus rule files load into RuleGroups; every problem is reported at once, located."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import RuleFileError
from rules.promql import ast
from rules.promql.rulefile import (
    AlertingRule,
    RecordingRule,
    is_prometheus_rule_file,
    load_prometheus_rules,
)

GOOD = """\
groups:
  - name: database
    interval: 30s
    labels: {team: dba}
    rules:
      - record: instance:cpu:avg5m
        expr: avg_over_time(cpu_usage_percent[5m])
      - alert: HighCPU
        expr: instance:cpu:avg5m > 80
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: warning
        annotations:
          summary: 'CPU at {{ $value | humanize }}% on {{ $labels.instance }}'
  - name: lag
    rules:
      - alert: Lag
        expr: max by (cluster) (pg_replication_lag_seconds) > 30
"""


def write(tmp_path: Path, text: str, name: str = "rules.yml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RuleFileError) as err:
        load_prometheus_rules([write(tmp_path, text)])
    return [str(p) for p in err.value.problems]


def test_a_rule_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert is_prometheus_rule_file(path)
    db, lag = load_prometheus_rules([tmp_path])
    assert (db.name, db.interval_s, db.source) == ("database", 30.0, str(path))
    rec, alert = db.rules
    assert isinstance(rec, RecordingRule) and rec.name == "instance:cpu:avg5m"
    assert rec.labels == (("team", "dba"),)  # the group's labels
    assert isinstance(rec.expr, ast.Call) and rec.expr.func == "avg_over_time"
    assert isinstance(alert, AlertingRule)
    assert (alert.name, alert.for_s, alert.keep_firing_for_s, alert.line) == ("HighCPU", 300.0, 60.0, 8)
    assert alert.labels == (("severity", "warning"), ("team", "dba"))
    assert alert.expr_text == "instance:cpu:avg5m > 80"
    ((key, tmpl),) = alert.annotation_templates
    assert key == "summary" and tmpl.render({"instance": "db1"}, 85.0) == "CPU at 85% on db1"
    assert lag.interval_s is None and isinstance(lag.rules[0].expr, ast.Binary)


def test_seed_files_are_not_prometheus_files() -> None:
    root = Path(__file__).resolve().parents[4]
    assert not is_prometheus_rule_file(root / "rules/bundled/alert-rules.yml")


def test_unsupported_promql_is_refused_at_expr_with_the_construct(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: Predict
        expr: predict_linear(disk[1h], 3600) < 0
      - alert: Old
        expr:   rate(x[5m] offset 1h) > 1
      - record: bad
        expr: sum(
""",
    )
    assert len(got) == 3
    assert got[0].startswith(f"{tmp_path}/rules.yml:5:9: rule 'Predict': expr: function predict_linear")
    assert got[1].startswith(f"{tmp_path}/rules.yml:7:9: rule 'Old': expr: offset is not supported")
    assert got[2].startswith(f"{tmp_path}/rules.yml:9:9: rule 'bad': expr: invalid PromQL")


def test_every_problem_at_once_with_positions(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        """\
groups:
  - name: g
    interval: often
    rules:
      - alert: A
        record: a
        expr: up
      - alert: B
        expr: up == 0
        for: soon
        labels: {"bad-name": x}
        annotations:
          summary: '{{ query "up" }}'
        severity: page
      - record: not a metric
        expr: up
        for: 5m
      - expr: up
  - name: g
    rules: []
extra: 1
""",
    )
    text = "\n".join(got)
    for expected in (
        "rules.yml:3:5: group g: interval: not a duration",
        "rules.yml:5:9: rule 'a': a rule needs exactly one of `alert:` and `record:`",
        "rules.yml:10:9: rule 'B': for: not a duration",
        "rules.yml:11:18: rule 'B': labels.bad-name: invalid name",
        "rules.yml:13:11: rule 'B': annotations.summary: template: function `query` is not supported",
        "rules.yml:14:9: rule 'B': severity: unknown field",
        "rules.yml:15:9: rule 'not a metric': record: invalid recording rule name",
        "rules.yml:17:9: rule 'not a metric': for: `for` is for alerting rules",
        "rules.yml:18:9: rule '?': a rule needs exactly one",
        "rules.yml:19:5: name: group name 'g' is repeated in the same file",
        "rules.yml:21:1: extra: unknown field",
    ):
        assert expected in text, (expected, got)
    assert len(got) == 11  # in file order
    assert [int(p.split(":")[1]) for p in got] == sorted(int(p.split(":")[1]) for p in got)


def test_forward_reference_to_a_recording_rule_is_refused(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: UsesLater
        expr: job:up:sum < 1
      - record: job:up:sum
        expr: sum by (job) (up)
      - record: self:ref
        expr: self:ref + 1
""",
    )
    assert len(got) == 2
    assert (
        "rules.yml:5:9: rule 'UsesLater': expr: reads 'job:up:sum', which rule #2 (line 6) records later"
        in got[0]
    )
    assert "move the recording rule above this rule" in got[0]
    assert "reads 'self:ref', which itself records later" in got[1]


def test_recording_rule_read_after_it_is_fine(tmp_path: Path) -> None:
    (g,) = load_prometheus_rules([write(tmp_path, GOOD.split("  - name: lag")[0])])
    assert [r.name for r in g.rules] == ["instance:cpu:avg5m", "HighCPU"]


def test_group_names_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yml")
    write(tmp_path, GOOD, "b.yml")
    with pytest.raises(RuleFileError) as err:
        load_prometheus_rules([tmp_path])
    msgs = [str(p) for p in err.value.problems]
    assert len(msgs) == 2 and all("must be unique across the rule set" in m for m in msgs)
    assert "group name 'database' is also in" in msgs[0] and str(tmp_path / "a.yml") in msgs[0]
