"""Seeded PromQL scenarios for the differential test against promtool, and a reader of its firing sets.

A scenario is one Prometheus rule file (one group, recording rules before the alerts that read them) and one
promtool test file whose `alert_rule_test` expects nothing at every evaluation point for every alert: promtool
then prints what it got, and that output, parsed, is Prometheus' firing set (`promtool_firing`). The same test
file is what `rules.check` runs, so both tools read the same rules and the same input series.

Expressions are drawn from the subset of issue 14 by a small typed generator that tracks each vector's labels
and the label set its series are unique on, so every generated expression is valid for Prometheus at every
evaluation (no many-to-many matching, no duplicate label sets in an alert's result): an evaluation error would
make promtool keep a rule's state silently and the comparison would test nothing. Thresholds are drawn inside
the rough range of the compared value, with an irregular fraction, so comparisons are rarely ties that a
last-ulp difference between Go and Python could flip.

Documented differences are parameters of `generate` (`stale=False` leaves promtool's staleness markers out).
"""

from __future__ import annotations

import ast
import math
import random
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rules.duration import parse_duration

INSTANCES = ("i1", "i2", "i3")
JOB = {"i1": "api", "i2": "api", "i3": "db"}
CLUSTER = {"i1": "c1", "i2": "c2", "i3": "c2"}
GAUGES = ("g_a", "g_b")
# A gauge whose series never hold equal values (fractions .25, .5, .75 by instance), for topk/bottomk.
UNIQUE = "g_u"
FRACTION = {"i1": 0.25, "i2": 0.5, "i3": 0.75}
COUNTER = "c_total"
HISTOGRAM = "h_bucket"
BUCKETS = ("0.1", "0.5", "1", "+Inf")

# $value to 6 significant digits: Prometheus itself sums a group's series in Go map order, so the last digits
# of an aggregate of aggregates vary between two runs of the same promtool file.
VALUE_TEMPLATE = '{{ printf "%.6g" $value }}'

Labels = tuple[tuple[str, str], ...]
# One firing alert as promtool reports it: its labels and its annotations, each sorted by name.
Alert = tuple[Labels, Labels]
# (eval time in seconds, alertname) -> the alerts firing then; points where nothing fires are absent.
Firing = dict[tuple[float, str], frozenset[Alert]]


def _fmt_s(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


@dataclass(frozen=True, slots=True)
class Vec:
    """An instant-vector expression and what the generator knows about its result."""

    text: str
    labels: frozenset[str]  # label names every result series has (without __name__)
    unique: frozenset[str]  # the result series are unique on these labels
    lo: float  # rough value range, to draw thresholds from
    hi: float
    constructs: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # "alert" | "record"
    name: str
    expr: str
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    constructs: frozenset[str] = frozenset()

    def as_yaml(self) -> dict[str, object]:
        out: dict[str, object] = {self.kind: self.name, "expr": self.expr}
        if self.kind == "alert":
            if self.for_s:
                out["for"] = _fmt_s(self.for_s)
            if self.keep_firing_for_s:
                out["keep_firing_for"] = _fmt_s(self.keep_firing_for_s)
            out["annotations"] = {"value": VALUE_TEMPLATE}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    index: int
    interval_s: float  # spacing of the input samples
    eval_interval_s: float
    end_s: float  # last evaluation point
    series: tuple[tuple[str, str], ...]  # (series selector, values in promtool's notation)
    rules: tuple[Rule, ...]
    constructs: frozenset[str] = field(default=frozenset())

    @property
    def name(self) -> str:
        return f"s{self.seed}_{self.index:04d}"

    @property
    def alertnames(self) -> list[str]:
        return [r.name for r in self.rules if r.kind == "alert"]

    def eval_times(self) -> list[float]:
        n = int(self.end_s // self.eval_interval_s)
        return [i * self.eval_interval_s for i in range(n + 1)]

    def rule_file(self) -> dict[str, object]:
        # No group `interval:` of its own: promtool evaluates every group at the test's evaluation_interval.
        return {"groups": [{"name": self.name, "rules": [r.as_yaml() for r in self.rules]}]}

    def test_file(self, rule_file: str, expect: Firing | None = None) -> dict[str, object]:
        """Checks at every evaluation point for every alert, expecting `expect` (default: nothing fires)."""
        expect = expect or {}
        checks = [
            {
                "eval_time": _fmt_s(t),
                "alertname": a,
                "exp_alerts": _exp_alerts(expect.get((t, a), frozenset())),
            }
            for t in self.eval_times()
            for a in self.alertnames
        ]
        return {
            "rule_files": [rule_file],
            "evaluation_interval": _fmt_s(self.eval_interval_s),
            "tests": [
                {
                    "interval": _fmt_s(self.interval_s),
                    "input_series": [{"series": s, "values": v} for s, v in self.series],
                    "alert_rule_test": checks,
                }
            ],
        }

    def describe(self) -> str:
        """The scenario as a reader needs it to reproduce a difference."""
        return yaml.safe_dump(
            {
                "scenario": self.name,
                "rules": self.rule_file(),
                "test": self.test_file(f"{self.name}.rules.yml"),
            },
            sort_keys=False,
            width=200,
        )


def _dump(doc: object) -> str:
    # libyaml's dumper when there is one: a few hundred test files are written per run
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, width=200)


def _exp_alerts(alerts: frozenset[Alert]) -> list[dict[str, dict[str, str]]]:
    # promtool adds `alertname` to exp_labels itself
    return [
        {"exp_labels": {k: v for k, v in labels if k != "alertname"}, "exp_annotations": dict(annotations)}
        for labels, annotations in sorted(alerts)
    ]


def write(
    scenarios: Iterable[Scenario], directory: Path, expect: dict[str, Firing] | None = None
) -> dict[str, Path]:
    """Each scenario's rule file and test file in `directory`; returns the test files by scenario name.

    `expect`: firing sets by scenario name to write as the checks' expectations (default: none fire)."""
    out: dict[str, Path] = {}
    for sc in scenarios:
        rules_name = f"{sc.name}.rules.yml"
        (directory / rules_name).write_text(_dump(sc.rule_file()), encoding="utf-8")
        test = directory / f"{sc.name}.test.yml"
        doc = sc.test_file(rules_name, (expect or {}).get(sc.name))
        test.write_text(_dump(doc), encoding="utf-8")
        out[sc.name] = test
    return out


# --------------------------------------------------------------------------- input series


def _gauge_values(rng: random.Random, n: int, *, stale: bool) -> str:
    """About n samples of a gauge in 0..20: constant and sloped runs, gaps, sometimes a staleness marker."""
    parts: list[str] = []
    count = 0
    v = rng.randint(0, 20)
    while count < n:
        k = rng.randint(1, 5)
        r = rng.random()
        if r < 0.1 and count:
            parts.append(f"_x{k}" if k > 1 else "_")
            count += k
            continue
        if r < 0.16 and count and stale:
            parts.append("stale")
            count += 1
            continue
        step = rng.randint(1, 3)
        if r < 0.45:
            parts.append(f"{v}x{k}")
        elif r < 0.75 and v + step * k <= 24:
            parts.append(f"{v}+{step}x{k}")
            v += step * k
        elif v - step * k >= 0:
            parts.append(f"{v}-{step}x{k}")
            v -= step * k
        else:
            parts.append(f"{v}x{k}")
        count += k + 1
        v = max(0, min(20, v + rng.randint(-6, 6)))
    return " ".join(parts)


def _counter_values(rng: random.Random, n: int) -> str:
    """A counter: increasing runs, sometimes a reset to a lower value, sometimes a missing sample."""
    parts: list[str] = []
    count = 0
    v = rng.randint(0, 50)
    while count < n:
        k = rng.randint(2, 8)
        inc = rng.choice((0, 1, 2, 5, 12, 30, 60))
        parts.append(f"{v}+{inc}x{k}")
        v += inc * k
        count += k + 1
        if rng.random() < 0.2:
            v = rng.randint(0, 10)  # a reset (process restart)
        elif rng.random() < 0.15:
            parts.append("_")
            count += 1
            v += inc
        else:
            v += inc
    return " ".join(parts)


def _shift_starts(values: str, fraction: float) -> str:
    """`values` with every run's start value shifted by `fraction` (exact in binary: .25, .5, .75)."""
    return re.sub(r"(?<![x+\-\d])(\d+)(?=[+\-x]|$| )", lambda m: f"{int(m.group(1)) + fraction:g}", values)


def _series(rng: random.Random, n: int, *, stale: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for g in GAUGES:
        for inst in INSTANCES:
            if rng.random() < 0.85:
                lbl = f'instance="{inst}", job="{JOB[inst]}", cluster="{CLUSTER[inst]}"'
                out.append((f"{g}{{{lbl}}}", _gauge_values(rng, n, stale=stale)))
    for inst in INSTANCES:
        lbl = f'instance="{inst}", job="{JOB[inst]}", cluster="{CLUSTER[inst]}"'
        values = _gauge_values(rng, n, stale=stale)
        out.append((f"{UNIQUE}{{{lbl}}}", _shift_starts(values, FRACTION[inst])))
    for inst in INSTANCES:
        if rng.random() < 0.8:
            lbl = f'instance="{inst}", job="{JOB[inst]}", cluster="{CLUSTER[inst]}"'
            out.append((f"{COUNTER}{{{lbl}}}", _counter_values(rng, n)))
    # Histogram buckets: cumulative counters per instance of job api (le ascending, counts non-decreasing).
    for inst in ("i1", "i2"):
        incs = sorted(rng.randint(0, 6) for _ in BUCKETS)
        base = sorted(rng.randint(0, 20) for _ in BUCKETS)
        for le, b, inc in zip(BUCKETS, base, incs, strict=True):
            lbl = f'instance="{inst}", job="api", cluster="{CLUSTER[inst]}", le="{le}"'
            out.append((f"{HISTOGRAM}{{{lbl}}}", f"{b}+{inc}x{n}"))
    return out


# --------------------------------------------------------------------------- expressions

_BASE_LABELS = frozenset({"instance", "job", "cluster"})


class _Gen:
    def __init__(self, rng: random.Random, interval_s: float, records: list[Vec]) -> None:
        self.rng = rng
        self.interval_s = interval_s
        self.records = records  # recording rules' outputs, readable as selectors

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def rng_range(self) -> tuple[str, float]:
        s = self.rng.choice((60, 120, 180, 300))
        return _fmt_s(s), s

    def selector(self, name: str) -> Vec:
        r = self.rng.random()
        if r < 0.55:
            text = name
        elif r < 0.7:
            text = f'{name}{{job="{self.pick("api", "db")}"}}'
        elif r < 0.85:
            text = f'{name}{{instance=~"i[{self.pick("12", "23", "13")}]"}}'
        else:
            text = f'{name}{{cluster!="{self.pick("c1", "c2")}"}}'
        return Vec(text, _BASE_LABELS, frozenset({"instance"}), 0, 20, frozenset({"selector"}))

    def gauge(self) -> Vec:
        v = self.selector(self.pick(*GAUGES))
        if self.records and self.rng.random() < 0.5:
            rec = self.rng.choice(self.records)
            return Vec(rec.text, rec.labels, rec.unique, rec.lo, rec.hi, rec.constructs | {"recorded series"})
        return v

    def over_time(self) -> Vec:
        sel = self.selector(self.pick(*GAUGES))
        rtext, rs = self.rng_range()
        n = rs / self.interval_s + 1
        fn = self.pick("avg", "min", "max", "sum", "count", "last", "quantile", "stddev", "stdvar")
        lo, hi = 0.0, 20.0
        if fn == "sum":
            hi = 20 * n
        elif fn == "count":
            lo, hi = 1, n
        elif fn == "stddev":
            hi = 8
        elif fn == "stdvar":
            hi = 50
        arg = f"{sel.text}[{rtext}]"
        if fn == "quantile":
            arg = f"{self.pick('0', '0.25', '0.5', '0.9', '1')}, {arg}"
        return Vec(f"{fn}_over_time({arg})", _BASE_LABELS, sel.unique, lo, hi, frozenset({f"{fn}_over_time"}))

    def counter_fn(self) -> Vec:
        sel = self.selector(COUNTER)
        rtext, rs = self.rng_range()
        fn = self.pick("rate", "increase", "delta", "deriv")
        if fn == "rate":
            lo, hi = 0.0, 0.5
        elif fn == "increase":
            lo, hi = 0.0, 0.5 * rs
        else:
            lo, hi = -20.0, 20.0 if fn == "delta" else 0.5
        if fn in ("delta", "deriv") and self.rng.random() < 0.5:
            sel = self.selector(self.pick(*GAUGES))
            lo, hi = (-10.0, 10.0) if fn == "delta" else (-0.1, 0.1)
        return Vec(f"{fn}({sel.text}[{rtext}])", _BASE_LABELS, sel.unique, lo, hi, frozenset({fn}))

    def leaf(self) -> Vec:
        r = self.rng.random()
        if r < 0.35:
            return self.gauge()
        if r < 0.7:
            return self.over_time()
        return self.counter_fn()

    def aggregate(self, inner: Vec) -> Vec:
        op = self.pick("sum", "avg", "min", "max", "count", "quantile", "topk", "bottomk")
        groupable = sorted(inner.labels & {"job", "cluster"})
        keep = [g for g in groupable if self.rng.random() < 0.6]
        without = self.rng.random() < 0.3 and "instance" in inner.labels
        if without:
            grouping = f" without (instance{', le' if 'le' in inner.labels else ''})"
            labels = inner.labels - {"instance", "le"}
        elif keep:
            grouping = f" by ({', '.join(keep)})"
            labels = frozenset(keep)
        else:
            grouping, labels = "", frozenset()
        construct = f"{op}{' without' if without else ' by' if keep else ''}"
        if op in ("topk", "bottomk"):
            # Over g_u only, whose series never hold equal values: of two equal values, which one topk keeps
            # depends on the order series are read in, and promtool creates its input series in Go map
            # order (two runs of one file differ).
            sel = self.selector(UNIQUE)
            if self.rng.random() < 0.6:
                rtext, _ = self.rng_range()
                fn = self.pick("max", "min", "last")
                sel = Vec(f"{fn}_over_time({sel.text}[{rtext}])", sel.labels, sel.unique, 0, 20,
                          frozenset({f"{fn}_over_time"}))  # fmt: skip
            inner = sel
            k = self.rng.randint(1, 2)
            # topk keeps its input's series and labels
            return Vec(f"{op}{grouping} ({k}, {inner.text})", inner.labels, inner.unique, inner.lo, inner.hi,
                       inner.constructs | {construct})  # fmt: skip
        param = f"{self.pick('0.1', '0.5', '0.95')}, " if op == "quantile" else ""
        lo, hi = inner.lo, inner.hi
        if op == "sum":
            lo, hi = min(lo, 3 * lo), 3 * hi
        elif op == "count":
            lo, hi = 1, 3
        return Vec(
            f"{op}{grouping} ({param}{inner.text})", labels, labels, lo, hi, inner.constructs | {construct}
        )

    def function(self, inner: Vec) -> Vec:
        fn = self.pick("abs", "ceil", "floor", "round", "round_to", "clamp", "clamp_min", "clamp_max", "neg",
                       "label_replace")  # fmt: skip
        lo, hi, t = inner.lo, inner.hi, inner.text
        if fn == "round_to":
            return Vec(f"round({t}, {self.pick('0.5', '2', '5')})", inner.labels, inner.unique, lo, hi,
                       inner.constructs | {"round to_nearest"})  # fmt: skip
        if fn == "clamp":
            a = round(lo + (hi - lo) * 0.2, 1)
            b = round(lo + (hi - lo) * 0.8, 1)
            return Vec(
                f"clamp({t}, {a}, {b})", inner.labels, inner.unique, a, b, inner.constructs | {"clamp"}
            )
        if fn in ("clamp_min", "clamp_max"):
            c = round(lo + (hi - lo) * 0.5, 1)
            return Vec(f"{fn}({t}, {c})", inner.labels, inner.unique, lo, hi, inner.constructs | {fn})
        if fn == "neg":
            return Vec(f"-({t})", inner.labels, inner.unique, -hi, -lo, inner.constructs | {"unary minus"})
        if fn == "label_replace" and inner.labels & {"instance", "cluster"}:
            src = self.pick(*sorted(inner.labels & {"instance", "cluster"}))
            text = f'label_replace({t}, "{src}_n", "n$1", "{src}", "[a-z](.*)")'
            return Vec(
                text, inner.labels | {f"{src}_n"}, inner.unique, lo, hi, inner.constructs | {"label_replace"}
            )
        if fn == "label_replace":
            fn = "abs"
        return Vec(f"{fn}({t})", inner.labels, inner.unique, lo, hi, inner.constructs | {fn})

    def scalar_arith(self, inner: Vec) -> Vec:
        op = self.pick("+", "-", "*", "/", "%", "^")
        k = {"+": 5, "-": 3, "*": 2, "/": 4, "%": 7, "^": 2}[op]
        lo, hi = inner.lo, inner.hi
        lo, hi = {
            "+": (lo + k, hi + k),
            "-": (lo - k, hi - k),
            "*": (lo * k, hi * k),
            "/": (lo / k, hi / k),
            "%": (0, k),
            "^": (0, max(hi, abs(lo)) ** 2),
        }[op]
        if self.rng.random() < 0.25 and op in "+*":
            text = f"{k} {op} {inner.text}"
        else:
            text = f"{inner.text} {op} {k}"
        return Vec(text, inner.labels, inner.unique, lo, hi, inner.constructs | {f"vector {op} scalar"})

    def vector_arith(self) -> Vec:
        """Two sides unique on the same labels: one-to-one by construction (on, ignoring or none)."""
        a, b = self.leaf(), self.leaf()
        if a.labels != _BASE_LABELS or b.labels != _BASE_LABELS:
            a, b = self.over_time(), self.gauge() if not self.records else self.selector(self.pick(*GAUGES))
        op = self.pick("+", "-", "*", "/")
        r = self.rng.random()
        if r < 0.35:
            by = self.pick("job", "cluster")
            agg = self.pick("sum", "max", "avg")
            a = self.aggregate_by(a, agg, by)
            b = self.aggregate_by(b, self.pick("sum", "min", "count"), by)
            text, cons = f"{a.text} {op} {b.text}", f"vector {op} vector"
            labels = frozenset({by})
        elif r < 0.6:
            text, cons, labels = (
                f"{a.text} {op} on(instance) {b.text}",
                f"vector {op} on() vector",
                _BASE_LABELS,
            )
            labels = frozenset({"instance"})
        elif r < 0.8:
            text, cons, labels = f"{a.text} {op} ignoring(job) {b.text}", "ignoring()", _BASE_LABELS - {"job"}
        else:
            return self.group_left(a, op)
        lo, hi = {"+": (a.lo + b.lo, a.hi + b.hi), "-": (a.lo - b.hi, a.hi - b.lo), "*": (0, a.hi * b.hi),
                  "/": (0, 5)}[op]  # fmt: skip
        return Vec(f"({text})", labels, labels, lo, hi, a.constructs | b.constructs | {cons})

    def aggregate_by(self, v: Vec, op: str, by: str) -> Vec:
        lo, hi = (1, 3) if op == "count" else (v.lo, 3 * v.hi if op == "sum" else v.hi)
        return Vec(f"{op} by ({by}) ({v.text})", frozenset({by}), frozenset({by}), lo, hi,
                   v.constructs | {f"{op} by"})  # fmt: skip

    def group_left(self, lhs: Vec, op: str) -> Vec:
        """Many-to-one: every lhs series (unique by instance) meets its cluster's one rhs series."""
        rhs = self.aggregate_by(self.leaf() if self.rng.random() < 0.5 else self.gauge(), "sum", "cluster")
        include = ""
        labels = lhs.labels
        if self.rng.random() < 0.5:
            rhs = Vec(f'label_replace({rhs.text}, "team", "t-$1", "cluster", "(.*)")', rhs.labels | {"team"},
                      rhs.unique, rhs.lo, rhs.hi, rhs.constructs | {"label_replace"})  # fmt: skip
            include, labels = "(team)", labels | {"team"}
        if self.rng.random() < 0.5:
            text = f"({lhs.text} {op} on(cluster) group_left{include} {rhs.text})"
            cons = "group_left"
        else:  # the same, written the other way round
            text = f"({rhs.text} {op} on(cluster) group_right{include} {lhs.text})"
            cons = "group_right"
        lo, hi = (0, 2) if op == "/" else (lhs.lo + rhs.lo, lhs.hi * max(rhs.hi, 1))
        return Vec(text, labels, lhs.unique, lo, hi, lhs.constructs | rhs.constructs | {cons})

    def histogram(self) -> Vec:
        rtext, _ = self.rng_range()
        q = self.pick("0.5", "0.9", "0.99")
        by = self.pick("le", "le, job", "le, instance")
        labels = frozenset(x.strip() for x in by.split(",")) - {"le"}
        text = f"histogram_quantile({q}, sum by ({by}) (rate({HISTOGRAM}[{rtext}])))"
        return Vec(text, labels, labels, 0.0, 1.0, frozenset({"histogram_quantile"}))

    def instant(self, depth: int) -> Vec:
        """An instant vector; depth bounds the nesting."""
        r = self.rng.random()
        if depth <= 0 or r < 0.3:
            return self.leaf() if self.rng.random() < 0.9 else self.histogram()
        if r < 0.5:
            return self.aggregate(self.instant(depth - 1))
        if r < 0.65:
            return self.function(self.instant(depth - 1))
        if r < 0.8:
            return self.scalar_arith(self.instant(depth - 1))
        if r < 0.93:
            return self.vector_arith()
        return self.histogram()

    def threshold(self, v: Vec) -> str:
        lo, hi = v.lo, v.hi
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            hi = lo + 1
        t = lo + (hi - lo) * self.rng.uniform(0.15, 0.85)
        # an irregular fraction: a tie with a computed value would depend on the last ulp
        return f"{round(t, 1) + 0.0137:.4f}".rstrip("0")

    def condition(self) -> Vec:
        """An alert condition: mostly `vector CMP threshold`, and the other shapes of the subset."""
        r = self.rng.random()
        v = self.instant(2)
        op = self.pick(">", "<", ">=", "<=", "!=", "==")
        if op in ("==", "!="):
            # equality on integer-valued data (counts, last samples, rounded values) only
            v = self.pick_integer(v)
            t = str(round((v.lo + v.hi) / 2))
        else:
            t = self.threshold(v)
        if r < 0.55:
            return Vec(
                f"{v.text} {op} {t}", v.labels, v.unique, v.lo, v.hi, v.constructs | {f"vector {op} scalar"}
            )
        if r < 0.62:
            flip = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}[op]
            return Vec(
                f"{t} {flip} {v.text}", v.labels, v.unique, v.lo, v.hi, v.constructs | {"scalar CMP vector"}
            )
        if r < 0.7:
            # a bool comparison, counted per group, then filtered
            by = self.pick("job", "cluster")
            text = f"sum by ({by}) ({v.text} {op} bool {t}) > 0"
            labels = frozenset({by} & v.labels) if by in v.labels else frozenset()
            if by not in v.labels:
                text = f"sum({v.text} {op} bool {t}) > 0"
            return Vec(text, labels, labels, 0, 3, v.constructs | {"bool", "sum by"})
        if r < 0.8:
            w = self.over_time()
            setop = self.pick("and", "unless", "or")
            raw = Vec("", _BASE_LABELS, _BASE_LABELS, 0, 20, frozenset())
            lhs = f"{self.gauge_sel_text()} > {self.threshold(raw)}"
            rhs = f"{w.text} < {self.threshold(w)}"
            on = self.pick("", " on(instance)", " ignoring(job)") if setop != "or" else ""
            return Vec(f"{lhs} {setop}{on} {rhs}", _BASE_LABELS, frozenset({"instance"}), 0, 20,
                       w.constructs | {setop})  # fmt: skip
        if r < 0.86:
            return self.absent()
        if r < 0.92:
            return self.time_shape()
        a, b = (
            self.aggregate_by(self.over_time(), "max", "job"),
            self.aggregate_by(self.gauge(), "avg", "job"),
        )
        return Vec(
            f"{a.text} > {b.text}",
            a.labels,
            a.unique,
            0,
            20,
            a.constructs | b.constructs | {"vector CMP vector"},
        )

    def pick_integer(self, v: Vec) -> Vec:
        """Equality only on integer-valued results: no float rounding can differ between Go and Python."""
        sel = self.selector(self.pick(*GAUGES))
        r = self.rng.random()
        if r < 0.4:
            return sel
        if r < 0.7:
            w = self.over_time()
            return Vec(f"round({w.text})", w.labels, w.unique, w.lo, w.hi, w.constructs | {"round"})
        rtext, rs = self.rng_range()
        n = rs / self.interval_s + 1
        return Vec(
            f"count_over_time({sel.text}[{rtext}])",
            sel.labels,
            sel.unique,
            1,
            n,
            frozenset({"count_over_time"}),
        )

    def gauge_sel_text(self) -> str:
        return self.selector(self.pick(*GAUGES)).text

    def absent(self) -> Vec:
        g = self.pick(*GAUGES)
        r = self.rng.random()
        if r < 0.4:
            text = f'absent({g}{{instance="{self.pick(*INSTANCES)}"}})'
            cons = "absent"
        elif r < 0.55:
            text = f'absent(nonexistent{{job="{self.pick("api", "db")}"}})'
            cons = "absent"
        else:
            rtext, _ = self.rng_range()
            text = f'absent_over_time({g}{{instance="{self.pick(*INSTANCES)}"}}[{rtext}])'
            cons = "absent_over_time"
        return Vec(text, frozenset({"instance"}), frozenset(), 1, 1, frozenset({cons}))

    def time_shape(self) -> Vec:
        r = self.rng.random()
        t = self.rng.choice((180, 420, 600, 900)) + 0.5
        if r < 0.4:
            return Vec(f"vector(time()) > {t}", frozenset(), frozenset(), 0, 0, frozenset({"time", "vector"}))
        if r < 0.7:
            sel = self.gauge_sel_text()
            return Vec(f"{sel} * 60 > time() - {t}", _BASE_LABELS, frozenset({"instance"}), 0, 0,
                       frozenset({"time", "vector * scalar"}))  # fmt: skip
        sel = self.gauge_sel_text()
        return Vec(f'{sel} > scalar(max({self.pick(*GAUGES)}{{job="db"}}))', _BASE_LABELS,
                   frozenset({"instance"}), 0, 0, frozenset({"scalar"}))  # fmt: skip


def generate(seed: int, count: int, *, stale: bool = True, samples: int = 16) -> list[Scenario]:
    """`count` scenarios from `seed` (the same seed always gives the same scenarios).

    `stale`: write promtool's `stale` (a staleness marker) in some input series."""
    rng = random.Random(seed)
    out: list[Scenario] = []
    for index in range(count):
        interval = rng.choice((30.0, 60.0, 60.0))
        eval_interval = rng.choice((30.0, 60.0, 60.0))
        n = samples if interval == 60 else samples * 2
        series = _series(rng, n, stale=stale)
        records: list[Vec] = []
        rules: list[Rule] = []
        gen = _Gen(rng, interval, records)
        if rng.random() < 0.4:
            inner = gen.instant(1)
            name = f"rec:{index}:{len(records)}"
            extra: tuple[tuple[str, str], ...] = (("src", "rec"),) if rng.random() < 0.3 else ()
            labels = inner.labels | {k for k, _ in extra}
            rules.append(
                Rule("record", name, inner.text, labels=extra, constructs=inner.constructs | {"record"})
            )
            records.append(Vec(name, labels, inner.unique, inner.lo, inner.hi, inner.constructs))
        for a in range(rng.randint(1, 3)):
            cond = gen.condition()
            for_s = rng.choice((0.0, 0.0, 60.0, 120.0, 180.0))
            kff = rng.choice((0.0, 0.0, 0.0, 60.0, 120.0))
            lbls: tuple[tuple[str, str], ...] = (("severity", rng.choice(("warning", "critical"))),)
            cons = cond.constructs | ({"for"} if for_s else set()) | ({"keep_firing_for"} if kff else set())
            rules.append(Rule("alert", f"A{index}_{a}", cond.text, for_s, kff, lbls, frozenset(cons)))
        end = n * interval + 360  # past the last sample by more than the 5m lookback
        end -= end % eval_interval
        constructs = frozenset().union(*(r.constructs for r in rules))
        out.append(
            Scenario(seed, index, interval, eval_interval, end, tuple(series), tuple(rules), constructs)
        )
    return out


# --------------------------------------------------------------------------- promtool's firing sets

_HEADER = re.compile(r"^Unit Testing:\s+(.*?)\s*$")
_CHECK = re.compile(r"^\s*alertname: (\S+), time: (\S+), $")
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_go_labels(text: str) -> Labels:
    """`{a="x", b="y\\"z"}` as Prometheus' labels.String() prints it (Go-quoted values)."""
    body = text.strip().rstrip(",")  # promtool separates the alerts of one check with commas
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"not a label set: {text!r}")
    pairs = [(k, ast.literal_eval(f'"{v}"')) for k, v in _PAIR.findall(body)]
    return tuple(sorted(pairs))


def parse_promtool_output(text: str) -> dict[str, Firing]:
    """promtool test rules' output (stdout and stderr merged, in order) -> the firing set per test file.

    Every check expected no alerts, so promtool prints each non-empty firing set as `got:[ 0: Labels:{...}
    Annotations:{...} ... ]` under `alertname: A, time: 5m,`."""
    out: dict[str, Firing] = {}
    current: Firing | None = None
    key: tuple[float, str] | None = None
    labels: Labels | None = None
    for line in text.splitlines():
        if m := _HEADER.match(line):
            current = out.setdefault(m.group(1), {})
            key = None
            continue
        if current is None:
            continue
        if m := _CHECK.match(line):
            key = (parse_duration(m.group(2)), m.group(1))
            current.setdefault(key, frozenset())
            continue
        s = line.strip()
        if s.startswith("Labels:") and key is not None:
            labels = parse_go_labels(s[len("Labels:") :])
        elif s.startswith("Annotations:") and key is not None and labels is not None:
            current[key] = current[key] | {(labels, parse_go_labels(s[len("Annotations:") :]))}
            labels = None
    return out


def promtool_firing(promtool: str, test_files: Sequence[Path], cwd: Path) -> dict[str, Firing]:
    """Prometheus' firing sets of the given test files (paths relative to cwd in promtool's headers)."""
    rel = [str(p.relative_to(cwd)) for p in test_files]
    # stderr into stdout: the FAILED reports (stderr) follow their file's header (stdout) in order
    r = subprocess.run(
        [promtool, "test", "rules", *rel],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    parsed = parse_promtool_output(r.stdout)
    missing = [f for f in rel if f not in parsed]
    # Only "some check got alerts" may fail a run: a file promtool could not load is a broken scenario.
    if missing or "could not" in r.stdout or "error" in r.stdout.lower():
        raise RuntimeError(f"promtool did not test {missing or 'every file'} cleanly:\n{r.stdout[-4000:]}")
    return {f: parsed[f] for f in rel}
