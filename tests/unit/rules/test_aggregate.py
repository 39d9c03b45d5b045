"""Window aggregations at the edges of the float range: no exception, the sensible answer."""

from __future__ import annotations

import math
import sys

import pytest

from rules.aggregate import aggregate, quantile, safe_avg, safe_sum
from rules.model import Aggregation

BIG = sys.float_info.max * 0.75  # finite; two of them overflow a partial sum


def test_sum_and_avg_of_huge_values_do_not_raise() -> None:
    # math.fsum raised OverflowError here and the exception killed the alerting job
    assert aggregate(Aggregation.AVG, [0.0, 1.0, 2.0], [BIG, BIG, BIG]) == pytest.approx(BIG)
    assert aggregate(Aggregation.SUM, [0.0, 1.0, 2.0], [BIG, BIG, -BIG]) == pytest.approx(BIG)
    assert aggregate(Aggregation.SUM, [0.0, 1.0, 2.0], [BIG, BIG, BIG]) == math.inf
    assert aggregate(Aggregation.SUM, [0.0, 1.0], [-BIG, -BIG, -BIG]) == -math.inf
    assert safe_avg([sys.float_info.max] * 4) == pytest.approx(sys.float_info.max)


def test_sum_and_avg_are_exact_as_before_in_the_normal_range() -> None:
    vs = [0.1] * 10 + [1e16, 1.0, -1e16]
    assert safe_sum(vs) == math.fsum(vs)
    assert safe_avg(vs) == math.fsum(vs) / len(vs)


def test_quantile_between_extremes_is_finite() -> None:
    lo, hi = -sys.float_info.max, sys.float_info.max
    assert quantile([lo, hi], 0.5) == 0.0  # the difference overflowed to inf (and inf * 0 is NaN)
    assert quantile([lo, hi], 0.0) == lo
    assert quantile([lo, hi], 1.0) == hi
    assert quantile([1.0, 2.0, 3.0], 0.25) == 1.5


@pytest.mark.parametrize("agg", list(Aggregation))
def test_every_aggregation_survives_the_float_extremes(agg: Aggregation) -> None:
    vs = [sys.float_info.max, sys.float_info.max, -sys.float_info.max, 5e-324, 0.0]
    got = aggregate(agg, [float(i) for i in range(len(vs))], vs)
    assert got is None or not math.isnan(got)
