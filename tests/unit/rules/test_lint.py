"""`python -m rules.lint`: every problem of every file, located, and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.lint import lint, main
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
    assert capsys.readouterr().out.startswith("ok: ")


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
    assert out[-1] == "6 problem(s) in 2 file(s)"


def test_a_prometheus_file_is_pointed_to_promtool_and_its_mapping_linted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(PROM)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"NOTE {PROM}: a Prometheus rule file: the live job does not load these yet")
    assert "flows.backtest --promtool" in out[0]
    assert out[1].startswith(f"{PROM}:39:9: rule 'LoadPerCPU': not mappable (group database): ")
    assert out[2].startswith(
        f"{PROM}:44:9: rule 'instance:cpu:avg5m': not mappable (group database): recording"
    )
    assert lint([PROM]).rules == 5


def test_a_prometheus_file_that_maps_lints_clean_with_the_pointer(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("groups:\n  - name: g\n    rules:\n      - {alert: Down, expr: up == 0}\n")
    report = lint([path])
    assert report.problems == () and report.rules == 1
    assert "--promtool" in report.notes[0]


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
