"""PromQL text -> `rules.promql.ast`, on promql-parser (a real PromQL parser), refusing what
is outside the subset we evaluate, by name.

Everything the parser accepts is either converted or refused with a `PromqlError` whose
`construct` names what was refused ("subquery", "offset", "function predict_linear", ...), so a
rule file problem can say exactly what to change. `SUBSET` is the table the docs print.
"""

from __future__ import annotations

import re
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

SUBSET: list[tuple[str, bool, str]] = [
    ('instant selector `m{l="v", l=~"re"}`', True, "newest sample within the lookback (5m)"),
    ("range selector `m[5m]`", True, "as an argument of a range function"),
    *[(f"`{f}(m[d])`", True, "") for f in sorted(RANGE_FUNCTIONS)],
    *[(f"`{f}(...)`", True, "") for f in sorted(INSTANT_FUNCTIONS)],
    *[(f"`{a} by/without (...)`", True, "") for a in sorted(AGGREGATIONS)],
    ("`+ - * / % ^`", True, "scalar and vector operands"),
    ("`== != > < >= <=`", True, "filter, or 0/1 with `bool`"),
    ("`and` `or` `unless`", True, ""),
    ("`on` / `ignoring`, `group_left` / `group_right`", True, "vector matching"),
    ("unary minus, numbers, parentheses", True, ""),
    ("offset", False, "write the rule on current data"),
    ("@ modifier", False, "rules evaluate at the tick's time"),
    ("subquery", False, "use a recording rule and a range function over its output"),
    ("aggregation stddev/stdvar/group/count_values/limitk/limit_ratio", False, ""),
    ("other functions (predict_linear, irate, changes, resets, holt_winters, label_join, ...)", False, ""),
    ("atan2", False, ""),
    ("`or` inside label matchers", False, ""),
    ("native histograms", False, "only classic `_bucket` series"),
]


class PromqlError(RulesError):
    """A PromQL expression we cannot evaluate: invalid, or outside the subset (`construct`)."""

    def __init__(self, construct: str, message: str) -> None:
        super().__init__(message)
        self.construct = construct


def _refuse(construct: str) -> PromqlError:
    return PromqlError(construct, f"{construct} is not supported here; {_SUPPORTED_TEXT}")


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
