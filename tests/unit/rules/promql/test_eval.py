"""The PromQL evaluator against hand-computed Prometheus results, construct by construct.

Expected values are worked out from prometheus/promql (engine.go, functions.go, quantile.go);
the arithmetic is in the comments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pytest

from rules.model import Matcher
from rules.promql.eval import STALE_NAN, Evaluator, Labels, PromqlEvalError, Sample, SeriesData, is_stale
from rules.promql.parse import parse_expr


class FakeStore:
    """Minimal Store: series given as {labels: [(t, v), ...]}."""

    def __init__(self, series: Mapping[Labels, Sequence[tuple[float, float]]]) -> None:
        self.series = series

    def select(self, name: str | None, matchers: tuple[Matcher, ...]) -> Iterable[SeriesData]:
        for labels, points in sorted(self.series.items()):
            d = dict(labels)
            if name is not None and d.get("__name__") != name:
                continue
            if all(m.matches(d) for m in matchers):
                yield SeriesData(labels, [t for t, _ in points], [v for _, v in points])


def lbl(name: str | None = None, **labels: str) -> Labels:
    d = dict(labels)
    if name:
        d["__name__"] = name
    return tuple(sorted(d.items()))


def run(
    text: str, t: float, series: Mapping[Labels, Sequence[tuple[float, float]]], *, left_open: bool = True
) -> dict[Labels, float] | float:
    out = Evaluator(FakeStore(series), left_open=left_open).instant(parse_expr(text), t)
    if isinstance(out, float):
        return out
    result = {s.labels: s.value for s in out}
    assert len(result) == len(out)
    return result


def vec(text: str, t: float, series: Mapping[Labels, Sequence[tuple[float, float]]]) -> dict[Labels, float]:
    out = run(text, t, series)
    assert isinstance(out, dict)
    return out


def scalar(
    text: str, t: float = 0, series: Mapping[Labels, Sequence[tuple[float, float]]] | None = None
) -> float:
    out = run(text, t, series or {})
    assert isinstance(out, float)
    return out


def approx(d: dict[Labels, float] | float) -> object:
    return pytest.approx(d, rel=1e-12, nan_ok=True)


# ------------------------------------------------------------------ selectors and windows

STEPS = {lbl("x", i="1"): [(0, 1.0), (60, 2.0)]}


def test_instant_selector_takes_newest_sample_within_lookback() -> None:
    assert run("x", 30, STEPS) == {lbl("x", i="1"): 1.0}
    assert run("x", 359, STEPS) == {lbl("x", i="1"): 2.0}
    # Prometheus 3: the lookback is left-open, (t-5m, t]: the sample at 60 is out at 360
    assert run("x", 360, STEPS) == {}
    # Prometheus 2: [t-5m, t] still has it; at 361 it is gone
    assert run("x", 360, STEPS, left_open=False) == {lbl("x", i="1"): 2.0}
    assert run("x", 361, STEPS, left_open=False) == {}
    assert run("x", -1, STEPS) == {}


def test_staleness_marker_ends_the_series() -> None:
    assert is_stale(STALE_NAN) and not is_stale(math.nan)
    series = {lbl("x"): [(0, 1.0), (30, STALE_NAN)]}
    assert run("x", 20, series) == {lbl("x"): 1.0}
    assert run("x", 40, series) == {}
    # range functions skip the marker
    assert run("count_over_time(x[1m])", 40, series) == {(): 1.0}


def test_matchers_select_series() -> None:
    series = {
        lbl("x", env="prod", i="a"): [(0, 1.0)],
        lbl("x", env="dev", i="b"): [(0, 2.0)],
        lbl("y"): [(0, 3.0)],
    }
    assert run('x{env="prod"}', 0, series) == {lbl("x", env="prod", i="a"): 1.0}
    assert run('x{env!="prod"}', 0, series) == {lbl("x", env="dev", i="b"): 2.0}
    assert run('x{i=~"a|b"}', 0, series) == {
        lbl("x", env="prod", i="a"): 1.0,
        lbl("x", env="dev", i="b"): 2.0,
    }
    assert run('{__name__=~"x|y", env!~"d.*"}', 0, series) == {
        lbl("x", env="prod", i="a"): 1.0,
        lbl("y"): 3.0,
    }


RAMP = {lbl("x"): [(60.0 * k, float(k)) for k in range(6)]}  # 0,1,...,5 at 0,60,...,300


def test_range_window_left_open_or_closed() -> None:
    assert run("count_over_time(x[5m])", 300, RAMP) == {(): 5.0}  # (0, 300]
    assert run("count_over_time(x[5m])", 300, RAMP, left_open=False) == {(): 6.0}  # [0, 300]
    assert run("count_over_time(x[1m])", 330, RAMP) == {(): 1.0}
    assert run("count_over_time(x[1m])", 1000, RAMP) == {}  # empty window: no element


OVER = {lbl("x", i="1"): [(0, 1.0), (60, 2.0), (120, 3.0), (180, 4.0)]}


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        ("avg_over_time", 2.5),
        ("min_over_time", 1.0),
        ("max_over_time", 4.0),
        ("sum_over_time", 10.0),
        ("count_over_time", 4.0),
        ("stdvar_over_time", 1.25),  # deviations 1.5, .5, .5, 1.5 -> (2.25+.25+.25+2.25)/4
        ("stddev_over_time", math.sqrt(1.25)),
    ],
)
def test_over_time_functions_drop_the_name(fn: str, expected: float) -> None:
    assert run(f"{fn}(x[5m])", 180, OVER) == approx({lbl(i="1"): expected})


def test_last_and_quantile_over_time() -> None:
    assert run("last_over_time(x[5m])", 180, OVER) == {lbl("x", i="1"): 4.0}  # keeps __name__
    assert run("quantile_over_time(0.5, x[5m])", 180, OVER) == approx({lbl(i="1"): 2.5})  # rank 1.5
    assert run("quantile_over_time(0.9, x[5m])", 180, OVER) == approx({lbl(i="1"): 3.7})  # 3*.3 + 4*.7
    assert run("quantile_over_time(2, x[5m])", 180, OVER) == {lbl(i="1"): math.inf}


def test_max_over_time_replaces_a_leading_nan() -> None:
    series = {lbl("x"): [(0, math.nan), (60, 1.0)]}
    assert run("max_over_time(x[5m])", 60, series) == {(): 1.0}
    assert run("min_over_time(x[5m])", 60, series) == {(): 1.0}


# ------------------------------------------------------------------ rate, increase, delta, deriv

COUNTER = {lbl("c", job="j"): [(60.0 * k, 10.0 * k) for k in range(6)]}  # 0,10,...,50 at 0..300


def test_rate_and_increase_extrapolate_as_prometheus_3() -> None:
    # window (0,300]: 10..50 at 60..300, result 40, sampled 240s, avg step 60 (threshold 66);
    # to start 60s (< 66, kept; zero point 240*10/40 = 60 is not shorter); to end 0.
    # factor (240+60+0)/240 = 1.25 -> increase 50, rate 50/300
    assert run("increase(c[5m])", 300, COUNTER) == approx({lbl(job="j"): 50.0})
    assert run("rate(c[5m])", 300, COUNTER) == approx({lbl(job="j"): 50.0 / 300})


def test_rate_prometheus_2_window_includes_the_left_edge() -> None:
    # window [0,300]: 0..50, result 50, to start 0, to end 0: factor 1
    assert run("increase(c[5m])", 300, COUNTER, left_open=False) == approx({lbl(job="j"): 50.0})


def test_increase_handles_counter_resets() -> None:
    series = {lbl("c"): [(0, 0.0), (60, 10.0), (120, 20.0), (180, 5.0), (240, 15.0)]}
    # window (0,240]: 10,20,5,15: 15-10 + 20 (reset) = 25; sampled 180, to start 60 (< 66),
    # zero point 180*10/25 = 72 (not shorter): factor (180+60)/180
    assert run("increase(c[4m])", 240, series) == approx({(): 25.0 * 240 / 180})


def test_rate_zero_point_clamp_order_differs_between_prometheus_2_and_3() -> None:
    series = {lbl("c"): [(300, 1.0), (360, 2.0), (420, 3.0)]}
    # range 10m at t=600: result 2, sampled 120, avg 60, threshold 66; raw to start 300, to end 180.
    # 3.x: to start -> avg/2 = 30, then min(30, zero point 120*1/2 = 60) = 30; end -> 30:
    #      (120+30+30)/120 = 1.5 -> 3
    # 2.42: min(300, 60) = 60, which is < 66 so it is used; end 30: (120+60+30)/120 = 1.75 -> 3.5
    assert run("increase(c[10m])", 600, series) == approx({(): 3.0})
    assert run("increase(c[10m])", 600, series, left_open=False) == approx({(): 3.5})


def test_rate_needs_two_samples() -> None:
    assert run("rate(c[1m])", 330, COUNTER) == {}


def test_delta_is_not_a_counter() -> None:
    series = {lbl("g"): [(60, 10.0), (120, 5.0)]}
    # window (0,120]: -5; to start 60 (< 66), to end 0, sampled 60: factor 2 -> -10
    assert run("delta(g[2m])", 120, series) == approx({(): -10.0})
    # the same as a counter: a reset adds 10 -> 5, and the zero point is not used (result > 0
    # but 60*10/5 = 120 > 60): 5 * 2
    assert run("increase(g[2m])", 120, series) == approx({(): 10.0})


def test_deriv_is_the_least_squares_slope() -> None:
    series = {lbl("g"): [(0, 1.0), (60, 3.0), (120, 5.0)]}
    assert run("deriv(g[5m])", 120, series) == approx({(): 2.0 / 60})
    flat = {lbl("g"): [(0, 4.0), (60, 4.0)]}
    assert run("deriv(g[5m])", 60, flat) == {(): 0.0}


# ------------------------------------------------------------------ instant functions


def test_absent_and_absent_over_time() -> None:
    series = {lbl("up", job="a"): [(0, 1.0)]}
    assert run('absent(up{job="a"})', 0, series) == {}
    assert run('absent(nope{job="a", env=~"p.*", i="1", i="2"})', 0, series) == {lbl(job="a"): 1.0}
    assert run("absent(sum(nope))", 0, series) == {(): 1.0}
    assert run('absent_over_time(up{job="a"}[1m])', 30, series) == {}
    assert run('absent_over_time(up{job="a"}[1m])', 90, series) == {lbl(job="a"): 1.0}


def test_scalar_vector_time() -> None:
    two = {lbl("x", i="1"): [(0, 3.0)], lbl("x", i="2"): [(0, 4.0)]}
    assert run("time()", 100, two) == 100.0
    assert run('scalar(x{i="1"})', 0, two) == 3.0
    assert math.isnan(scalar("scalar(x)", 0, two))
    assert run("vector(3)", 0, two) == {(): 3.0}
    assert run('x * scalar(x{i="2"})', 0, two) == {lbl(i="1"): 12.0, lbl(i="2"): 16.0}


def test_math_functions_drop_the_name() -> None:
    series = {lbl("x", i="a"): [(0, 1.26)], lbl("x", i="b"): [(0, -2.5)], lbl("x", i="c"): [(0, 2.5)]}
    assert run("round(x)", 0, series) == {lbl(i="a"): 1.0, lbl(i="b"): -2.0, lbl(i="c"): 3.0}  # ties round up
    assert run("round(x, 0.5)", 0, series) == {lbl(i="a"): 1.5, lbl(i="b"): -2.5, lbl(i="c"): 2.5}
    assert run("ceil(x)", 0, series) == {lbl(i="a"): 2.0, lbl(i="b"): -2.0, lbl(i="c"): 3.0}
    assert run("floor(x)", 0, series) == {lbl(i="a"): 1.0, lbl(i="b"): -3.0, lbl(i="c"): 2.0}
    assert run("abs(x)", 0, series) == {lbl(i="a"): 1.26, lbl(i="b"): 2.5, lbl(i="c"): 2.5}
    assert run("clamp(x, 0, 2)", 0, series) == {lbl(i="a"): 1.26, lbl(i="b"): 0.0, lbl(i="c"): 2.0}
    assert run("clamp_min(x, 0)", 0, series) == {lbl(i="a"): 1.26, lbl(i="b"): 0.0, lbl(i="c"): 2.5}
    assert run("clamp_max(x, 0)", 0, series) == {lbl(i="a"): 0.0, lbl(i="b"): -2.5, lbl(i="c"): 0.0}
    assert run("clamp(x, 2, 1)", 0, series) == {}


def test_ceil_and_floor_keep_the_sign_of_a_zero_as_go_does() -> None:
    # promtool renders ceil(-0.3) as -0: an alert's $value must read the same here
    series = {lbl("x", i="a"): [(0, -0.3)], lbl("x", i="b"): [(0, -0.0)]}
    ceil, floor = run("ceil(x)", 0, series), run("floor(x)", 0, series)
    assert isinstance(ceil, dict) and isinstance(floor, dict)
    assert all(v == 0 and math.copysign(1.0, v) == -1.0 for v in ceil.values())
    assert math.copysign(1.0, floor[lbl(i="b")]) == -1.0


def test_label_replace() -> None:
    series = {lbl("up", i="pg-1"): [(0, 1.0)], lbl("up", i="redis"): [(0, 1.0)]}
    assert run('label_replace(up, "host", "h$1", "i", "pg-(.*)")', 0, series) == {
        lbl("up", i="pg-1", host="h1"): 1.0,
        lbl("up", i="redis"): 1.0,  # no match: unchanged
    }
    # Go's expansion: `$1x` is the (missing) group "1x", so the label is empty, i.e. not set
    assert run('label_replace(up, "host", "$1x", "i", "pg-(.*)")', 0, series) == {
        lbl("up", i="pg-1"): 1.0,
        lbl("up", i="redis"): 1.0,
    }
    got = vec('label_replace(up, "host", "${1}x", "i", "pg-(.*)")', 0, series)
    assert got[lbl("up", i="pg-1", host="1x")] == 1.0


HIST = {
    lbl("h_bucket", le="1", job="a"): [(0, 5.0)],
    lbl("h_bucket", le="2", job="a"): [(0, 10.0)],
    lbl("h_bucket", le="+Inf", job="a"): [(0, 10.0)],
}


def test_histogram_quantile() -> None:
    # q=.5: rank 5 is in the first bucket (0,1]: 0 + 1*5/5 = 1
    assert run("histogram_quantile(0.5, h_bucket)", 0, HIST) == {lbl(job="a"): 1.0}
    # q=.75: rank 7.5 in (1,2]: 1 + 1*(7.5-5)/(10-5) = 1.5
    assert run("histogram_quantile(0.75, h_bucket)", 0, HIST) == {lbl(job="a"): 1.5}
    assert run("histogram_quantile(1.5, h_bucket)", 0, HIST) == {lbl(job="a"): math.inf}
    no_inf = {k: v for k, v in HIST.items() if dict(k)["le"] != "+Inf"}
    assert math.isnan(vec("histogram_quantile(0.5, h_bucket)", 0, no_inf)[lbl(job="a")])
    # the top bucket: the last finite bound
    top = dict(HIST) | {lbl("h_bucket", le="+Inf", job="a"): [(0, 20.0)]}
    assert run("histogram_quantile(0.9, h_bucket)", 0, top) == {lbl(job="a"): 2.0}


def test_histogram_quantile_forces_monotonic_buckets() -> None:
    series = {
        lbl("h_bucket", le="1"): [(0, 6.0)],
        lbl("h_bucket", le="2"): [(0, 5.0)],  # lower than the bucket below: taken as 6
        lbl("h_bucket", le="+Inf"): [(0, 10.0)],
    }
    assert run("histogram_quantile(0.5, h_bucket)", 0, series) == approx({(): 5.0 / 6.0})
    assert run("histogram_quantile(0.5, h_bucket)", 0, series, left_open=False) == approx({(): 5.0 / 6.0})


# ------------------------------------------------------------------ aggregations

AGG = {
    lbl("m", i="1", p="x"): [(0, 1.0)],
    lbl("m", i="1", p="y"): [(0, 3.0)],
    lbl("m", i="2", p="x"): [(0, 10.0)],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sum(m)", {(): 14.0}),
        ("sum by (i) (m)", {lbl(i="1"): 4.0, lbl(i="2"): 10.0}),
        ("sum(m) by (i)", {lbl(i="1"): 4.0, lbl(i="2"): 10.0}),
        ("avg without (p) (m)", {lbl(i="1"): 2.0, lbl(i="2"): 10.0}),
        ("count by (p) (m)", {lbl(p="x"): 2.0, lbl(p="y"): 1.0}),
        ("min by (i) (m)", {lbl(i="1"): 1.0, lbl(i="2"): 10.0}),
        ("max by (p) (m)", {lbl(p="x"): 10.0, lbl(p="y"): 3.0}),
        ("quantile(0.5, m)", {(): 3.0}),
        ("quantile by (i) (0.25, m)", {lbl(i="1"): 1.5, lbl(i="2"): 10.0}),
        ("topk(1, m)", {lbl("m", i="2", p="x"): 10.0}),  # topk keeps the series' labels
        ("topk by (i) (1, m)", {lbl("m", i="1", p="y"): 3.0, lbl("m", i="2", p="x"): 10.0}),
        ("bottomk(2, m)", {lbl("m", i="1", p="x"): 1.0, lbl("m", i="1", p="y"): 3.0}),
        ("topk(0, m)", {}),
        ("sum by (i) (m) > 5", {lbl(i="2"): 10.0}),
    ],
)
def test_aggregations(text: str, expected: dict[Labels, float]) -> None:
    assert run(text, 0, AGG) == expected


def test_topk_ties_keep_the_first_series_and_skip_nan() -> None:
    series = {lbl("m", i="a"): [(0, math.nan)], lbl("m", i="b"): [(0, 5.0)], lbl("m", i="c"): [(0, 5.0)]}
    assert run("topk(1, m)", 0, series) == {lbl("m", i="b"): 5.0}
    assert run("bottomk(1, m)", 0, series) == {lbl("m", i="b"): 5.0}


def test_sum_with_nan_is_nan_and_avg_of_infinities() -> None:
    series = {lbl("m", i="a"): [(0, math.nan)], lbl("m", i="b"): [(0, 5.0)]}
    assert math.isnan(vec("sum(m)", 0, series)[()])
    inf = {lbl("m", i="a"): [(0, math.inf)], lbl("m", i="b"): [(0, 5.0)]}
    assert run("avg(m)", 0, inf) == {(): math.inf}
    assert run("avg(m)", 0, inf, left_open=False) == {(): math.inf}


# ------------------------------------------------------------------ binary operators


def test_scalar_arithmetic_and_go_semantics() -> None:
    assert run("1 + 2 * 3", 0, {}) == 7.0
    assert run("2 ^ 3 ^ 2", 0, {}) == 512.0  # right-associative
    assert run("5 % -3", 0, {}) == 2.0  # Go's Mod keeps the dividend's sign (Python's % would give -1)
    assert run("-5 % 3", 0, {}) == -2.0
    assert run("1 / 0", 0, {}) == math.inf
    assert run("-1 / 0", 0, {}) == -math.inf
    assert math.isnan(scalar("0 / 0"))
    assert run("3 > bool 2", 0, {}) == 1.0
    assert run("-(2)", 0, {}) == -2.0


VS = {lbl("x", i="1"): [(0, 5.0)], lbl("x", i="2"): [(0, 1.0)], lbl("x", i="3"): [(0, math.nan)]}


def test_vector_scalar_comparisons_filter_and_keep_the_name() -> None:
    assert run("x > 2", 0, VS) == {lbl("x", i="1"): 5.0}
    assert run("2 < x", 0, VS) == {lbl("x", i="1"): 5.0}  # the vector's value, even on the right
    got = vec("x > bool 2", 0, VS)
    assert got[lbl(i="1")] == 1.0 and got[lbl(i="2")] == 0.0 and got[lbl(i="3")] == 0.0  # NaN compares false
    assert run("x * 2", 0, {lbl("x", i="1"): [(0, 5.0)]}) == {lbl(i="1"): 10.0}
    assert run("-x", 0, {lbl("x", i="1"): [(0, 5.0)]}) == {lbl(i="1"): -5.0}


A = {lbl("a", i="1", j="x"): [(0, 10.0)], lbl("a", i="2"): [(0, 20.0)]}
B = {lbl("b", i="1"): [(0, 2.0)], lbl("b", i="2"): [(0, 4.0)], lbl("b", i="3"): [(0, 1.0)]}


def test_one_to_one_matching() -> None:
    # on(i): the result keeps only `i`
    assert run("a / on(i) b", 0, A | B) == {lbl(i="1"): 5.0, lbl(i="2"): 5.0}
    # ignoring(j): a's labels minus j and the name; a{i="1"} matches b{i="1"}
    assert run("a / ignoring(j) b", 0, A | B) == {lbl(i="1"): 5.0, lbl(i="2"): 5.0}
    # plain: all labels but the name must be equal: only i="2" matches
    assert run("a - b", 0, A | B) == {lbl(i="2"): 16.0}
    # comparison: filter, lhs value and labels (name kept; one-to-one on() keeps only `i`)
    assert run("a > on(i) b * 3", 0, A | B) == {lbl(i="1"): 10.0, lbl(i="2"): 20.0}
    assert run("a < ignoring(j) b * 3", 0, A | B) == {}
    assert run("a > bool ignoring(j) b * 4", 0, A | B) == {lbl(i="1"): 1.0, lbl(i="2"): 1.0}


MANY = {lbl("a", i="1", p="x"): [(0, 10.0)], lbl("a", i="1", p="y"): [(0, 20.0)]}
ONE = {lbl("b", i="1", team="t"): [(0, 2.0)]}


def test_group_left_and_group_right() -> None:
    assert run("a / on(i) group_left(team) b", 0, MANY | ONE) == {
        lbl(i="1", p="x", team="t"): 5.0,
        lbl(i="1", p="y", team="t"): 10.0,
    }
    assert run("a > on(i) group_left b", 0, MANY | ONE) == {
        lbl("a", i="1", p="x"): 10.0,
        lbl("a", i="1", p="y"): 20.0,
    }
    assert run("b * on(i) group_right a", 0, MANY | ONE) == {lbl(i="1", p="x"): 20.0, lbl(i="1", p="y"): 40.0}
    # a comparison with group_right: the "many" side's labels, the left operand's value
    assert run("b < on(i) group_right a", 0, MANY | ONE) == {
        lbl("a", i="1", p="x"): 2.0,
        lbl("a", i="1", p="y"): 2.0,
    }


def test_matching_errors_name_the_problem() -> None:
    with pytest.raises(PromqlEvalError, match="many-to-one matching must be explicit"):
        run("a / on(i) b", 0, MANY | ONE)
    with pytest.raises(PromqlEvalError, match=r'match group \{i="1"\} on the right hand-side'):
        run("b / on(i) group_left a", 0, MANY | ONE)
    with pytest.raises(PromqlEvalError, match="on the left hand-side"):
        run("a / on(i) group_right b", 0, MANY | ONE)
    two_names = {lbl("a", i="1"): [(0, 1.0)], lbl("b", i="1"): [(0, 2.0)]}
    with pytest.raises(PromqlEvalError, match="same labelset"):
        run('-{__name__=~"a|b"}', 0, two_names)
    with pytest.raises(PromqlEvalError, match="same labelset"):
        run('{__name__=~"a|b"} * 2', 0, two_names)
    with pytest.raises(PromqlEvalError, match="same labelset"):
        run('sum_over_time({__name__=~"a|b"}[1m])', 0, two_names)
    # last_over_time keeps the name, so the two series stay apart
    assert run('last_over_time({__name__=~"a|b"}[1m])', 0, two_names) == {
        lbl("a", i="1"): 1.0,
        lbl("b", i="1"): 2.0,
    }
    assert run('{__name__=~"a|b"} > 0', 0, two_names) == {lbl("a", i="1"): 1.0, lbl("b", i="1"): 2.0}


def test_set_operators() -> None:
    assert run("a and on(i) b", 0, A | B) == {lbl("a", i="1", j="x"): 10.0, lbl("a", i="2"): 20.0}
    assert run("a and b", 0, A | B) == {lbl("a", i="2"): 20.0}
    assert run("a unless b", 0, A | B) == {lbl("a", i="1", j="x"): 10.0}
    assert run("a or b", 0, A | B) == {
        lbl("a", i="1", j="x"): 10.0,
        lbl("a", i="2"): 20.0,
        lbl("b", i="1"): 2.0,  # i="1" with no j: not in a's signatures
        lbl("b", i="3"): 1.0,
    }
    assert run("a or on(i) b", 0, A | B) == {
        lbl("a", i="1", j="x"): 10.0,
        lbl("a", i="2"): 20.0,
        lbl("b", i="3"): 1.0,
    }
    assert run("nothing or b", 0, B) == {lbl("b", i="1"): 2.0, lbl("b", i="2"): 4.0, lbl("b", i="3"): 1.0}
    assert run("b and nothing", 0, B) == {}


def test_sample_type() -> None:
    out = Evaluator(FakeStore(B)).instant(parse_expr("b > 3"), 0)
    assert out == [Sample(lbl("b", i="2"), 4.0)]
