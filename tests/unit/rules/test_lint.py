"""`python -m rules.lint`: every problem of every file, located, and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.lint import describe, lint, main
from rules.loader import BUNDLED

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "tests/rules/promtool/rules.yml"

BAD = """alert_rules:
  - name: HighCPU
    metric: cpu_usage_percent
    condition:
      operator: "=>"
      threshold: .nan
      duration: 5 minutes
    severity: page
  - name: Disk
    metric: disk_usage_percent
    condition: {operator: ">", threshold: 90}
    annotations: {summary: "{{ $foo }}"}
"""


def test_bundled_rules_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(BUNDLED)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: ")


def test_each_seed_rule_is_shown_with_its_promql(capsys: pytest.CaptureFixture[str]) -> None:
    """The execution plan (rules.promql.plan): the engine runs it, this is what it computes."""
    assert main([str(BUNDLED / "alert-rules.yml"), str(ROOT / "tests/rules/seed_flat_rules.yml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        "SEED rules: 19 rule(s) on the per-instance engine, evaluated every 1m; as PromQL"
    )
    assert "  alert HighCPUUsage, for 5m: avg_over_time(cpu_usage_percent[1m]) > 80" in out
    assert (
        "  alert ReplicationLagHigh, for 3m: "
        'quantile_over_time(0.95, replication_lag_seconds{database_type=~"postgresql|mysql"}[2m]) > 30'
    ) in out
    i = out.index("  alert CommitRateHigh, for 2m: rate(xact_commit_total[2m]) > 3")
    assert out[i + 1].startswith("    differs: rate: the engine's is the exact slope")
    assert out[i + 2] == (
        "    differs: repeats every 30m on the engine (cooldown/repeat_interval), "
        "every 4h on the group evaluator"
    )
    assert "  alert MetricsAbsent, for 5m: count_over_time(up[1d]) * 0 unless count_over_time(up[2m])" in out


def test_every_problem_is_listed_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD)
    other = tmp_path / "other.yml"
    other.write_text(
        "alert_rules:\n  - name: Disk\n    metric: x\n    condition: {operator: '>', threshold: 1}\n"
    )
    assert main([str(bad), str(other)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [
        f"{bad}:5:7: rule 'HighCPU': operator: one of ['!=', '<', '<=', '=', '==', '>', '>='], got '=>'",
        f"{bad}:6:7: rule 'HighCPU': threshold: must be a finite number, got nan",
        f"{bad}:7:7: rule 'HighCPU': duration: not a duration: '5 minutes' (use e.g. 30s, 5m, 1h30m)",
        f"{bad}:8:5: rule 'HighCPU': severity: one of ['info', 'warning', 'critical'], got 'page'",
        f"{bad}:12:19: rule 'Disk': annotations.summary: unsupported template expression {{{{ $foo }}}}",
    ]
    assert out[5].startswith(f"{other}:2:5: rule 'Disk': name: duplicate rule name")
    assert out[-1] == "6 problem(s) in 2 file(s): the jobs refuse to start with them"


def test_a_prometheus_file_is_shown_as_the_live_job_loads_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(PROM)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"GROUP {PROM}: database: 7 rule(s), evaluated every 1m"
    assert out[1] == (
        '  line 7: alert HighCPU, for 5m: avg_over_time(cpu_usage_percent{environment="production"}[5m]) > 80'
    )
    assert "  line 32: alert DiskFull, keep_firing_for 10m: 90 < disk_usage_percent" in out
    # arithmetic across series and recording rules are evaluated now, not skipped
    assert any(line.startswith("  line 39: alert LoadPerCPU: node_load1 / on(instance)") for line in out)
    assert "  line 44: record instance:cpu:avg5m (also to RECORDED_TOPIC): " in "\n".join(out)
    assert out[-1] == "ok: 7 rule(s) in 1 file(s)"
    report = lint([PROM])
    assert [g.name for g in report.groups] == ["database"] and report.rules == 7


PROM_BAD = """groups:
  - name: g
    rules:
      - alert: WillFill
        expr: predict_linear(disk_free[1h], 3600) < 0
      - record: lagged
        expr: cpu offset 5m
  - name: h
    interval: 30s
    rules:
      - alert: Later
        expr: x:rate > 1
      - record: x:rate
        expr: rate(x[5m])
  - name: ok
    rules:
      - alert: Fine
        expr: up == 0
"""


def test_prometheus_problems_are_located_and_name_the_construct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(PROM_BAD)
    other = tmp_path / "other.yml"  # a group name of bad.yml again, in another file
    other.write_text("groups:\n  - name: ok\n    rules:\n      - {alert: Down, expr: up == 0}\n")
    seed = tmp_path / "seed.yml"  # seed and Prometheus files lint together, as RULES_PATH loads them
    seed.write_text(BAD)
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    mine = [line for line in out if line.startswith(str(bad))]
    assert mine[0].startswith(f"{bad}:5:9: rule 'WillFill': expr: function predict_linear is not supported")
    assert mine[1].startswith(f"{bad}:7:9: rule 'lagged': expr: offset is not supported")
    assert mine[2].startswith(f"{bad}:12:9: rule 'Later': expr: reads 'x:rate', which rule #2 (line 13)")
    assert len(mine) == 3
    assert any(line.startswith(f"{other}:1:1: name: group name 'ok' is also in {bad}") for line in out)
    assert sum(line.startswith(str(seed)) for line in out) == 5
    assert out[-1] == "9 problem(s) in 3 file(s): the jobs refuse to start with them"
    assert not any(line.startswith("GROUP") for line in out)  # nothing is said to load


def test_a_group_without_interval_is_shown_with_the_default(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("groups:\n  - name: g\n    rules:\n      - {alert: Down, expr: up == 0, for: 90s}\n")
    report = lint([path])
    assert report.problems == () and report.rules == 1
    assert describe(report.groups[0]) == [
        f"GROUP {path}: g: 1 rule(s), evaluated every 1m (default)",
        "  line 4: alert Down, for 90s: up == 0",
    ]


def test_yaml_errors_and_missing_files_are_problems_not_crashes(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("alert_rules:\n  - name: [\n")
    report = lint([broken, tmp_path / "missing.yml"])
    assert [
        (Path(p.file).name, "invalid YAML" in p.message or "cannot read" in p.message)
        for p in report.problems
    ] == [
        ("broken.yml", True),
        ("missing.yml", True),
    ]
    assert report.problems[0].line is not None


def test_no_files_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no rule files" in capsys.readouterr().err
