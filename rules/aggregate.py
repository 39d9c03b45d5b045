"""Window aggregations over one series' samples; pure functions over sorted lists."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rules.model import Aggregation


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, as Prometheus' quantile_over_time."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    rank = q * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    a, b = sorted_values[lo], sorted_values[hi]
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


def _p(q: float) -> Callable[[Sequence[float], Sequence[float]], float]:
    return lambda _ts, vs: quantile(sorted(vs), q)


_AGG: dict[Aggregation, Callable[[Sequence[float], Sequence[float]], float | None]] = {
    Aggregation.AVG: lambda _ts, vs: safe_avg(vs),
    Aggregation.MIN: lambda _ts, vs: min(vs),
    Aggregation.MAX: lambda _ts, vs: max(vs),
    Aggregation.SUM: lambda _ts, vs: safe_sum(vs),
    Aggregation.COUNT: lambda _ts, vs: float(len(vs)),
    Aggregation.LAST: lambda _ts, vs: vs[-1],
    Aggregation.P50: _p(0.50),
    Aggregation.P95: _p(0.95),
    Aggregation.P99: _p(0.99),
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
