"""The PromQL subset as plain frozen dataclasses, independent of the parser library.

`rules.promql.parse.parse_expr` builds these from promql-parser's tree (refusing what is outside
the subset); the evaluator, the rule-group planner and the stream router read only these, so
the parser binding stays in one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rules.model import Matcher

Cardinality = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]
ValueType = Literal["scalar", "vector", "matrix", "string"]

# Functions whose result is a scalar; every other function of the subset returns a vector.
SCALAR_FUNCTIONS = frozenset({"time", "scalar"})


@dataclass(frozen=True, slots=True)
class Number:
    value: float


@dataclass(frozen=True, slots=True)
class String:
    value: str


@dataclass(frozen=True, slots=True)
class VectorSelector:
    """`name{matchers}`; `name` is None when the selector has no fixed metric name.

    A plain `{__name__="x"}` is normalised to `name="x"`; any other `__name__` matcher
    (regex, negation) stays in `matchers`.
    """

    name: str | None
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True, slots=True)
class MatrixSelector:
    vector: VectorSelector
    range_s: float


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Aggregate:
    op: str
    expr: Expr
    grouping: tuple[str, ...] = ()
    without: bool = False
    param: Expr | None = None


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """`on(labels)` (on=True) or `ignoring(labels)`, and `group_left/right(include)`."""

    on: bool = False
    labels: tuple[str, ...] = ()
    card: Cardinality = "one-to-one"
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Binary:
    """`lhs op rhs`; `matching` is set exactly when both sides are vectors."""

    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # only "-": a unary plus is dropped by the parser
    expr: Expr


Expr = Number | String | VectorSelector | MatrixSelector | Call | Aggregate | Binary | Unary

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS = frozenset({"and", "or", "unless"})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^"})


def children(expr: Expr) -> tuple[Expr, ...]:
    match expr:
        case MatrixSelector(vector=v):
            return (v,)
        case Call(args=args):
            return args
        case Aggregate(expr=e, param=p):
            return (e,) if p is None else (p, e)
        case Binary(lhs=lhs, rhs=rhs):
            return (lhs, rhs)
        case Unary(expr=e):
            return (e,)
    return ()


def walk(expr: Expr) -> list[Expr]:
    """Every node, depth first, parents before children."""
    out: list[Expr] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children(node)))
    return out


def selectors(expr: Expr) -> list[VectorSelector]:
    """Every vector selector, including those inside range selectors, in source order."""
    return [node for node in walk(expr) if isinstance(node, VectorSelector)]


def metric_names(expr: Expr) -> set[str] | None:
    """The metric names the expression can read; None when some selector has no fixed name
    (so every series may matter to it)."""
    names: set[str] = set()
    for sel in selectors(expr):
        if sel.name is None:
            return None
        names.add(sel.name)
    return names


def max_range_s(expr: Expr) -> float:
    """The longest range window in the expression (0 when it has none): with the lookback,
    how much history a store must keep for it."""
    return max((node.range_s for node in walk(expr) if isinstance(node, MatrixSelector)), default=0.0)


def value_type(expr: Expr) -> ValueType:
    match expr:
        case Number():
            return "scalar"
        case String():
            return "string"
        case VectorSelector() | Aggregate():
            return "vector"
        case MatrixSelector():
            return "matrix"
        case Call(func=func):
            return "scalar" if func in SCALAR_FUNCTIONS else "vector"
        case Unary(expr=e):
            return value_type(e)
        case Binary(lhs=lhs, rhs=rhs):
            return "vector" if "vector" in (value_type(lhs), value_type(rhs)) else "scalar"
    raise TypeError(f"not a PromQL expression: {expr!r}")
