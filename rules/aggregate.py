"""Window aggregations over one series' samples; pure functions over sorted lists."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from operator import itemgetter

from rules.model import Aggregation


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, as Prometheus' quantile_over_time."""
    return _quantile(q, sorted_values)


def _quantile(q: float, values: Sequence[float]) -> float:
    # sorts itself (a sorted list costs one pass): the engine's quantile is then one frame
    s = sorted(values)
    n = len(s)
    if n == 1:
        return s[0]
    rank = q * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    a, b = s[lo], s[hi]
    d = b - a
    if d == _INF:  # a and b far apart near the float limits: this form cannot overflow
        return a * (1.0 - frac) + b * frac
    return a + d * frac


def rate(ts: Sequence[float], vs: Sequence[float]) -> float | None:
    """Per-second increase of a counter over the samples, counter resets included.

    Unlike Prometheus' rate() this does not extrapolate to the window edges: the result
    is the exact slope between the first and the last sample, which is what a backtest
    can reproduce bit for bit.
    """
    if len(vs) < 2 or ts[-1] <= ts[0]:
        return None
    increase = 0.0
    prev = vs[0]
    for v in vs[1:]:
        increase += v - prev if v >= prev else v  # a drop is a counter reset
        prev = v
    return increase / (ts[-1] - ts[0])


_INF = math.inf
# math.fsum raises OverflowError when a partial sum leaves the float range, even if the
# total would not: sum again scaled by 2**-64 (exact for normal floats), and scale back,
# which rounds to +/-inf only when the true result is out of range.
_DOWN = 2.0**-64
_UP = 2.0**64


def safe_sum(vs: Sequence[float]) -> float:
    """`math.fsum` that never raises: +/-inf when the exact sum is out of the float range."""
    try:
        return math.fsum(vs)
    except OverflowError:
        return math.fsum(v * _DOWN for v in vs) * _UP


def safe_avg(vs: Sequence[float]) -> float:
    """The mean of finite values; always finite (the mean lies between min and max)."""
    try:
        return math.fsum(vs) / len(vs)
    except OverflowError:
        return math.fsum(v * _DOWN for v in vs) / len(vs) * _UP


def _count(vs: Sequence[float]) -> float:
    return float(len(vs))


# Of the values alone, called once per tick and group by the engine: where a builtin does the
# job it is called directly (no Python frame around `min`), the others are one frame each.
_OF_VALUES: dict[Aggregation, Callable[[Sequence[float]], float]] = {
    Aggregation.AVG: safe_avg,
    Aggregation.MIN: min,
    Aggregation.MAX: max,
    Aggregation.SUM: safe_sum,
    Aggregation.COUNT: _count,
    Aggregation.LAST: itemgetter(-1),
    Aggregation.P50: partial(_quantile, 0.50),
    Aggregation.P95: partial(_quantile, 0.95),
    Aggregation.P99: partial(_quantile, 0.99),
}


def values_aggregator(agg: Aggregation) -> Callable[[Sequence[float]], float] | None:
    """`agg` as a function of the window's values alone; None for those that need the sample
    times too (`rate`: use `aggregator`)."""
    return _OF_VALUES.get(agg)


def _of_values(fn: Callable[[Sequence[float]], float]) -> Callable[[Sequence[float], Sequence[float]], float]:
    return lambda _ts, vs: fn(vs)


_AGG: dict[Aggregation, Callable[[Sequence[float], Sequence[float]], float | None]] = {
    **{agg: _of_values(fn) for agg, fn in _OF_VALUES.items()},
    Aggregation.RATE: rate,
}


def aggregator(agg: Aggregation) -> Callable[[Sequence[float], Sequence[float]], float | None]:
    """The function behind `agg`, looked up once per series rather than once per evaluation."""
    return _AGG[agg]


def aggregate(agg: Aggregation, ts: Sequence[float], vs: Sequence[float]) -> float | None:
    """Aggregate samples (sorted by time); None when there is nothing to aggregate."""
    if not vs:
        return None
    return _AGG[agg](ts, vs)
