"""One duration grammar (rules/duration.py) for rule files, PromQL, promtool tests and backtests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.duration import parse_duration
from rules.loader import load_rules
from rules.promql import ast
from rules.promql.parse import PromqlError, parse_expr
from rules.promql.rulefile import AlertingRule, load_prometheus_rules


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("1m5ms", 60.005),
        ("1d", 86400.0),
        ("2w", 14 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1y2w3d4h5m6s7ms", 365 * 86400 + 17 * 86400 + 4 * 3600 + 5 * 60 + 6.007),
        ("1.5s", 1.5),  # fractions: accepted by the rule loader and the backtest before the merge
        ("0.5h", 1800.0),
        ("0", 0.0),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_prometheus_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(
    "text", ["30s5m", "5m5m", "1", "ms", "5 minutes", "-5m", "", " ", None, True, float("inf"), -1]
)
def test_what_prometheus_refuses_is_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["2w", "1y", "1d12h", "90s", "1m30s"])
def test_rule_files_and_promql_read_the_same_durations(tmp_path: Path, text: str) -> None:
    seed = tmp_path / "seed.yml"
    seed.write_text(
        "alert_rules:\n  - name: A\n    metric: m\n"
        f"    condition: {{operator: '>', threshold: 1, duration: {text}}}\n"
    )
    (rule,) = load_rules([seed]).rules
    prom = tmp_path / "prom.yml"
    prom.write_text(
        f"groups:\n  - name: g\n    rules:\n      - {{alert: A, expr: 'rate(m[{text}]) > 1', for: {text}}}\n"
    )
    ((alert,),) = [g.rules for g in load_prometheus_rules([prom])]
    assert isinstance(alert, AlertingRule)
    call = parse_expr(f"rate(m[{text}])")
    assert isinstance(call, ast.Call) and isinstance(call.args[0], ast.MatrixSelector)
    window = call.args[0].range_s
    assert rule.for_s == alert.for_s == window == parse_duration(text)


@pytest.mark.parametrize("text", ["30s5m", "1.5m", "5 minutes"])
def test_promql_refuses_what_prometheus_refuses_in_a_range(text: str) -> None:
    # the parser's own grammar: no fractions, units in order (rule-file fields accept fractions)
    with pytest.raises(PromqlError, match=r"invalid PromQL .*(not a valid duration|inside brackets)"):
        parse_expr(f"rate(m[{text}])")
