"""Instant evaluation of the PromQL subset (`rules.promql.ast`) with Prometheus' semantics. Pure.

Written against prometheus/promql engine.go, functions.go and quantile.go (3.x, and 2.42 where
they differ), so a rule gives the same result here as in Prometheus at the same instant:

- instant selector: the newest sample within the lookback window (`lookback_s`, 5m); a
  staleness marker (`STALE_NAN`) as the newest sample means "no value";
- range selector `m[r]`: the samples in `(t - r, t]` (Prometheus 3, `left_open=True`) or in
  `[t - r, t]` (Prometheus 2; `left_open=False` also applies 2.42's lookback window, its order
  of the counter zero-point clamp in `rate`/`increase`, its plain `sum` and incremental `avg`,
  and its `histogram_quantile` monotonicity fix, so the differential test against promtool 2.42
  compares like with like);
- `rate`/`increase`/`delta` extrapolate to the window edges as `extrapolatedRate` does, with
  counter resets; `deriv` is the least-squares slope; sums use Kahan-Neumaier summation;
- labels: functions (except `last_over_time`), arithmetic, `bool` comparisons, unary minus and
  aggregations drop `__name__`; a comparison without `bool` keeps the left side's labels and
  filters; a result with two equal label sets, or a match that is many-to-many where one side
  must be unique, raises `PromqlEvalError` with Prometheus' message.

Time is passed in (seconds); internally, times are integer milliseconds, as in Prometheus, so
window edges compare exactly.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rules.model import Matcher, RulesError
from rules.promql import ast

Labels = tuple[tuple[str, str], ...]  # sorted by name; no empty values (empty = absent, as in PromQL)
NAME = "__name__"

# Prometheus' staleness marker: a NaN with this exact bit pattern (value.StaleNaN).
_STALE_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", _STALE_BITS))[0]


def is_stale(v: float) -> bool:
    return v != v and struct.pack("<d", v) == struct.pack("<Q", _STALE_BITS)


class PromqlEvalError(RulesError):
    """Evaluation failed the way Prometheus' would (e.g. many-to-many matching): fix the rule."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Labels
    value: float


Vector = list[Sample]


@dataclass(frozen=True, slots=True)
class SeriesData:
    """One series as the store holds it: `ts` (seconds) ascending, `vs` the values."""

    labels: Labels
    ts: Sequence[float]
    vs: Sequence[float]


class Store(Protocol):
    def select(self, name: str | None, matchers: tuple[Matcher, ...]) -> Iterable[SeriesData]:
        """Every series with `__name__ == name` (any name when None) matching all `matchers`."""
        ...


def labels_of(mapping: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def _fmt(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


def _ms(t: float) -> int:
    return round(t * 1000)


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """util/kahansum.Inc (Neumaier's variant)."""
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _kahan_inc_v2(inc: float, total: float, c: float) -> tuple[float, float]:
    """2.42's kahanSumInc: no special case for an infinite sum."""
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def quantile(q: float, values: Sequence[float]) -> float:
    """promql quantile(): linear interpolation between the closest ranks (NaN sorts first)."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v if not math.isnan(v) else 0.0))
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    min_normal = 2.2250738585072014e-308
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < min_normal:
        return diff < epsilon * min_normal
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def bucket_quantile(q: float, buckets: list[tuple[float, float]], *, v2: bool = False) -> float:
    """quantile.go BucketQuantile over (upper bound, cumulative count) classic buckets."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    merged: list[list[float]] = []
    for upper, count in buckets:  # coalesceBuckets: equal bounds add up
        if merged and merged[-1][0] == upper:
            merged[-1][1] += count
        else:
            merged.append([upper, count])
    if v2:  # ensureMonotonic
        top = merged[0][1]
        for bucket in merged[1:]:
            if bucket[1] > top:
                top = bucket[1]
            elif bucket[1] < top:
                bucket[1] = top
    else:  # ensureMonotonicAndIgnoreSmallDeltas(1e-12)
        prev = merged[0][1]
        for bucket in merged[1:]:
            curr = bucket[1]
            if curr == prev:
                continue
            if _almost_equal(prev, curr, 1e-12) or curr < prev:
                bucket[1] = prev
                continue
            prev = curr
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # sort.Search over all but the +Inf bucket: first bucket with count >= rank
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start = 0.0
    bucket_end, count = merged[b]
    if b > 0:
        bucket_start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def _parse_go_float(text: str) -> float | None:
    """strconv.ParseFloat as histogram_quantile reads `le` (no spaces, no underscores)."""
    if text != text.strip() or "_" in text or not text:
        return None
    try:
        return float(text)
    except ValueError:
        try:
            return float.fromhex(text)
        except ValueError:
            return None


_GO_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _go_expand(template: str, match: re.Match[str]) -> str:
    """regexp.Expand: `$1`, `${1}`, `$name`, `$$`; `$1x` is the (absent, so empty) group `1x`."""

    def group(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = m.group(1) or m.group(2)
        try:
            value = match.group(int(ref)) if ref.isdigit() else match.group(ref)
        except IndexError:  # no such group: empty, as in Go
            return ""
        return value or ""

    return _GO_TEMPLATE.sub(group, template)


def _absent_labels(arg: ast.Expr) -> Labels:
    """createLabelsForAbsentFunction: equality matchers become labels; a label matched twice is dropped."""
    sel = arg.vector if isinstance(arg, ast.MatrixSelector) else arg
    if not isinstance(sel, ast.VectorSelector):
        return ()
    out: dict[str, str] = {}
    has: set[str] = set()
    for m in sel.matchers:
        if m.name == NAME:
            continue
        if not m.regex and not m.negate and m.name not in has:
            out[m.name] = m.value
            has.add(m.name)
        else:
            out.pop(m.name, None)
    return labels_of(out)


def _check_unique(vec: Vector) -> Vector:
    seen: set[Labels] = set()
    for s in vec:
        if s.labels in seen:
            raise PromqlEvalError(f"vector cannot contain metrics with the same labelset: {_fmt(s.labels)}")
        seen.add(s.labels)
    return vec


Value = Vector | float | str


class Evaluator:
    """Evaluates expressions at an instant against a `Store` (see the module docstring)."""

    def __init__(self, store: Store, *, lookback_s: float = 300.0, left_open: bool = True) -> None:
        self.store = store
        self.lookback_ms = _ms(lookback_s)
        self.left_open = left_open
        self._v2 = not left_open  # Prometheus 2.x behaviour throughout, see the module docstring

    def instant(self, expr: ast.Expr, t: float) -> Vector | float:
        out = self._eval(expr, _ms(t))
        if isinstance(out, str):
            raise PromqlEvalError("a string expression has no instant value")
        return out

    # ------------------------------------------------------------------ dispatch

    def _eval(self, expr: ast.Expr, t: int) -> Value:
        match expr:
            case ast.Number(value=v):
                return float(v)
            case ast.String(value=s):
                return s
            case ast.VectorSelector():
                return self._instant_selector(expr, t)
            case ast.MatrixSelector():
                raise PromqlEvalError("a range vector can only be an argument of a range function")
            case ast.Unary(expr=inner):
                val = self._eval(inner, t)
                if isinstance(val, float):
                    return -val
                return _check_unique([Sample(_drop_name(s.labels), -s.value) for s in self._vec(val)])
            case ast.Call():
                return self._call(expr, t)
            case ast.Aggregate():
                return self._aggregate(expr, t)
            case ast.Binary():
                return self._binary(expr, t)
        raise PromqlEvalError(f"cannot evaluate {expr!r}")

    def _vec(self, val: Value) -> Vector:
        if not isinstance(val, list):
            raise PromqlEvalError(f"expected an instant vector, got {type(val).__name__}")
        return val

    def _scalar(self, expr: ast.Expr, t: int) -> float:
        val = self._eval(expr, t)
        if not isinstance(val, float):
            raise PromqlEvalError(f"expected a scalar, got {type(val).__name__}")
        return val

    # ------------------------------------------------------------------ selectors

    def _instant_selector(self, sel: ast.VectorSelector, t: int) -> Vector:
        out: Vector = []
        for series in self.store.select(sel.name, sel.matchers):
            i = bisect.bisect_right(series.ts, t, key=_ms) - 1  # newest sample at or before t
            if i < 0:
                continue
            st = _ms(series.ts[i])
            too_old = st < t - self.lookback_ms if self._v2 else st <= t - self.lookback_ms
            if too_old or is_stale(series.vs[i]):
                continue
            out.append(Sample(series.labels, float(series.vs[i])))
        return out

    def _range(self, sel: ast.MatrixSelector, t: int) -> list[tuple[Labels, list[int], list[float]]]:
        """Per series, the non-stale samples of the window (series without any are left out)."""
        lo = t - _ms(sel.range_s)
        out = []
        for series in self.store.select(sel.vector.name, sel.vector.matchers):
            start = (bisect.bisect_left if self._v2 else bisect.bisect_right)(series.ts, lo, key=_ms)
            end = bisect.bisect_right(series.ts, t, key=_ms)
            ts: list[int] = []
            vs: list[float] = []
            for i in range(start, end):
                v = float(series.vs[i])
                if not is_stale(v):
                    ts.append(_ms(series.ts[i]))
                    vs.append(v)
            if ts:
                out.append((series.labels, ts, vs))
        return out

    # ------------------------------------------------------------------ functions

    def _call(self, call: ast.Call, t: int) -> Value:
        f, args = call.func, call.args
        if f == "time":
            return t / 1000
        if f == "vector":
            return [Sample((), self._scalar(args[0], t))]
        if f == "scalar":
            vec = self._vec(self._eval(args[0], t))
            return vec[0].value if len(vec) == 1 else math.nan
        if f == "absent":
            return [] if self._vec(self._eval(args[0], t)) else [Sample(_absent_labels(args[0]), 1.0)]
        if f == "label_replace":
            return self._label_replace(call, t)
        if f == "histogram_quantile":
            return self._histogram_quantile(self._scalar(args[0], t), self._vec(self._eval(args[1], t)))
        if f in ("clamp", "clamp_min", "clamp_max"):
            lo = self._scalar(args[1], t) if f in ("clamp", "clamp_min") else -math.inf
            hi = self._scalar(args[2 if f == "clamp" else 1], t) if f in ("clamp", "clamp_max") else math.inf
            if hi < lo:
                return []  # clamp with max < min is empty
            vec = self._vec(self._eval(args[0], t))
            return _check_unique(
                [Sample(_drop_name(s.labels), _go_max(lo, _go_min(hi, s.value))) for s in vec]
            )
        simple = self._simple_function(call, t)
        if simple is not None:
            vec = self._vec(self._eval(args[0], t))
            return _check_unique([Sample(_drop_name(s.labels), simple(s.value)) for s in vec])
        return self._range_function(call, t)

    def _simple_function(self, call: ast.Call, t: int) -> Callable[[float], float] | None:
        f, args = call.func, call.args
        if f == "abs":
            return abs
        # Go's math.Ceil/Floor keep the sign of a zero result: ceil(-0.3) is -0, as promtool prints it
        if f == "ceil":
            return lambda v: math.copysign(float(math.ceil(v)), v) if math.isfinite(v) else v
        if f == "floor":
            return lambda v: math.copysign(float(math.floor(v)), v) if math.isfinite(v) else v
        if f == "round":
            inverse = 1.0 / (self._scalar(args[1], t) if len(args) > 1 else 1.0)
            # math.Floor(f*inverse+0.5)/inverse: ties round up
            return lambda v: (
                (math.floor(v * inverse + 0.5) if math.isfinite(v * inverse) else v * inverse) / inverse
            )
        return None

    def _range_function(self, call: ast.Call, t: int) -> Vector:
        f = call.func
        matrix_arg = call.args[-1] if f == "quantile_over_time" else call.args[0]
        if not isinstance(matrix_arg, ast.MatrixSelector):
            raise PromqlEvalError(f"{f} needs a range selector argument")
        q = self._scalar(call.args[0], t) if f == "quantile_over_time" else 0.0
        window = self._range(matrix_arg, t)
        if f == "absent_over_time":
            return [] if window else [Sample(_absent_labels(matrix_arg), 1.0)]
        out: Vector = []
        for labels, ts, vs in window:
            value = self._over_window(f, matrix_arg, t, ts, vs, q)
            if value is None:
                continue
            out.append(Sample(labels if f == "last_over_time" else _drop_name(labels), value))
        return _check_unique(out)

    def _over_window(
        self, f: str, sel: ast.MatrixSelector, t: int, ts: list[int], vs: list[float], q: float
    ) -> float | None:
        match f:
            case "rate" | "increase" | "delta":
                return self._extrapolated_rate(sel, t, ts, vs, is_counter=f != "delta", is_rate=f == "rate")
            case "avg_over_time":
                return _avg_v2(vs) if self._v2 else _avg(vs)
            case "sum_over_time":
                total, c = 0.0, 0.0
                inc = _kahan_inc_v2 if self._v2 else kahan_inc
                for v in vs:
                    total, c = inc(v, total, c)
                return total if math.isinf(total) else total + c
            case "count_over_time":
                return float(len(vs))
            case "last_over_time":
                return vs[-1]
            case "min_over_time" | "max_over_time":
                best = vs[0]
                for v in vs:
                    if (v < best if f == "min_over_time" else v > best) or math.isnan(best):
                        best = v
                return best
            case "quantile_over_time":
                return quantile(q, vs)
            case "stddev_over_time" | "stdvar_over_time":
                var = _variance(vs, _kahan_inc_v2 if self._v2 else kahan_inc)
                return math.sqrt(var) if f == "stddev_over_time" else var
            case "deriv":
                if len(vs) < 2:
                    return None
                return _linear_regression_slope(ts, vs, ts[0], _kahan_inc_v2 if self._v2 else kahan_inc)
        raise PromqlEvalError(f"function {f} is not supported")

    def _extrapolated_rate(
        self,
        sel: ast.MatrixSelector,
        t: int,
        ts: list[int],
        vs: list[float],
        *,
        is_counter: bool,
        is_rate: bool,
    ) -> float | None:
        """functions.go extrapolatedRate (float samples, no start timestamps)."""
        if len(vs) < 2:
            return None
        range_ms = _ms(sel.range_s)
        range_start, range_end = t - range_ms, t
        result = vs[-1] - vs[0]
        if is_counter:
            for prev, cur in itertools.pairwise(vs):
                if cur < prev:
                    result += prev
        duration_to_start = (ts[0] - range_start) / 1000
        duration_to_end = (range_end - ts[-1]) / 1000
        sampled = (ts[-1] - ts[0]) / 1000
        average = sampled / (len(vs) - 1)
        threshold = average * 1.1
        if self._v2:
            # 2.42: the zero point clamps the raw distance first, then the threshold applies
            if is_counter and result > 0 and vs[0] >= 0:
                duration_to_zero = sampled * (vs[0] / result)
                if duration_to_zero < duration_to_start:
                    duration_to_start = duration_to_zero
            extrapolate_to = sampled
            extrapolate_to += duration_to_start if duration_to_start < threshold else average / 2
            extrapolate_to += duration_to_end if duration_to_end < threshold else average / 2
            factor = extrapolate_to / sampled
        else:
            if duration_to_start >= threshold:
                duration_to_start = average / 2
            if is_counter and result > 0 and vs[0] >= 0:
                duration_to_zero = sampled * (vs[0] / result)
                if duration_to_zero < duration_to_start:
                    duration_to_start = duration_to_zero
            if duration_to_end >= threshold:
                duration_to_end = average / 2
            factor = (sampled + duration_to_start + duration_to_end) / sampled if sampled != 0 else 1.0
        if is_rate:
            factor /= range_ms / 1000
        return result * factor

    def _label_replace(self, call: ast.Call, t: int) -> Vector:
        vec = self._vec(self._eval(call.args[0], t))
        dst, repl, src, regex = (a.value if isinstance(a, ast.String) else "" for a in call.args[1:5])
        pattern = re.compile(regex if self._v2 else f"(?s:{regex})")
        out: Vector = []
        for s in vec:
            labels = dict(s.labels)
            m = pattern.fullmatch(labels.get(src, ""))
            if m is not None:
                labels[dst] = _go_expand(repl, m)
                out.append(Sample(labels_of(labels), s.value))
            else:
                out.append(s)
        return _check_unique(out)

    def _histogram_quantile(self, q: float, vec: Vector) -> Vector:
        groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
        for s in vec:
            labels = dict(s.labels)
            upper = _parse_go_float(labels.get("le", ""))
            if upper is None:
                continue  # Prometheus: a bad `le` is a warning and the sample is ignored
            key = tuple(p for p in s.labels if p[0] != "le")
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = (tuple(p for p in key if p[0] != NAME), [])
            entry[1].append((upper, s.value))
        out = [
            Sample(labels, bucket_quantile(q, buckets, v2=self._v2)) for labels, buckets in groups.values()
        ]
        return _check_unique(out)

    # ------------------------------------------------------------------ aggregations

    def _aggregate(self, agg: ast.Aggregate, t: int) -> Vector:
        param = self._scalar(agg.param, t) if agg.param is not None else math.nan
        vec = self._vec(self._eval(agg.expr, t))
        grouping = set(agg.grouping)
        groups: dict[Labels, list[Sample]] = {}
        for s in vec:
            if agg.without:
                key = tuple(p for p in s.labels if p[0] not in grouping and p[0] != NAME)
            else:
                key = tuple(p for p in s.labels if p[0] in grouping)
            groups.setdefault(key, []).append(s)
        if agg.op in ("topk", "bottomk"):
            if math.isnan(param):
                raise PromqlEvalError(f"{agg.op}: parameter value is NaN")
            k = min(int(param), len(vec)) if math.isfinite(param) else (len(vec) if param > 0 else 0)
            if k < 1:
                return []
            out: Vector = []
            for members in groups.values():
                out.extend(_select_k(members, k, top=agg.op == "topk"))
            return out
        result: Vector = []
        for key, members in groups.items():
            values = [s.value for s in members]
            result.append(Sample(key, self._fold(agg.op, values, param)))
        return result

    def _fold(self, op: str, values: list[float], param: float) -> float:
        match op:
            case "sum":
                if self._v2:
                    total = 0.0
                    for v in values:
                        total += v
                    return total
                total, c = values[0], 0.0
                for v in values[1:]:
                    total, c = kahan_inc(v, total, c)
                return total + c
            case "avg":
                return _avg_v2(values) if self._v2 else _avg(values)
            case "min" | "max":
                best = values[0]
                for v in values[1:]:
                    if (v < best if op == "min" else v > best) or math.isnan(best):
                        best = v
                return best
            case "count":
                return float(len(values))
            case "quantile":
                return quantile(param, values)
        raise PromqlEvalError(f"aggregation {op} is not supported")

    # ------------------------------------------------------------------ binary operators

    def _binary(self, b: ast.Binary, t: int) -> Value:
        lhs, rhs = self._eval(b.lhs, t), self._eval(b.rhs, t)
        if isinstance(lhs, float) and isinstance(rhs, float):
            value, keep = _elem(b.op, lhs, rhs)
            return (1.0 if keep else 0.0) if b.op in ast.COMPARISONS else value
        if isinstance(lhs, list) and isinstance(rhs, list):
            matching = b.matching or ast.VectorMatching()
            if b.op in ast.SET_OPS:
                return _check_unique(_set_op(b.op, lhs, rhs, matching))
            return _check_unique(_vector_binop(b.op, lhs, rhs, matching, b.return_bool))
        if isinstance(lhs, list) and isinstance(rhs, float):
            return _check_unique(_vector_scalar(b.op, lhs, rhs, swap=False, return_bool=b.return_bool))
        if isinstance(lhs, float) and isinstance(rhs, list):
            return _check_unique(_vector_scalar(b.op, rhs, lhs, swap=True, return_bool=b.return_bool))
        raise PromqlEvalError(f"operator {b.op} cannot combine these operands")


def _go_max(a: float, b: float) -> float:
    """Go's math.Max: NaN wins."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _go_min(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b)


def _go_mod(a: float, b: float) -> float:
    """Go's math.Mod: the result has the sign of `a` (Python's % follows `b`)."""
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


def _go_pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except ValueError:
        if a == 0 and b < 0:  # Go: Pow(±0, y<0) = ±Inf (the sign kept for odd integer y)
            odd = float(b).is_integer() and int(b) % 2 == 1
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan  # a negative number to a fractional power
    except OverflowError:
        return math.inf if a > 0 or (float(b).is_integer() and int(b) % 2 == 0) else -math.inf


def _go_div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _elem(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    """vectorElemBinop for floats: (value, keep)."""
    match op:
        case "+":
            return lhs + rhs, True
        case "-":
            return lhs - rhs, True
        case "*":
            return lhs * rhs, True
        case "/":
            return _go_div(lhs, rhs), True
        case "%":
            return _go_mod(lhs, rhs), True
        case "^":
            return _go_pow(lhs, rhs), True
        case "==":
            return lhs, lhs == rhs
        case "!=":
            return lhs, lhs != rhs
        case ">":
            return lhs, lhs > rhs
        case "<":
            return lhs, lhs < rhs
        case ">=":
            return lhs, lhs >= rhs
        case "<=":
            return lhs, lhs <= rhs
    raise PromqlEvalError(f"operator {op} is not supported")


def _vector_scalar(op: str, vec: Vector, scalar: float, *, swap: bool, return_bool: bool) -> Vector:
    out: Vector = []
    drop = op in ast.ARITHMETIC or return_bool
    for s in vec:
        lf, rf = (scalar, s.value) if swap else (s.value, scalar)
        value, keep = _elem(op, lf, rf)
        if op in ast.COMPARISONS and swap:
            value = rf  # the vector element's value, even on the right
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if keep:
            out.append(Sample(_drop_name(s.labels) if drop else s.labels, value))
    return out


def _signature(matching: ast.VectorMatching) -> Callable[[Labels], Labels]:
    names = set(matching.labels)
    if matching.on:
        return lambda labels: tuple(p for p in labels if p[0] in names)
    ignored = names | {NAME}
    return lambda labels: tuple(p for p in labels if p[0] not in ignored)


def _set_op(op: str, lhs: Vector, rhs: Vector, matching: ast.VectorMatching) -> Vector:
    sig = _signature(matching)
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {sig(s.labels) for s in rhs}
        return [s for s in lhs if sig(s.labels) in right]
    if op == "or":
        left = {sig(s.labels) for s in lhs}
        return lhs + [s for s in rhs if sig(s.labels) not in left]
    right = {sig(s.labels) for s in rhs}  # unless
    return [s for s in lhs if sig(s.labels) not in right]


def _vector_binop(
    op: str, lhs: Vector, rhs: Vector, matching: ast.VectorMatching, return_bool: bool
) -> Vector:
    """engine.go VectorBinop (no fill values)."""
    if not lhs or not rhs:
        return []
    sig = _signature(matching)
    one_to_many = matching.card == "one-to-many"
    if one_to_many:
        lhs, rhs = rhs, lhs
    right: dict[Labels, Sample] = {}
    for one in rhs:
        key = sig(one.labels)
        if key in right:
            side = "left" if one_to_many else "right"
            a, b = sorted((_fmt(one.labels), _fmt(right[key].labels)))
            raise PromqlEvalError(
                f"found duplicate series for the match group {_fmt(key)} on the {side} hand-side of the "
                "operation: "
                f"[{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
            )
        right[key] = one
    matched_one: set[Labels] = set()
    matched_many: dict[Labels, set[Labels]] = {}
    drop = op in ast.ARITHMETIC or return_bool
    out: Vector = []
    for ls in lhs:
        key = sig(ls.labels)
        rs = right.get(key)
        if rs is None:
            continue
        fl, fr = (rs.value, ls.value) if one_to_many else (ls.value, rs.value)
        value, keep = _elem(op, fl, fr)
        if return_bool:
            value = 1.0 if keep else 0.0
        metric = _result_metric(ls.labels, rs.labels, matching, drop)
        if matching.card == "one-to-one":
            if key in matched_one:
                raise PromqlEvalError(
                    "multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)"
                )
            matched_one.add(key)
        else:
            inserted = matched_many.setdefault(key, set())
            if metric in inserted:
                raise PromqlEvalError(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                )
            inserted.add(metric)
        if keep or return_bool:
            out.append(Sample(metric, value))
    return out


def _result_metric(lhs: Labels, rhs: Labels, matching: ast.VectorMatching, drop_name: bool) -> Labels:
    labels = dict(lhs)
    if drop_name:
        labels.pop(NAME, None)
    if matching.card == "one-to-one":
        names = set(matching.labels)
        labels = {k: v for k, v in labels.items() if (k in names) == matching.on}
    one = dict(rhs)
    for name in matching.include:  # from the "one" side
        if one.get(name):
            labels[name] = one[name]
        else:
            labels.pop(name, None)
    return labels_of(labels)


def _select_k(members: list[Sample], k: int, *, top: bool) -> list[Sample]:
    """topk/bottomk with Prometheus' heap. Among equal values the first in input order wins; Prometheus'
    input order is its storage's (not sorted), so which of two tied series it keeps can differ."""

    def less(a: Sample, b: Sample) -> bool:  # vectorByValueHeap / vectorByReverseValueHeap
        if math.isnan(a.value):
            return True
        return a.value < b.value if top else a.value > b.value

    heap: list[Sample] = []

    def up(j: int) -> None:
        while j > 0:
            i = (j - 1) // 2
            if i == j or not less(heap[j], heap[i]):
                break
            heap[i], heap[j] = heap[j], heap[i]
            j = i

    def down(i0: int) -> None:
        i, n = i0, len(heap)
        while True:
            j1 = 2 * i + 1
            if j1 >= n:
                break
            j = j1
            if j1 + 1 < n and less(heap[j1 + 1], heap[j1]):
                j = j1 + 1
            if not less(heap[j], heap[i]):
                break
            heap[i], heap[j] = heap[j], heap[i]
            i = j

    for s in members:
        if len(heap) < k:
            heap.append(s)
            up(len(heap) - 1)
        elif (heap[0].value < s.value if top else heap[0].value > s.value) or (
            math.isnan(heap[0].value) and not math.isnan(s.value)
        ):
            heap[0] = s
            if k > 1:
                down(0)
    # An instant query returns them best first.
    return sorted(heap, key=lambda s: (math.isnan(s.value), -s.value if top else s.value))


def _avg(values: Sequence[float]) -> float:
    """Direct Kahan mean, switching to the incremental mean if the sum would overflow (3.x)."""
    total, count, c = values[0], 1.0, 0.0
    mean, incremental = 0.0, False
    for i, v in enumerate(values[1:]):
        count = float(i + 2)
        if not incremental:
            new_total, new_c = kahan_inc(v, total, c)
            if not math.isinf(new_total):
                total, c = new_total, new_c
                continue
            incremental = True
            mean = total / (count - 1)
            c /= count - 1
        q = (count - 1) / count
        mean, c = kahan_inc(v / count, q * mean, q * c)
    if incremental:
        return mean + c
    return total / count + c / count


def _avg_v2(values: Sequence[float]) -> float:
    """2.42's incremental mean with Kahan summation and its infinity special cases."""
    mean, count, c = 0.0, 0.0, 0.0
    for v in values:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean, c = _kahan_inc_v2(v / count - mean / count, mean, c)
    return mean if math.isinf(mean) else mean + c


def _variance(values: Sequence[float], inc: Callable[[float, float, float], tuple[float, float]]) -> float:
    count = 0.0
    mean = c_mean = aux = c_aux = 0.0
    for v in values:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = inc(delta / count, mean, c_mean)
        aux, c_aux = inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _linear_regression_slope(
    ts: list[int],
    vs: list[float],
    intercept_ms: int,
    inc: Callable[[float, float, float], tuple[float, float]],
) -> float:
    n = 0.0
    sx = cx = sy = cy = sxy = cxy = sx2 = cx2 = 0.0
    const_y = True
    for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
        if const_y and i > 0 and v != vs[0]:
            const_y = False
        n += 1.0
        x = (t - intercept_ms) / 1e3
        sx, cx = inc(x, sx, cx)
        sy, cy = inc(v, sy, cy)
        sxy, cxy = inc(x * v, sxy, cxy)
        sx2, cx2 = inc(x * x, sx2, cx2)
    if const_y:
        return math.nan if math.isinf(vs[0]) else 0.0
    sx += cx
    sy += cy
    sxy += cxy
    sx2 += cx2
    cov_xy = sxy - sx * sy / n
    var_x = sx2 - sx * sx / n
    return _go_div(cov_xy, var_x)
