"""The quantile sketch against exact percentiles: the 1% relative bound, also after merges."""

from __future__ import annotations

import math
import random

import pytest

from rules.rollup.sketch import DEFAULT_ALPHA, Sketch, SketchBuilder, SketchError

QS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def exact(values: list[float], q: float) -> float:
    """Lower-rank quantile (numpy's method="lower"): what the guarantee is stated against."""
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


def assert_within(sketch: Sketch, values: list[float], alpha: float = DEFAULT_ALPHA) -> None:
    got = sketch.quantiles(QS)
    assert got is not None
    for q, est in zip(QS, got, strict=True):
        want = exact(values, q)
        # 1e-12: log() rounding can put a value a hair across a bucket edge
        assert abs(est - want) <= alpha * abs(want) + 1e-12 * abs(want) + 1e-300, (q, want, est)


def datasets(rng: random.Random) -> dict[str, list[float]]:
    return {
        "lognormal": [rng.lognormvariate(3, 1.5) for _ in range(5000)],
        "uniform_pct": [rng.uniform(0, 100) for _ in range(3000)],
        "normal_with_negatives": [rng.gauss(0, 50) for _ in range(3000)],
        "with_zeros": [0.0 if rng.random() < 0.3 else rng.expovariate(0.01) for _ in range(2000)],
        "constant": [42.5] * 500,
        "tiny_and_huge": [rng.choice([1e-9, 3e-7, 1e6, 7.5e12]) * rng.uniform(1, 2) for _ in range(1000)],
        "integers": [float(rng.randint(0, 20)) for _ in range(1000)],
        "single": [123.456],
    }


@pytest.mark.parametrize("name", list(datasets(random.Random(0))))
def test_relative_error_bound_against_exact_percentiles(name: str) -> None:
    values = datasets(random.Random(7))[name]
    assert_within(Sketch.of(values), values)


@pytest.mark.parametrize("alpha", [0.005, 0.02, 0.05])
def test_bound_follows_the_configured_accuracy(alpha: float) -> None:
    rng = random.Random(alpha)
    values = [rng.lognormvariate(0, 2) for _ in range(4000)]
    assert_within(Sketch.of(values, alpha), values, alpha)


def test_merge_equals_sketch_of_the_union() -> None:
    rng = random.Random(1)
    a = [rng.gauss(10, 30) for _ in range(1000)]
    b = [rng.lognormvariate(2, 1) for _ in range(700)] + [0.0] * 5
    merged = Sketch.of(a).merge(Sketch.of(b))
    union = Sketch.of(a + b)
    assert (dict(merged.pos), dict(merged.neg), merged.zero) == (dict(union.pos), dict(union.neg), union.zero)
    assert merged.count == len(a) + len(b)
    assert_within(merged, a + b)


def test_cascaded_merges_keep_the_bound() -> None:
    """60 one-minute sketches -> 12 five-minute -> 1 hour, as the rollups do."""
    rng = random.Random(2)
    minutes = [[rng.lognormvariate(4, 0.7) for _ in range(rng.randint(1, 12))] for _ in range(60)]
    fives = []
    for i in range(0, 60, 5):
        s = Sketch.empty()
        for m in minutes[i : i + 5]:
            s = s.merge(Sketch.of(m))
        fives.append(s)
        assert_within(s, [v for m in minutes[i : i + 5] for v in m])
    hour = Sketch.empty()
    for s in fives:
        hour = hour.merge(s)
    assert_within(hour, [v for m in minutes for v in m])


def test_quantiles_are_clamped_to_known_bounds() -> None:
    s = Sketch.of([10.0, 10.0, 10.0])
    assert s.quantile(0.5) != 10.0  # the bucket's representative...
    assert s.quantile(0.5, 10.0, 10.0) == 10.0  # ...clamped to the exact min/max


def test_empty_and_bad_arguments() -> None:
    assert Sketch.empty().quantile(0.5) is None
    with pytest.raises(SketchError):
        Sketch.of([1.0]).quantile(1.5)
    with pytest.raises(SketchError):
        Sketch.of([1.0], 0.01).merge(Sketch.of([1.0], 0.02))
    with pytest.raises(SketchError):
        SketchBuilder(0.0)


def test_state_round_trip() -> None:
    s = Sketch.of([-3.0, 0.0, 1.5, 2.5, 1e6])
    back = Sketch.from_state(s.to_state())
    assert back == s
    assert back.quantiles(QS) == s.quantiles(QS)


def test_builder_hands_over_its_stores() -> None:
    b = SketchBuilder()
    for v in (1.0, 2.0, -1.0, 0.0):
        b.add(v)
    s = b.build()
    assert s.count == 4
    assert b.build().count == 0  # the builder starts empty again; `s` is not aliased
    b.add(5.0)
    assert s.count == 4


def test_collapsing_bounds_memory_and_keeps_high_quantiles() -> None:
    rng = random.Random(3)
    values = [10 ** rng.uniform(-6, 9) for _ in range(5000)]
    b = SketchBuilder()
    for v in values:
        b.add(v)
    s = b.build(max_bins=300)  # ~2.6 of the 15 decades: quantiles above ~0.83 keep their buckets
    assert len(s.pos) == 300
    assert s.count == len(values)
    for q in (0.9, 0.99, 1.0):  # the collapsed buckets are the lowest ones
        est = s.quantile(q)
        assert est is not None
        assert abs(est - exact(values, q)) <= DEFAULT_ALPHA * exact(values, q) * (1 + 1e-12)


def test_values_near_the_float_maximum_do_not_overflow_the_bucket_value() -> None:
    """The top bucket of 1.79e308 is represented by gamma**k, beyond the float range: that
    raised OverflowError (and stopped the rollups); the estimate is clamped to the max instead."""
    big = 1.79e308
    s = Sketch.of([big, big, -big, 1.0])
    lo, mid, hi = s.quantiles([0.0, 0.5, 1.0], -big, big) or []
    assert (lo, mid, hi) == (
        pytest.approx(-big, rel=DEFAULT_ALPHA),
        pytest.approx(1.0, rel=DEFAULT_ALPHA),
        big,
    )
    assert s.quantile(1.0) == math.inf  # unclamped: the bucket's value is out of range
