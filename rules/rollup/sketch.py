"""A mergeable quantile sketch with a relative-error guarantee (DDSketch, log-bucket mapping).

Why our own and not the `ddsketch` package: measured on this machine, `ddsketch` 3.0.1 (pure
Python) costs ~1.7 us per added value against ~0.4 us here, and its dense stores pickle to
~3 KB for a 60-value sketch where ours is a small dict. The rollups add every raw sample to
a sketch and keep open sketches in recovery snapshots, so both figures matter.

The algorithm is DDSketch's (Masson, Rim, Lee, VLDB 2019) with its logarithmic mapping:
a positive value `v` goes to bucket `k = ceil(log(v) / log(gamma))`, with
`gamma = (1 + alpha) / (1 - alpha)`; bucket `k` covers `(gamma**(k-1), gamma**k]` and is
represented by `2 * gamma**k / (gamma + 1)`, which is within a relative distance `alpha` of
every value in the bucket. Negative values use a mirrored store, zero (and subnormal
magnitudes) a counter.

Guarantee (the one the tests check): for `q` in [0, 1] and `n` values added or merged, the
estimate of `quantile(q)` is within relative error `alpha` (default 1%) of the exact
lower-rank quantile, `sorted(values)[floor(q * (n - 1))]`, i.e. numpy's
`quantile(..., method="lower")`. Merging is exact: the merge of sketches equals the sketch of
the union, so merged percentiles (5m, 1h from 1m partials) carry the same bound.
The bound holds while a store has at most `max_bins` buckets; beyond that the lowest buckets
are collapsed (the low quantiles lose accuracy first, as in DDSketch's collapsing store). At
1% that needs values spanning more than 17 orders of magnitude in one window.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

DEFAULT_ALPHA: Final = 0.01
DEFAULT_MAX_BINS: Final = 2048


class SketchError(ValueError):
    """Merging sketches of different accuracy, or a bad parameter."""


@dataclass(frozen=True, slots=True)
class LogMapping:
    """The log mapping of one relative accuracy; built once per alpha."""

    alpha: float
    gamma: float
    multiplier: float  # 1 / ln(gamma)
    min_indexable: float  # smaller magnitudes count as zero

    def key(self, v: float) -> int:
        return math.ceil(math.log(v) * self.multiplier)

    def value(self, key: int) -> float:
        try:
            return 2.0 * self.gamma**key / (self.gamma + 1.0)
        except OverflowError:  # the top bucket of values near the float maximum: callers clamp to max
            return math.inf


@lru_cache(maxsize=16)
def mapping(alpha: float = DEFAULT_ALPHA) -> LogMapping:
    if not 0.0 < alpha < 1.0:
        raise SketchError(f"relative accuracy must be in (0, 1), got {alpha}")
    gamma = (1.0 + alpha) / (1.0 - alpha)
    return LogMapping(alpha, gamma, 1.0 / math.log(gamma), sys.float_info.min * gamma)


def _merge_into(dst: dict[int, int], src: Mapping[int, int]) -> None:
    for k, c in src.items():
        dst[k] = dst.get(k, 0) + c


def _collapse(store: dict[int, int], max_bins: int, lowest: bool) -> dict[int, int]:
    """Fold the buckets beyond `max_bins` into the last one kept (lowest or highest keys)."""
    if len(store) <= max_bins:
        return store
    keys = sorted(store, reverse=not lowest)
    drop, keep_edge = keys[: len(keys) - max_bins], keys[len(keys) - max_bins]
    out = dict(store)
    for k in drop:
        out[keep_edge] += out.pop(k)
    return out


@dataclass(frozen=True, slots=True)
class Sketch:
    """An immutable sketch: the value a window's partial aggregate carries and merges.

    `pos`/`neg` map bucket keys to counts and are never mutated after construction.
    """

    pos: Mapping[int, int]
    neg: Mapping[int, int]
    zero: int = 0
    alpha: float = DEFAULT_ALPHA

    @staticmethod
    def empty(alpha: float = DEFAULT_ALPHA) -> Sketch:
        return Sketch({}, {}, 0, alpha)

    @staticmethod
    def of(values: Iterable[float], alpha: float = DEFAULT_ALPHA) -> Sketch:
        b = SketchBuilder(alpha)
        for v in values:
            b.add(v)
        return b.build()

    @property
    def count(self) -> int:
        return sum(self.pos.values()) + sum(self.neg.values()) + self.zero

    def merge(self, other: Sketch, max_bins: int = DEFAULT_MAX_BINS) -> Sketch:
        """The sketch of both inputs' values (exact: bucket counts add up)."""
        if other.alpha != self.alpha:
            raise SketchError(f"cannot merge sketches of accuracy {self.alpha} and {other.alpha}")
        pos = dict(self.pos)
        _merge_into(pos, other.pos)
        neg = dict(self.neg)
        _merge_into(neg, other.neg)
        return Sketch(
            _collapse(pos, max_bins, lowest=True),
            _collapse(neg, max_bins, lowest=False),  # large negative keys are the low quantiles
            self.zero + other.zero,
            self.alpha,
        )

    def quantile(self, q: float, lo: float = -math.inf, hi: float = math.inf) -> float | None:
        """Estimate of the lower-rank `q`-quantile; None when empty. See `quantiles`."""
        got = self.quantiles((q,), lo, hi)
        return None if got is None else got[0]

    def quantiles(
        self, qs: Sequence[float], lo: float = -math.inf, hi: float = math.inf
    ) -> list[float] | None:
        """Estimates of several quantiles in one ordered pass over the buckets; None when empty.

        Results are clamped to [lo, hi]: callers pass the window's exact min and max, and
        clamping can only move an estimate closer to the true quantile.
        """
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise SketchError(f"quantile must be in [0, 1], got {q}")
        n = self.count
        if n == 0:
            return None
        m = mapping(self.alpha)
        targets = sorted((q * (n - 1), j) for j, q in enumerate(qs))
        out = [0.0] * len(qs)
        ti = 0
        seen = 0

        def take(est: float) -> None:
            # every target rank now below the cumulative count falls in this bucket
            nonlocal ti
            while ti < len(targets) and seen > targets[ti][0]:
                out[targets[ti][1]] = min(max(est, lo), hi)
                ti += 1

        neg, pos = self.neg, self.pos
        for k in sorted(neg, reverse=True):  # ascending values: most negative first
            seen += neg[k]
            if seen > targets[ti][0]:
                take(-m.value(k))
                if ti == len(targets):
                    return out
        if self.zero:
            seen += self.zero
            if seen > targets[ti][0]:
                take(0.0)
                if ti == len(targets):
                    return out
        for k in sorted(pos):
            seen += pos[k]
            if seen > targets[ti][0]:
                take(m.value(k))
                if ti == len(targets):
                    return out
        # float rounding left a rank at the very top: the highest bucket
        top = m.value(max(pos)) if pos else (0.0 if self.zero else -m.value(min(neg)))
        while ti < len(targets):
            out[targets[ti][1]] = min(max(top, lo), hi)
            ti += 1
        return out

    def to_state(self) -> tuple[float, int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """Plain tuples for snapshots and wire formats."""
        return (self.alpha, self.zero, tuple(self.pos.items()), tuple(self.neg.items()))

    @staticmethod
    def from_state(
        state: tuple[float, int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]],
    ) -> Sketch:
        alpha, zero, pos, neg = state
        return Sketch(dict(pos), dict(neg), zero, alpha)


class SketchBuilder:
    """The mutable accumulator of the hot path: one `add` per raw sample.

    Mutable on purpose (a frozen copy per sample would cost more than the sketch itself);
    `build()` freezes it into a `Sketch` when the window closes.
    """

    __slots__ = ("_min_indexable", "_mult", "alpha", "neg", "pos", "zero")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        m = mapping(alpha)
        self.alpha = alpha
        self._mult = m.multiplier
        self._min_indexable = m.min_indexable
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero = 0

    def add(self, v: float) -> None:
        if v > self._min_indexable:
            k = math.ceil(math.log(v) * self._mult)
            self.pos[k] = self.pos.get(k, 0) + 1
        elif v < -self._min_indexable:
            k = math.ceil(math.log(-v) * self._mult)
            self.neg[k] = self.neg.get(k, 0) + 1
        else:
            self.zero += 1

    def absorb(self, sketch: Sketch) -> None:
        """Merge a frozen sketch in (the cascade's coarse windows)."""
        if sketch.alpha != self.alpha:
            raise SketchError(f"cannot merge sketches of accuracy {self.alpha} and {sketch.alpha}")
        _merge_into(self.pos, sketch.pos)
        _merge_into(self.neg, sketch.neg)
        self.zero += sketch.zero

    def build(self, max_bins: int = DEFAULT_MAX_BINS) -> Sketch:
        """Freeze: the stores are handed over (no copy) and the builder starts empty again."""
        pos, neg, zero = self.pos, self.neg, self.zero
        self.pos, self.neg, self.zero = {}, {}, 0
        return Sketch(
            _collapse(pos, max_bins, lowest=True), _collapse(neg, max_bins, lowest=False), zero, self.alpha
        )
