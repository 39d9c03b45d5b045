"""Rule files: both seed formats load; a bad file lists every problem with file/rule/field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import BUNDLED, RuleFileError, load_rules, parse_duration, prometheus_files
from rules.model import Aggregation, Op, Severity

SEED_LIST = """
alert_rules:
  - name: HighCPUUsage
    description: "CPU is high"
    metric: cpu_usage_percent
    condition:
      operator: ">"
      threshold: 80
      duration: 5m
      aggregation: p95
    severity: critical
    tags: {environment: production, region: "~us-.*"}
    labels: {team: dba}
    annotations: {summary: "{{ $labels.instance_id }} at {{ $value }}"}
    runbook_url: https://runbooks/cpu
"""

SEED_FLAT = """
alerting:
  rules:
    - name: high_memory
      metric: memory_usage_percent
      operator: ">="
      threshold: 90
      severity: warning
      cooldown_minutes: 15
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_alert_rules_format(tmp_path: Path) -> None:
    rs = load_rules([write(tmp_path, "a.yml", SEED_LIST)])
    (r,) = rs.rules
    assert (r.name, r.metric, r.op, r.threshold, r.for_s) == (
        "HighCPUUsage",
        "cpu_usage_percent",
        Op.GT,
        80.0,
        300.0,
    )
    assert r.aggregation is Aggregation.P95 and r.severity is Severity.CRITICAL
    assert dict(r.labels) == {"team": "dba"}
    assert dict(r.annotations) == {
        "summary": "{{ $labels.instance_id }} at {{ $value }}",
        "description": "CPU is high",
    }
    assert [m.name for m in r.matchers] == ["environment", "region"] and r.matchers[1].regex


def test_flat_format(tmp_path: Path) -> None:
    rs = load_rules([write(tmp_path, "config.yaml", SEED_FLAT)])
    (r,) = rs.rules
    assert (r.name, r.op, r.threshold, r.severity, r.repeat_interval_s) == (
        "high_memory",
        Op.GE,
        90.0,
        Severity.WARNING,
        900.0,
    )
    assert r.for_s == 0.0


def test_bundled_rules_cover_the_seed_examples() -> None:
    rs = load_rules([BUNDLED])
    metrics = {r.metric for r in rs.rules}
    assert {
        "cpu_usage_percent",
        "memory_usage_percent",
        "disk_usage_percent",
        "replication_lag_seconds",
        "connection_usage_percent",
        "kafka_consumer_lag",
        "up",
    } <= metrics
    assert any(r.no_data for r in rs.rules)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    bad = """
alert_rules:
  - name: A
    metric: cpu
    condition: {operator: "=>", threshold: high, duration: 5 minutes, aggregation: median}
    severity: page
  - name: B
    condition: {operator: ">", threshold: 1}
    annotations: {summary: "{{ $foo }}"}
    colour: red
  - name: A
    metric: x
    condition: {operator: ">", threshold: 1}
"""
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "bad.yml", bad), write(tmp_path, "broken.yml", "alert_rules: [\n")])
    text = str(err.value)
    fields = {(p.rule, p.field) for p in err.value.problems}
    assert {
        ("A", "operator"),
        ("A", "threshold"),
        ("A", "duration"),
        ("A", "aggregation"),
        ("A", "severity"),
        ("B", "metric"),
        ("B", "annotations.summary"),
        ("B", "colour"),
    } <= fields
    assert "broken.yml" in text and "invalid YAML" in text
    assert "duplicate rule name" in text
    assert all(p.file.endswith(("bad.yml", "broken.yml")) for p in err.value.problems)


def test_silences_and_inhibits(tmp_path: Path) -> None:
    text = (
        SEED_FLAT
        + """
silences:
  - matchers: {instance_id: prod-db-01}
    starts_at: "2025-01-15T10:00:00Z"
    ends_at: "2025-01-15T11:00:00Z"
    comment: patching
  - matchers: {}
    starts_at: "2025-01-15T10:00:00"
    ends_at: "2025-01-15T09:00:00Z"
inhibit_rules:
  - source_match: {severity: critical}
    target_match: {severity: info}
    equal: [instance_id, alertname]
"""
    )
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "s.yml", text)])
    msgs = [p.message for p in err.value.problems]
    assert any("at least one matcher" in m for m in msgs)
    assert any("without timezone" in m for m in msgs)
    ok = text.split("  - matchers: {}")[0] + text.split('ends_at: "2025-01-15T09:00:00Z"\n')[1]
    rs = load_rules([write(tmp_path, "s.yml", ok)])
    assert len(rs.silences) == 1 and rs.silences[0].comment == "patching"
    assert rs.inhibit_rules[0].equal == ("instance_id", "alertname")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("90s", 90), ("250ms", 0.25), ("1d", 86400), (45, 45), ("0", 0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "", "-1", "m5", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules([tmp_path / "nope.yml"])


# --------------------------------------------------------------------------- issue 10 (items 10, 23)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_threshold_is_refused_with_file_line_rule_and_field(tmp_path: Path, value: str) -> None:
    text = f"""alert_rules:
  - name: HighCPU
    metric: cpu_usage_percent
    condition:
      operator: ">"
      threshold: {value}
      duration: 5m
"""
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "nan.yml", text)])
    (p,) = err.value.problems
    assert (p.rule, p.field, p.line) == ("HighCPU", "threshold", 6)
    assert "finite" in p.message and str(p).startswith(f"{tmp_path / 'nan.yml'}:6:7: rule 'HighCPU'")


def test_non_finite_durations_and_cooldowns_are_refused(tmp_path: Path) -> None:
    text = """rules:
  - name: A
    metric: m
    operator: ">"
    threshold: 1
    duration: .nan
    cooldown_minutes: .inf
"""
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "d.yml", text)])
    assert {(p.field, p.line) for p in err.value.problems} == {("duration", 6), ("cooldown_minutes", 7)}


LOCATED = """settings:
  bogus: 1
alert_rules:
  - name: A
    metric: cpu
    condition: {operator: "=>", threshold: 1}
    severity: page
  - just a string
silences:
  - matchers: {}
    starts_at: "2025-01-15T10:00:00Z"
    ends_at: "2025-01-15T11:00:00Z"
"""
"""A file with a problem on each of several lines (and columns)."""


def test_every_problem_has_the_line_it_is_on(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "l.yml", LOCATED), write(tmp_path, "y.yml", "a: 1\nb: [\n")])
    got = {(p.file.rsplit("/", 1)[-1], p.rule, p.field, p.line) for p in err.value.problems}
    assert {
        ("l.yml", "", "settings.bogus", 2),
        ("l.yml", "A", "operator", 6),
        ("l.yml", "A", "severity", 7),
        ("l.yml", "#2", "", 8),
        ("l.yml", "", "silences[0].matchers", 10),
    } <= got
    (broken,) = [p for p in err.value.problems if p.file.endswith("y.yml")]
    assert "invalid YAML" in broken.message and broken.line is not None


def test_a_prometheus_rule_file_is_passed_by_to_the_promql_loader(tmp_path: Path) -> None:
    prom = write(tmp_path, "prom.yml", "groups:\n  - name: g\n    rules: [{alert: A, expr: 'up == 0'}]\n")
    seed = write(tmp_path, "seed.yml", SEED_LIST)
    assert load_rules([prom]).rules == ()
    assert [r.name for r in load_rules([tmp_path]).rules] == [r.name for r in load_rules([seed]).rules]
    assert prometheus_files([tmp_path]) == [prom] and prometheus_files([seed]) == []


def test_seed_rules_still_refuse_an_unknown_severity(tmp_path: Path) -> None:
    text = SEED_LIST.replace("severity: critical", "severity: critcal")
    with pytest.raises(RuleFileError, match="severity: one of"):
        load_rules([write(tmp_path, "s.yml", text)])
    assert [s.value for s in Severity] == ["info", "warning", "critical"]


# --------------------------------------------------------------------------- issue 11 (item 4)


def test_every_problem_has_the_column_it_is_on_as_rulefmt_prints_it(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as err:
        load_rules([write(tmp_path, "l.yml", LOCATED), write(tmp_path, "y.yml", "a: 1\nb: [\n")])
    got = {(p.file.rsplit("/", 1)[-1], p.rule, p.field, p.line, p.column) for p in err.value.problems}
    assert {
        ("l.yml", "", "settings.bogus", 2, 3),
        ("l.yml", "A", "operator", 6, 17),  # inside the flow mapping, where the key is
        ("l.yml", "A", "severity", 7, 5),
        ("l.yml", "#2", "", 8, 5),
        ("l.yml", "", "silences[0].matchers", 10, 5),
    } <= got
    by_field = {p.field: p for p in err.value.problems if p.file.endswith("l.yml")}
    assert str(by_field["severity"]).startswith(f"{tmp_path / 'l.yml'}:7:5: rule 'A': severity: one of")
    (broken,) = [p for p in err.value.problems if p.file.endswith("y.yml")]
    assert (broken.line, broken.column) == (3, 1) and str(broken).startswith(f"{tmp_path / 'y.yml'}:3:1: ")


def test_a_problem_without_a_position_prints_the_file_alone(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as err:
        load_rules([tmp_path / "nope.yml"])
    (p,) = err.value.problems
    assert (p.line, p.column) == (None, None) and str(p).startswith(f"{tmp_path / 'nope.yml'}: cannot read")
