"""Alert templates render as Prometheus renders them (expectations from Prometheus'
template/template_test.go and Go's fmt), and what is outside the subset is a load problem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from rules.promql.gotemplate import TemplateError, check, compile_template, go_float, render

LABELS = {"instance": "db1:9100", "job": "node", "__name__": "up"}


def one(fn: str, values: Sequence[object]) -> str:
    """`{{ range . }}{{ fn . }}:{{ end }}` of Prometheus' tests, one value at a time."""
    return "".join(render(f"{{{{ {fn} $value }}}}:", {}, v) for v in values)  # type: ignore[arg-type]


def test_humanize_family_matches_prometheus() -> None:
    assert one("humanize", [0.0, 1.0, 1234567.0, 0.12]) == "0:1:1.235M:120m:"
    assert one("humanize", ["0.0", "1.0", "1234567.0", ".12"]) == "0:1:1.235M:120m:"
    assert one("humanize", [0, -1, 1, 1234567, 2**63 - 1]) == "0:-1:1:1.235M:9.223E:"
    assert one("humanize1024", [0.0, 1.0, 1048576.0, 0.12]) == "0:1:1Mi:0.12:"
    assert one("humanize1024", [0, -1, 1, 1234567, 2**63 - 1]) == "0:-1:1:1.177Mi:8Ei:"
    durations = [0, 1, 60, 3600, 86400, 86400 + 3600, -(86400 * 2 + 3600 * 3 + 60 * 4 + 5), 899.99]
    assert (
        one("humanizeDuration", durations)
        == "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    )
    small = [0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]
    assert one("humanizeDuration", small) == "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    assert one("humanizeDuration", [0, -1, 1, 1234567]) == "0s:-1s:1s:14d 6h 56m 7s:"
    assert one("humanizePercentage", [0, -1, 1, 1234567, 2**63 - 1]) == "0%:-100%:100%:1.235e+08%:9.223e+20%:"
    pct = ":".join(f"{{{{ {v} | humanizePercentage }}}}" for v in ("-0.22222", "0.0", "0.1234567", "1.23456"))
    assert render(pct, {}, 0.0) == "-22.22%:0%:12.35%:123.5%"
    assert one("humanizeTimestamp", [0, -1, 1, 1234567, 9223372036]) == (
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:"
        "1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:"
    )
    assert render("{{ 1435065584.128 | humanizeTimestamp }}", {}, 0) == "2015-06-23 13:19:44.128 +0000 UTC"
    assert render('{{ "1435065584.128" | humanizeTimestamp }}', {}, 0) == "2015-06-23 13:19:44.128 +0000 UTC"


def test_non_finite_values_as_prometheus() -> None:
    fns = ("humanize", "humanize1024", "humanizeDuration", "humanizeTimestamp")
    tmpl = "".join(f"{{{{ {fn} $value }}}}:" for fn in fns)
    got = "".join(render(tmpl, {}, v) for v in (math.inf, -math.inf, math.nan))
    assert got == "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"


def test_execution_errors_render_as_prometheus() -> None:
    got = render('{{ humanize "one" }}', {}, 0)
    assert got.startswith("<error expanding template: ") and 'parsing "one": invalid syntax' in got
    got = render("{{ humanizeTimestamp $value }}", {}, float(2**64))
    assert "cannot be represented as a nanoseconds timestamp since it overflows int64" in got


def test_strings() -> None:
    assert render('{{ "aa bb CC" | title }}', {}, 0) == "Aa Bb CC"
    assert render('{{ "aa bb CC" | toUpper }}', {}, 0) == "AA BB CC"
    assert render('{{ "aA bB CC" | toLower }}', {}, 0) == "aa bb cc"
    assert render("{{ $labels.job | toUpper }}", LABELS, 0) == "NODE"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e6, "1e+06"), (123456.7, "123456.7"), (0.1, "0.1"), (1e-05, "1e-05"), (0.0001, "0.0001"),
     (1353755652.0, "1.353755652e+09"), (85.5, "85.5"), (3.0, "3"), (-2.5e-7, "-2.5e-07"), (math.nan, "NaN"),
     (math.inf, "+Inf"), (-math.inf, "-Inf"), (100000.0, "100000"), (1234567.5, "1.2345675e+06")],
)  # fmt: skip
def test_value_prints_as_go_v(value: float, text: str) -> None:
    assert go_float(value) == text
    assert render("{{ $value }}", {}, value) == text
    assert render("{{ .Value }}", {}, value) == text


def test_labels_value_and_external_labels() -> None:
    t = compile_template(
        "{{ $labels.instance }} of {{ .Labels.job }} in {{ $externalLabels.cluster }}: {{ $value }}"
    )
    assert t.render(LABELS, 0.5, {"cluster": "eu1"}) == "db1:9100 of node in eu1: 0.5"
    # a missing label is Go's missing map key
    assert render("[{{ $labels.nope }}]", LABELS, 1) == "[<no value>]"
    assert render('[{{ index $labels "instance" }}|{{ index $labels "nope" }}]', LABELS, 1) == "[db1:9100|]"


def test_printf() -> None:
    assert render('{{ printf "%.2f" $value }}', {}, 85.456) == "85.46"
    assert render('{{ $value | printf "%.1f%%" }}', {}, 85.456) == "85.5%"
    assert render('{{ printf "%.2f" $value }}', {}, math.nan) == "NaN"
    assert render('{{ printf "%s is %.0f" $labels.instance $value }}', LABELS, 3.0) == "db1:9100 is 3"
    assert render('{{ printf "%d" $value }}', {}, 1.5) == "%!d(float64=1.5)"
    assert render('{{ printf "%d items" 3 }}', {}, 0) == "3 items"


def test_if_else_and_comparisons() -> None:
    t = compile_template("{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}")
    assert [t.render({}, v) for v in (90.0, 60.0, 10.0)] == ["high", "mid", "low"]
    assert render('{{ if eq $labels.job "node" }}yes{{ end }}', LABELS, 0) == "yes"
    assert render("{{ if and (gt $value 1.0) (lt $value 3.0) }}in{{ else }}out{{ end }}", {}, 2.0) == "in"
    assert render('{{ if not (eq $labels.job "db") }}other{{ end }}', LABELS, 0) == "other"
    # Go: a float64 and an int constant are incompatible for comparison
    assert "incompatible types for comparison" in render("{{ if gt $value 80 }}x{{ end }}", {}, 90.0)


def test_trim_markers_and_comments() -> None:
    assert render("a  {{- $labels.job -}}  b", LABELS, 0) == "anodeb"
    assert render("a {{/* why */}}b", {}, 0) == "a b"
    assert render("plain text", {}, 0) == "plain text"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{{ query "up" | first | value }}', "function `query`"),
        ("{{ range $labels }}x{{ end }}", "`range`"),
        ("{{ with $labels.job }}x{{ end }}", "`with`"),
        ("{{ $x := 1 }}", "variable declarations"),
        ("{{ $foo }}", "undefined variable $foo"),
        ("{{ .Foo }}", "can't evaluate field Foo"),
        ("{{ $labels.job.x }}", "can't evaluate field x in type string"),
        ("{{ humanize }}", "wrong number of args for humanize"),
        ("{{ nosuch $value }}", 'function "nosuch" not defined'),
        ("{{ $value", "unclosed action"),
        ("{{ if $value }}x", "without its {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ('{{ reReplaceAll "a" "b" $labels.job }}', "function `reReplaceAll`"),
    ],
)
def test_outside_the_subset_is_a_load_problem(text: str, named: str) -> None:
    with pytest.raises(TemplateError, match=None) as err:
        compile_template(text)
    assert named in str(err.value)
    assert check(text) and named in check(text)[0]
