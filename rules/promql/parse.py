"""PromQL text -> `rules.promql.ast`, on promql-parser (a real PromQL parser), refusing what
is outside the subset we evaluate, by name.

Everything the parser accepts is either converted or refused with a `PromqlError` whose
`construct` names what was refused ("subquery", "offset", "function predict_linear", ...), so a
rule file problem can say exactly what to change. `SUBSET` is docs/promql.md's table, printed by
`python -m rules.promql.parse --markdown`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import promql_parser as pp

from rules.model import Matcher, RulesError
from rules.promql import ast

RANGE_FUNCTIONS = frozenset(
    {
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
        "rate", "increase", "delta", "deriv", "absent_over_time",
    }
)  # fmt: skip
INSTANT_FUNCTIONS = frozenset(
    {
        "absent", "histogram_quantile", "time", "vector", "scalar", "label_replace",
        "clamp", "clamp_min", "clamp_max", "abs", "round", "ceil", "floor",
    }
)  # fmt: skip
FUNCTIONS = RANGE_FUNCTIONS | INSTANT_FUNCTIONS
AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "quantile", "topk", "bottomk"})
BINARY_OPS = ast.ARITHMETIC | ast.COMPARISONS | ast.SET_OPS

_SUPPORTED_TEXT = (
    "supported: selectors with =, !=, =~, !~ matchers and [range]; functions "
    + ", ".join(sorted(FUNCTIONS))
    + "; aggregations "
    + ", ".join(sorted(AGGREGATIONS))
    + " with by/without; + - * / % ^, comparisons (with or without bool), and/or/unless, "
    "on/ignoring, group_left/group_right; unary minus; numbers"
)


@dataclass(frozen=True, slots=True)
class Construct:
    """One row of docs/promql.md's subset table. `examples` are parsed by the unit tests: each
    must load when `supported`, and be refused by name otherwise, so the table cannot drift."""

    construct: str
    supported: bool
    note: str = ""
    examples: tuple[str, ...] = ()


_RANGE_NOTES = {
    "rate": "per-second; extrapolated to the window edges and counter resets handled, as Prometheus",
    "increase": "rate times the range: extrapolated, counter resets handled",
    "delta": "for gauges: extrapolated like rate, no counter resets",
    "deriv": "least-squares slope; needs two samples in the window",
    "quantile_over_time": "any φ (0.5, 0.95, ...); φ outside [0, 1] gives ±Inf, as Prometheus",
    "absent_over_time": "1 with the selector's `=` labels when no sample is in the window",
    "last_over_time": "keeps `__name__`, unlike the other functions",
}
_RANGE_EXAMPLES = {"quantile_over_time": "quantile_over_time(0.95, m[5m])"}
_INSTANT = [
    ("`absent(v)`", "1 with the selector's `=` labels when `v` is empty", 'absent(up{job="db"})'),
    (
        "`histogram_quantile(φ, b)`",
        "classic `le`-labelled `_bucket` series (usually `sum by (le) (rate(m_bucket[5m]))`)",
        "histogram_quantile(0.9, sum by (le) (rate(m_bucket[5m])))",
    ),
    ("`time()`", "the tick's event time, never the wall clock", "time() - m > 60"),
    ("`vector(s)`, `scalar(v)`", "", "scalar(sum(m)) > vector(1)"),
    (
        "`label_replace(v, dst, repl, src, regex)`",
        "regex fully anchored; `$1` / `${name}` expanded as Go does",
        'label_replace(m, "host", "$1", "instance", "(.*):.*")',
    ),
    ("`clamp(v, lo, hi)`, `clamp_min`, `clamp_max`", "drops `__name__`", "clamp(m, 0, 100)"),
    ("`abs`, `ceil`, `floor`, `round(v, to_nearest)`", "round: ties round up, as Prometheus", "round(m, 5)"),
]
_AGG_NOTES = {
    "topk": "ties follow input order; keeps the series' labels",
    "bottomk": "as topk",
    "quantile": "φ as in quantile_over_time",
    "count": "",
}
_AGG_EXAMPLES = {
    "topk": "topk by (cluster) (3, m)",
    "bottomk": "bottomk(1, m)",
    "quantile": "quantile without (instance) (0.9, m)",
}

SUBSET: list[Construct] = [
    Construct(
        'instant selector `m{l="v", l!="v", l=~"re", l!~"re"}`',
        True,
        "the newest sample within the lookback (5m); a staleness marker ends it; regexes fully anchored",
        ('up{job="db", instance=~"db-.*"} == 0',),
    ),
    Construct(
        'selector without a metric name `{job="db"}`, `{__name__=~"pg_.*"}`',
        True,
        "its group then receives every metric on the stream (slower)",
        ('{job="db"} == 0', '{__name__=~"pg_.*"} > 1'),
    ),
    Construct(
        "range selector `m[5m]`",
        True,
        "only as a range function's argument; window `(t - 5m, t]` (Prometheus 3)",
        ("avg_over_time(m[5m]) > 1",),
    ),
    *[
        Construct(
            f"`{f}(m[d])`" if f != "quantile_over_time" else "`quantile_over_time(φ, m[d])`",
            True,
            _RANGE_NOTES.get(f, ""),
            (_RANGE_EXAMPLES.get(f, f"{f}(m[5m])"),),
        )
        for f in sorted(RANGE_FUNCTIONS)
    ],
    *[Construct(c, True, note, (ex,)) for c, note, ex in _INSTANT],
    *[
        Construct(
            f"`{a} by (...)` / `{a} without (...)`",
            True,
            _AGG_NOTES.get(a, "")
            or "across instances: the group's watermark waits for every source partition",
            (_AGG_EXAMPLES.get(a, f"{a} by (cluster) (m) > 1"),),
        )
        for a in sorted(AGGREGATIONS)
    ],
    Construct(
        "`+ - * / % ^`", True, "between numbers, a vector and a number, or two vectors", ("a / b * 100",)
    ),
    Construct(
        "`== != > < >= <=`",
        True,
        "filters (an alert fires for every sample left); with `bool`, 0 or 1",
        ("m > 80", "m > bool 80", "80 < m"),
    ),
    Construct(
        "`and`, `or`, `unless`",
        True,
        "many-to-many, on all labels unless `on`/`ignoring`",
        ("a and b", "a or b", "a unless on(instance) b"),
    ),
    Construct(
        "`on(...)` / `ignoring(...)`", True, "vector matching", ("a / on(instance) b", "a - ignoring(x) b")
    ),
    Construct(
        "`group_left(...)` / `group_right(...)`",
        True,
        "many-to-one / one-to-many; duplicate matches fail the evaluation as in Prometheus",
        ("a * on(instance) group_left(role) b",),
    ),
    Construct("unary minus, numbers, parentheses", True, "", ("-(m) < -1", "(m + 1) > 0x10")),
    Construct("`offset`", False, "write the rule on current data", ("m offset 5m",)),
    Construct("`@` modifier", False, "rules evaluate at their tick", ("m @ 100",)),
    Construct(
        "subquery `f(expr[1h:1m])`",
        False,
        "record `expr` with a recording rule, then apply a range function to its output",
        ("max_over_time(rate(x[5m])[1h:1m])",),
    ),
    Construct(
        "`or` inside label matchers", False, "write two selectors joined with `or`", ('m{a="1" or b="2"}',)
    ),
    Construct("`fill(...)` binary modifier", False, "experimental in Prometheus", ("a + fill(0) b",)),
    Construct("`atan2`", False, "", ("a atan2 b",)),
    Construct(
        "aggregations `stddev`, `stdvar`, `group`, `count_values`, `limitk`, `limit_ratio`",
        False,
        "stddev_over_time / stdvar_over_time exist per series",
        ("stddev(m)", "stdvar(m)", "group(m)", 'count_values("v", m)', "limitk(2, m)", "limit_ratio(0.5, m)"),
    ),
    Construct("`irate`, `idelta`", False, "use rate / delta", ("irate(m[5m])", "idelta(m[5m])")),
    Construct(
        "`predict_linear`",
        False,
        "`m + deriv(m[d]) * seconds` approximates it",
        ("predict_linear(m[1h], 3600) < 0",),
    ),
    Construct(
        "`changes`, `resets`, `present_over_time`, `mad_over_time`, `double_exponential_smoothing`",
        False,
        "`count_over_time(m[d]) > bool 0` for present_over_time",
        (
            "changes(m[5m])",
            "resets(m[5m])",
            "present_over_time(m[5m])",
            "mad_over_time(m[5m])",
            "double_exponential_smoothing(m[5m], 0.5, 0.5)",
        ),
    ),
    Construct(
        "`holt_winters` (Prometheus 2)",
        False,
        "refused as a syntax error: Prometheus 3 renamed it",
        ("holt_winters(m[5m], 0.5, 0.5)",),
    ),
    Construct(
        "`label_join`", False, "label_replace covers one source label", ('label_join(m, "a", ",", "b")',)
    ),
    Construct(
        "`timestamp`, `sort`, `sort_desc`",
        False,
        "sort: a rule's result has no order",
        ("timestamp(m)", "sort(m)", "sort_desc(m)"),
    ),
    Construct(
        "math functions `sgn`, `exp`, `ln`, `log2`, `log10`, `sqrt`, trigonometry",
        False,
        "",
        ("sgn(m)", "exp(m)", "ln(m)", "log2(m)", "log10(m)", "sqrt(m)", "sin(m)"),
    ),
    Construct(
        "calendar functions `hour`, `day_of_week`, `month`, ...",
        False,
        "",
        ("hour()", "day_of_week()", "month()"),
    ),
    Construct(
        "native histograms, `histogram_count`, `histogram_sum`, `histogram_fraction`",
        False,
        "only classic `_bucket` series",
        ("histogram_count(m)", "histogram_sum(m)", "histogram_fraction(0, 1, m)"),
    ),
]


def markdown_table() -> str:
    """docs/promql.md's subset table (`python -m rules.promql.parse --markdown`)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # `a | b` would end the cell

    rows = ["| construct | supported | note | example |", "|---|---|---|---|"]
    for c in SUBSET:
        example = f"`{c.examples[0]}`" if c.examples else ""
        status = "yes" if c.supported else "refused"
        rows.append(f"| {cell(c.construct)} | {status} | {cell(c.note)} | {cell(example)} |")
    return "\n".join(rows) + "\n"


class PromqlError(RulesError):
    """A PromQL expression we cannot evaluate: invalid, or outside the subset (`construct`)."""

    def __init__(self, construct: str, message: str) -> None:
        super().__init__(message)
        self.construct = construct


def _refuse(construct: str) -> PromqlError:
    return PromqlError(construct, f"{construct} is not supported here (docs/promql.md); {_SUPPORTED_TEXT}")


def parse_expr(text: str) -> ast.Expr:
    """Parse a rule's `expr:`; raise PromqlError naming the construct when it cannot be used."""
    try:
        tree = pp.parse(text)
    except ValueError as exc:
        raise PromqlError("syntax", f"invalid PromQL {text!r}: {exc}") from exc
    expr = _convert(tree)
    kind = ast.value_type(expr)
    if kind not in ("vector", "scalar"):
        # Prometheus refuses these in rule files too: a rule's result must be a vector or scalar.
        raise PromqlError(
            f"{kind} expression", f"a rule expression must be a vector or a scalar, not a {kind}: {text!r}"
        )
    return expr


def _convert(node: Any) -> ast.Expr:
    match node:
        case pp.ParenExpr():
            return _convert(node.expr)
        case pp.NumberLiteral():
            return ast.Number(float(node.val))
        case pp.StringLiteral():
            return ast.String(str(node.val))
        case pp.VectorSelector():
            return _selector(node)
        case pp.MatrixSelector():
            return ast.MatrixSelector(_selector(node.vector_selector), node.range.total_seconds())
        case pp.SubqueryExpr():
            raise _refuse("subquery")
        case pp.UnaryExpr():
            return ast.Unary("-", _convert(node.expr))
        case pp.Call():
            return _call(node)
        case pp.AggregateExpr():
            return _aggregate(node)
        case pp.BinaryExpr():
            return _binary(node)
    raise _refuse(f"expression {type(node).__name__}")


def _selector(node: Any) -> ast.VectorSelector:
    if node.offset is not None:
        raise _refuse("offset")
    if node.at is not None:
        raise _refuse("@ modifier")
    if node.matchers.or_matchers:
        raise _refuse("or in label matchers")
    name: str | None = node.name
    matchers: list[Matcher] = []
    for m in node.matchers.matchers:
        op = m.op
        if name is None and m.name == "__name__" and op == pp.MatchOp.Equal:
            name = m.value
            continue
        if op in (pp.MatchOp.Re, pp.MatchOp.NotRe):
            try:
                # PromQL regexes are fully anchored: Matcher.matches uses fullmatch.
                pattern = re.compile(m.value)
            except re.error as exc:
                raise PromqlError(
                    "regex", f"regex {m.value!r} of label {m.name!r} is invalid here: {exc}"
                ) from exc
            matchers.append(Matcher(m.name, m.value, True, op == pp.MatchOp.NotRe, pattern))
        else:
            matchers.append(Matcher(m.name, m.value, False, op == pp.MatchOp.NotEqual))
    return ast.VectorSelector(name, tuple(matchers))


def _call(node: Any) -> ast.Call:
    func = node.func.name
    if func not in FUNCTIONS:
        raise _refuse(f"function {func}")
    args = tuple(_convert(a) for a in node.args)
    if func == "label_replace":
        regex = args[4]
        if isinstance(regex, ast.String):
            try:
                re.compile(regex.value)
            except re.error as exc:
                raise PromqlError("regex", f"label_replace regex {regex.value!r} is invalid: {exc}") from exc
    return ast.Call(func, args)


def _aggregate(node: Any) -> ast.Aggregate:
    op = str(node.op)
    if op not in AGGREGATIONS:
        raise _refuse(f"aggregation {op}")
    grouping: tuple[str, ...] = ()
    without = False
    if node.modifier is not None:
        grouping = tuple(node.modifier.labels)
        without = node.modifier.type == pp.AggModifierType.Without
    param = None if node.param is None else _convert(node.param)
    return ast.Aggregate(op, _convert(node.expr), grouping, without, param)


# The binding's enums are not hashable: a list of pairs, compared with ==.
_CARD: list[tuple[Any, ast.Cardinality]] = [
    (pp.VectorMatchCardinality.OneToOne, "one-to-one"),
    (pp.VectorMatchCardinality.ManyToOne, "many-to-one"),
    (pp.VectorMatchCardinality.OneToMany, "one-to-many"),
    (pp.VectorMatchCardinality.ManyToMany, "many-to-many"),
]


def _binary(node: Any) -> ast.Binary:
    op = str(node.op)
    if op not in BINARY_OPS:
        raise _refuse(f"operator {op}")
    lhs, rhs = _convert(node.lhs), _convert(node.rhs)
    mod = node.modifier
    return_bool = bool(mod is not None and mod.return_bool)
    if mod is not None and (mod.fill_values.lhs is not None or mod.fill_values.rhs is not None):
        raise _refuse("fill modifier")
    matching = None
    if ast.value_type(lhs) == "vector" and ast.value_type(rhs) == "vector":
        card: ast.Cardinality = "many-to-many" if op in ast.SET_OPS else "one-to-one"
        on = False
        labels: tuple[str, ...] = ()
        include: tuple[str, ...] = ()
        if mod is not None:
            card = next(name for value, name in _CARD if value == mod.card)
            if mod.matching is not None:
                on = mod.matching.type == pp.LabelModifierType.Include
                labels = tuple(mod.matching.labels)
            include = tuple(mod.group_labels or ())
        matching = ast.VectorMatching(on, labels, card, include)
    return ast.Binary(op, lhs, rhs, return_bool, matching)


def main(argv: list[str], out: Callable[[str], Any] | None = None) -> int:
    out = out or sys.stdout.write  # looked up now: tests capture stdout
    if argv != ["--markdown"]:
        out("usage: python -m rules.promql.parse --markdown   (prints docs/promql.md's subset table)\n")
        return 2
    out(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
