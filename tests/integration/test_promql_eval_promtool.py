"""The evaluator's values equal Prometheus' own (Debian's promtool 2.42) for every construct of the subset.

Each expression is evaluated here with `left_open=False` (Prometheus 2's windows) at several instants,
and the results become a `promql_expr_test` file's exact expectations: promtool passes the file only
if it computes the same samples (labels and values) at every instant. Ties in topk/bottomk are left
out: promtool's choice among equal values follows its unsorted storage order.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from rules.model import Matcher
from rules.promql.eval import Evaluator, Labels, Sample, SeriesData
from rules.promql.parse import parse_expr

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STEP = 60.0

# promtool's expanding notation, written out by hand here so the test does not depend on our own reader
SERIES: dict[str, list[float | None]] = {
    'c{job="j"}': [None, None, 1, 3, 2, 8, 9, 15, 1, 4],  # a counter with resets
    'g{i="1"}': [5, 3, 9, 2, 7, 1, 6, 6, 8, 0],
    'g{i="2"}': [1.5] * 10,  # never equal to g{i="1"}: no ties in topk
    'h_bucket{le="0.5",job="a"}': [float(k) for k in range(10)],
    'h_bucket{le="1",job="a"}': [3.0 * k for k in range(10)],
    'h_bucket{le="+Inf",job="a"}': [4.0 * k for k in range(10)],
    'up{job="a",i="1"}': [1, 1, 0, 1, None, None, None, None, None, None],
    'up{job="a",i="2"}': [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    'a{i="1",p="x"}': [10] * 10,
    'a{i="1",p="y"}': [20] * 10,
    'b{i="1",team="t"}': [2] * 10,
}
EXPRS = [
    "rate(c[5m])",
    "increase(c[3m])",
    "increase(c[10m])",
    "delta(g[4m])",
    "deriv(g[5m])",
    "avg_over_time(g[5m])",
    "sum_over_time(g[2m])",
    "min_over_time(g[5m]) + max_over_time(g[5m])",
    "count_over_time(up[3m])",
    "stddev_over_time(g[5m])",
    "stdvar_over_time(g[4m])",
    "quantile_over_time(0.3, g[5m])",
    "last_over_time(up[2m])",
    'absent_over_time(up{i="1"}[2m])',
    'absent(up{job="a",i="3"})',
    "histogram_quantile(0.9, rate(h_bucket[5m]))",
    "histogram_quantile(0.5, h_bucket)",
    "sum by (job) (up)",
    "avg(g)",
    "count(up == 0)",
    "quantile(0.75, g)",
    "min(g) * -1",
    "topk(1, g)",
    "g > bool 3",
    "3 < g",
    "g / ignoring(i) group_left sum without(i) (g)",
    "a / on(i) group_left(team) b",
    "b < on(i) group_right a",
    "max_over_time(up[3m]) unless up",
    "up or on(i) g",
    'up and on(job) g{i="2"} > 0',
    "round(g / 3, 0.25)",
    "clamp(g, 2, 6) - clamp_min(g, 4) + clamp_max(g, 4)",
    "abs(-g) + ceil(g / 4) + floor(g / 4)",
    'scalar(g{i="1"}) - g',
    'label_replace(up, "host", "h-$1", "i", "(.*)")',
    "vector(time()) % 7 ^ 2",
]
TIMES = (0, 120, 300, 540, 600)


def _labels(selector: str) -> Labels:
    name, rest = selector.split("{", 1)
    pairs = dict(part.split("=", 1) for part in rest.rstrip("}").split(","))
    return tuple(sorted({"__name__": name, **{k: v.strip('"') for k, v in pairs.items()}}.items()))


class _Store:
    def __init__(self) -> None:
        self.data = {
            _labels(sel): [(STEP * i, float(v)) for i, v in enumerate(values) if v is not None]
            for sel, values in SERIES.items()
        }

    def select(self, name: str | None, matchers: tuple[Matcher, ...]) -> Iterable[SeriesData]:
        for labels, points in sorted(self.data.items()):
            d = dict(labels)
            if (name is None or d["__name__"] == name) and all(m.matches(d) for m in matchers):
                yield SeriesData(labels, [t for t, _ in points], [v for _, v in points])


def _promtool_values(values: list[float | None]) -> str:
    return " ".join("_" if v is None else repr(float(v)) for v in values)


def _expected(expr: str, t: float) -> list[dict[str, object]] | None:
    """The samples promtool must return; None when one is NaN (promtool 2.42 cannot expect a NaN)."""
    out = Evaluator(_Store(), left_open=False).instant(parse_expr(expr), t)
    if isinstance(out, float):
        out = [Sample((), out)]
    if any(math.isnan(s.value) for s in out):
        return None
    samples: list[dict[str, object]] = []
    for s in out:
        d = dict(s.labels)
        name = d.pop("__name__", "")
        text = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"
        samples.append({"labels": text, "value": s.value})
    return samples


def test_every_construct_has_prometheus_values(promtool: str, tmp_path: Path) -> None:
    cases: list[dict[str, object]] = []
    n_samples = 0
    for expr in EXPRS:
        for t in TIMES:
            expected = _expected(expr, t)
            if expected is not None:
                cases.append({"expr": expr, "eval_time": f"{t}s", "exp_samples": expected})
                n_samples += len(expected)
    assert len(cases) > 0.9 * len(EXPRS) * len(TIMES)
    assert n_samples > 150  # the cases are not vacuous
    (tmp_path / "rules.yml").write_text("groups: []\n")
    doc = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": k, "values": _promtool_values(v)} for k, v in SERIES.items()],
                "promql_expr_test": cases,
            }
        ],
    }
    (tmp_path / "eval_test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    run = subprocess.run(
        [promtool, "test", "rules", "eval_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"promtool disagrees with rules.promql.eval:\n{run.stdout}\n{run.stderr}"
