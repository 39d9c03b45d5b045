"""PromQL text -> our AST on promql-parser: the subset converts, the rest is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.model import Matcher
from rules.promql import ast
from rules.promql.parse import (
    AGGREGATIONS,
    FUNCTIONS,
    SUBSET,
    PromqlError,
    main,
    markdown_table,
    parse_expr,
)

ROOT = Path(__file__).resolve().parents[4]


def test_selector_with_matchers_and_name_normalised() -> None:
    sel = parse_expr('{__name__="up", job="db", env!="dev", i=~"pg-.*", r!~"eu|us"}')
    assert isinstance(sel, ast.VectorSelector)
    assert sel.name == "up"
    assert [(m.name, m.value, m.regex, m.negate) for m in sel.matchers] == [
        ("job", "db", False, False),
        ("env", "dev", False, True),
        ("i", "pg-.*", True, False),
        ("r", "eu|us", True, True),
    ]
    # regexes are fully anchored, as in PromQL
    regex = sel.matchers[2]
    assert regex.matches({"i": "pg-1"}) and not regex.matches({"i": "x-pg-1"})
    assert sel.matchers[3].matches({"r": "ap"}) and not sel.matchers[3].matches({"r": "eu"})


def test_regex_name_matcher_stays_a_matcher() -> None:
    sel = parse_expr('{__name__=~"pg_.*"}')
    assert isinstance(sel, ast.VectorSelector)
    assert sel.name is None and sel.matchers[0].name == "__name__"
    assert ast.metric_names(sel) is None


def test_aggregation_binary_matching_and_helpers() -> None:
    expr = parse_expr(
        'sum by (a) (rate(foo{x="1"}[5m]))'
        " > bool on(a) group_left(b) max without (c) (avg_over_time(bar[10m]))"
    )
    assert isinstance(expr, ast.Binary)
    assert expr.op == ">" and expr.return_bool
    assert expr.matching == ast.VectorMatching(on=True, labels=("a",), card="many-to-one", include=("b",))
    assert expr.lhs == ast.Aggregate(
        "sum",
        ast.Call("rate", (ast.MatrixSelector(ast.VectorSelector("foo", (Matcher("x", "1"),)), 300.0),)),
        ("a",),
        False,
        None,
    )
    assert isinstance(expr.rhs, ast.Aggregate) and expr.rhs.without and expr.rhs.grouping == ("c",)
    assert ast.metric_names(expr) == {"foo", "bar"}
    assert ast.max_range_s(expr) == 600.0
    assert [s.name for s in ast.selectors(expr)] == ["foo", "bar"]


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        ("a + b", ast.VectorMatching(False, (), "one-to-one", ())),
        ("a / ignoring(x) b", ast.VectorMatching(False, ("x",), "one-to-one", ())),
        ("a and b", ast.VectorMatching(False, (), "many-to-many", ())),
        ("a unless on(i) b", ast.VectorMatching(True, ("i",), "many-to-many", ())),
        ("a > on(x) group_right(y) b", ast.VectorMatching(True, ("x",), "one-to-many", ("y",))),
        ("a > 3", None),
        ("1 + 2", None),
    ],
)
def test_vector_matching_set_exactly_between_vectors(text: str, matching: ast.VectorMatching | None) -> None:
    expr = parse_expr(text)
    assert isinstance(expr, ast.Binary)
    assert expr.matching == matching


def test_scalars_unary_and_params() -> None:
    assert parse_expr("(1 + 2) * 3") == ast.Binary(
        "*", ast.Binary("+", ast.Number(1.0), ast.Number(2.0)), ast.Number(3.0)
    )
    assert parse_expr("-foo") == ast.Unary("-", ast.VectorSelector("foo"))
    assert parse_expr("topk(3, foo)") == ast.Aggregate(
        "topk", ast.VectorSelector("foo"), param=ast.Number(3.0)
    )
    assert parse_expr('label_replace(up, "d", "$1", "i", "(.*)")') == ast.Call(
        "label_replace",
        (ast.VectorSelector("up"), ast.String("d"), ast.String("$1"), ast.String("i"), ast.String("(.*)")),
    )
    assert ast.value_type(parse_expr("time() - 5")) == "scalar"
    assert ast.value_type(parse_expr("scalar(up) * up")) == "vector"


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("up offset 5m", "offset"),
        ("rate(up[5m] offset 1m)", "offset"),
        ("up @ 100", "@ modifier"),
        ("max_over_time(rate(x[1m])[10m:1m])", "subquery"),
        ("predict_linear(x[1h], 3600) < 0", "function predict_linear"),
        ("irate(x[5m])", "function irate"),
        ("stddev(x)", "aggregation stddev"),
        ('count_values("v", x)', "aggregation count_values"),
        ("a atan2 b", "operator atan2"),
        ("x[5m]", "matrix expression"),
        ('"text"', "string expression"),
        ("sum(x", "syntax"),
        ('x{a=~"("}', "syntax"),
    ],
)
def test_outside_the_subset_is_refused_by_name(text: str, construct: str) -> None:
    with pytest.raises(PromqlError) as info:
        parse_expr(text)
    assert info.value.construct == construct
    assert construct in str(info.value) or construct == "syntax" or construct.endswith("expression")
    if construct not in ("syntax", "matrix expression", "string expression"):
        assert "supported:" in str(info.value)  # says what to use instead


def test_subset_table_lists_supported_and_refused() -> None:
    assert any(c.supported for c in SUBSET) and any(not c.supported for c in SUBSET)
    assert any("subquery" in c.construct for c in SUBSET if not c.supported)


@pytest.mark.parametrize(
    ("construct", "supported", "example"),
    [(c.construct, c.supported, e) for c in SUBSET for e in c.examples],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_example_of_the_table_is_what_the_parser_does(
    construct: str, supported: bool, example: str
) -> None:
    """docs/promql.md cannot claim what the parser does not do: a supported row's examples load,
    a refused row's examples are refused (by name, or as syntax the parser does not know)."""
    if supported:
        parse_expr(example)
    else:
        with pytest.raises(PromqlError):
            parse_expr(example)


def test_every_function_and_aggregation_of_the_subset_has_a_row() -> None:
    text = markdown_table()
    rows = [c.construct for c in SUBSET if c.supported]
    for name in sorted(FUNCTIONS | AGGREGATIONS):
        assert any(f"`{name}" in r or f" `{name}`" in r or f", `{name}" in r for r in rows), name
    assert text.count("\n") == len(SUBSET) + 2 and all(c.examples for c in SUBSET)


def test_the_doc_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    lines = (ROOT / "docs/promql.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| construct | supported | note | example |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert "\n".join(lines[start:end]) + "\n" == markdown_table(), (
        "docs/promql.md's table is stale: paste `python -m rules.promql.parse --markdown` over it"
    )
    assert main(["--markdown"]) == 0 and capsys.readouterr().out == markdown_table()
    assert main([]) == 2
