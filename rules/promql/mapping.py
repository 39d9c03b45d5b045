"""Prometheus alerting rules -> our `Rule`s, and promtool test suites run on them. Pure: no I/O.

Teams moving from Prometheus bring rule groups and their `promtool test rules` suites; this
lets them run both unchanged where the expression fits our rule model (one series, one
window aggregation, one threshold):

    metric > N                          last sample within 5m (Prometheus' lookback)
    metric{l="v", m=~"re"} > N          label matchers (=, !=, =~, !~)
    avg_over_time(metric[5m]) > N       also min/max/sum/count/last_over_time
    quantile_over_time(0.95, m[5m]) > N q in {0.5, 0.95, 0.99}
    rate(metric[5m]) > N
    N < metric ...                      the comparison may be written either way round

Anything else (arithmetic, `and`/`or`/`unless`, `by`/`without` aggregations, `offset`, `@`,
subqueries, `bool`, other functions, recording rules, and alerts that read a recording rule's
output) is reported as not mappable, with the rule name and the reason, and skipped: never
silently. So are two alerts with the same name and labels (their alerts could not be told
apart); a promtool check of an alert name that has any skipped rule is skipped with the reason.

Where the semantics differ (see README "Where we differ from Prometheus"):
- Time: promtool evaluates every `evaluation_interval` from t=0 on a clock of its own; so do
  we (rules/check.py starts at the Unix epoch), with ticks aligned to the interval.
- No data: in Prometheus a series missing from the result drops a pending alert and resolves
  a firing one at once; here an empty window is "no evidence" and the state is kept until the
  series is stale (`staleness`, 5m). Cases with gaps (`_`) or series that end resolve later here.
- `rate` is the exact slope between the first and last samples of the window, without
  Prometheus' extrapolation to the window edges: values differ, thresholds near the edge may too.
- Range windows are left-open, `(t - range, t]`, as in Prometheus 3; Prometheus 2 also counted
  a sample exactly at `t - range`.
- `stale` in `input_series` ends the series rather than writing a staleness marker.
- Labels: `instance` is our `instance_id` (in matchers, templates, `input_series`, `exp_labels`);
  an input series without one gets an empty `instance_id`. `severity` is kept as written
  (`page`, `ticket`, ...); only `critical` mutes `warning` by default (rules/model.py `Severity`).
  `exp_labels` are matched as a subset (our alerts carry every tag of the series).
- A check without `eval_time` is at 0s, as in promtool.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules import template
from rules.check import CaseError, parse_series, run_case
from rules.duration import parse_duration
from rules.loader import item_position, position_of
from rules.model import Aggregation, Matcher, Op, Rule, RulesError, RuleSet, Severity

LOOKBACK_S = 300.0  # Prometheus' default lookback delta for an instant selector
_OPS = {">": Op.GT, ">=": Op.GE, "<": Op.LT, "<=": Op.LE, "==": Op.EQ, "!=": Op.NE}
_FLIP = {Op.GT: Op.LT, Op.GE: Op.LE, Op.LT: Op.GT, Op.LE: Op.GE, Op.EQ: Op.EQ, Op.NE: Op.NE}
_OVER_TIME = {
    "avg_over_time": Aggregation.AVG,
    "min_over_time": Aggregation.MIN,
    "max_over_time": Aggregation.MAX,
    "sum_over_time": Aggregation.SUM,
    "count_over_time": Aggregation.COUNT,
    "last_over_time": Aggregation.LAST,
    "rate": Aggregation.RATE,
}
_AGGREGATORS = frozenset(
    ("sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group",
     "count_values", "limitk", "limit_ratio")
)  # fmt: skip
_QUANTILES = {0.5: Aggregation.P50, 0.95: Aggregation.P95, 0.99: Aggregation.P99}
_LABEL_RENAMES = {"instance": "instance_id"}


class NotMappableError(RulesError):
    """The expression is valid PromQL (or not) but has no equivalent in our rule model."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Unmappable:
    """A rule that was skipped, and why; `line` and `column` (1-based) where it is written,
    when the file was read with `rules.loader.load_yaml`."""

    name: str
    expr: str
    reason: str
    group: str = ""
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f" (group {self.group})" if self.group else ""
        return f"not mappable: {self.name}{where}: {self.reason}: {self.expr}"


@dataclass(frozen=True, slots=True)
class Conversion:
    rules: tuple[Rule, ...] = ()
    unmappable: tuple[Unmappable, ...] = ()
    notes: tuple[str, ...] = ()  # lossy but mapped (dropped annotation, severity fallback, ...)


@dataclass(frozen=True, slots=True)
class Condition:
    """What an alerting expression means in our model."""

    metric: str
    op: Op
    threshold: float
    aggregation: Aggregation
    window_s: float
    matchers: tuple[Matcher, ...] = ()


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # dur, num, name, str, op, punct, range
    text: str
    pos: int


_LEX = re.compile(
    r"""\s*(?:
      (?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![A-Za-z_:0-9]))
     |(?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_:0-9]))
     |(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
     |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
     |(?P<range>\[[^\]]*\])
     |(?P<op>=~|!~|==|!=|>=|<=|>|<|=|[-+*/%^@])
     |(?P<punct>[(){},])
    )""",
    re.VERBOSE,
)


def _lex(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = expr.rstrip()
    while pos < len(text):
        m = _LEX.match(text, pos)
        if m is None or m.lastgroup is None:
            raise NotMappableError(f"cannot read the expression at {text[pos:].strip()[:20]!r}")
        out.append(_Tok(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    return out


def _unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]
    if s.startswith("'"):
        s = '"' + s[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    try:
        return str(json.loads(s))
    except ValueError:
        return s[1:-1]


def promql_duration(text: str) -> float:
    """PromQL durations (`5m`, `1h30m`, `500ms`, `2w`): the one grammar, rules/duration.py."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise NotMappableError(str(exc)) from None


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, expr: str) -> None:
        self.toks = _lex(expr)
        self.i = 0

    def peek(self, kind: str | None = None, text: str | None = None) -> _Tok | None:
        if self.i >= len(self.toks):
            return None
        t = self.toks[self.i]
        if (kind is None or t.kind == kind) and (text is None or t.text == text):
            return t
        return None

    def take(self, kind: str | None = None, text: str | None = None, what: str = "") -> _Tok:
        t = self.peek(kind, text)
        if t is None:
            got = self.toks[self.i].text if self.i < len(self.toks) else "end of expression"
            raise NotMappableError(f"expected {what or text or kind}, got {got!r}")
        self.i += 1
        return t

    def condition(self) -> Condition:
        left = self.operand()
        cmp = self.peek("op")
        if cmp is None or cmp.text not in _OPS:
            rest = self.toks[self.i].text if self.i < len(self.toks) else ""
            raise NotMappableError(
                f"unsupported operator {rest!r}" if rest else "no comparison with a threshold"
            )
        self.i += 1
        if self.peek("name", "bool"):
            raise NotMappableError("comparison with the `bool` modifier (always returns a value)")
        right = self.operand()
        if self.i < len(self.toks):
            raise NotMappableError(f"unsupported {self.toks[self.i].text!r} after the comparison")
        op = _OPS[cmp.text]
        if isinstance(left, float) and isinstance(right, float):
            raise NotMappableError("compares two numbers")
        if isinstance(left, float):
            left, right, op = right, left, _FLIP[op]
        if not isinstance(right, float):
            raise NotMappableError("compares two series (a threshold must be a number)")
        assert isinstance(left, tuple)
        metric, matchers, agg, window = left
        return Condition(metric, op, right, agg, window, matchers)

    def operand(self) -> float | tuple[str, tuple[Matcher, ...], Aggregation, float]:
        if self.peek("punct", "("):
            self.i += 1
            inner = self.operand()
            self.take("punct", ")", "')'")
            return inner
        sign = 1.0
        if self.peek("op", "-") or self.peek("op", "+"):
            sign = -1.0 if self.take().text == "-" else 1.0
        num = self.peek("num")
        if num is not None:
            self.i += 1
            return sign * _number(num.text)
        name = self.peek("name")
        after = self.toks[self.i + 1].text if self.i + 1 < len(self.toks) else ""
        if name is not None and name.text in _AGGREGATORS and after in ("(", "by", "without"):
            raise NotMappableError(
                f"aggregation across series `{name.text}(...)` (rules here are per series)"
            )
        if name is not None and name.text.lower() in ("inf", "nan"):
            raise NotMappableError("threshold is Inf or NaN")
        if sign != 1.0:
            raise NotMappableError("negated series")
        if name is not None and self.i + 1 < len(self.toks) and self.toks[self.i + 1].text == "(":
            return self.call()
        metric, matchers, window = self.selector()
        if window is not None:
            raise NotMappableError("a range vector needs a function such as avg_over_time")
        self.no_modifiers()
        return (metric, matchers, Aggregation.LAST, LOOKBACK_S)

    def call(self) -> tuple[str, tuple[Matcher, ...], Aggregation, float]:
        fn = self.take("name").text
        self.take("punct", "(", "'('")
        agg = _OVER_TIME.get(fn)
        if fn == "quantile_over_time":
            q = self.operand()
            if not isinstance(q, float):
                raise NotMappableError("quantile_over_time needs a number first")
            agg = _QUANTILES.get(q)
            if agg is None:
                raise NotMappableError(f"quantile_over_time({q:g}, ...): only 0.5, 0.95 and 0.99 map")
            self.take("punct", ",", "','")
        elif agg is None:
            raise NotMappableError(f"function {fn}() has no equivalent")
        metric, matchers, window = self.selector()
        if window is None:
            raise NotMappableError(f"{fn}() needs a range selector like metric[5m]")
        self.no_modifiers()
        if self.peek("punct", ","):
            raise NotMappableError(f"{fn}() with extra arguments")
        self.take("punct", ")", "')'")
        if self.peek("name", "by") or self.peek("name", "without"):
            raise NotMappableError("grouping modifier")
        return (metric, matchers, agg, window)

    def selector(self) -> tuple[str, tuple[Matcher, ...], float | None]:
        metric = ""
        name = self.peek("name")
        if name is not None:
            if name.text in ("by", "without", "on", "ignoring", "and", "or", "unless", "offset", "bool"):
                raise NotMappableError(f"unsupported keyword {name.text!r}")
            metric = name.text
            self.i += 1
        matchers: list[Matcher] = []
        if self.peek("punct", "{"):
            self.i += 1
            while not self.peek("punct", "}"):
                label = self.take("name", what="a label name").text
                op = self.take("op", what="a label matcher (=, !=, =~, !~)").text
                if op not in ("=", "!=", "=~", "!~"):
                    raise NotMappableError(f"bad label matcher {op!r}")
                value = _unquote(self.take("str", what="a quoted label value").text)
                if label == "__name__":
                    if op != "=" or (metric and metric != value):
                        raise NotMappableError("a metric name matched by regex or negation (several metrics)")
                    metric = value
                else:
                    matchers.append(_matcher(_LABEL_RENAMES.get(label, label), op, value))
                if not self.peek("punct", "}"):
                    self.take("punct", ",", "',' or '}'")
            self.i += 1
        if not metric:
            raise NotMappableError("no metric name")
        window: float | None = None
        rng = self.peek("range")
        if rng is not None:
            self.i += 1
            inner = rng.text[1:-1].strip()
            if ":" in inner:
                raise NotMappableError("subquery")
            window = promql_duration(inner)
        return metric, tuple(matchers), window

    def no_modifiers(self) -> None:
        if self.peek("name", "offset"):
            raise NotMappableError("`offset` modifier")
        if self.peek("op", "@"):
            raise NotMappableError("`@` modifier")


def _number(text: str) -> float:
    return float(int(text, 16)) if text.lower().startswith("0x") else float(text)


def _matcher(name: str, op: str, value: str) -> Matcher:
    regex = op in ("=~", "!~")
    negate = op in ("!=", "!~")
    if not regex:
        return Matcher(name, value, False, negate)
    try:
        return Matcher(name, value, True, negate, re.compile(value))
    except re.error as exc:
        raise NotMappableError(f"label regex {value!r}: {exc}") from None


def parse_condition(expr: str) -> Condition:
    """An alerting expression as a `Condition`; raises `NotMappableError` with the reason."""
    cond = _Parser(str(expr)).condition()
    if not math.isfinite(cond.threshold):
        raise NotMappableError("threshold is Inf or NaN")
    return cond


# --------------------------------------------------------------------------- rules

_TEMPLATE_REWRITES = (
    (re.compile(r"\.Labels\.([A-Za-z_][A-Za-z0-9_]*)"), r"$labels.\1"),
    (re.compile(r"\.Value\b"), "$value"),
    (re.compile(r"\$labels\.instance\b(?!_)"), "$labels.instance_id"),
    (re.compile(r'\{\{\s*printf\s+("[^"]*")\s+(\$\w+)\s*\}\}'), r"{{ \2 | printf \1 }}"),
    (re.compile(r"\{\{\s*humanize\s+(\$\w+)\s*\}\}"), r"{{ \1 | humanize }}"),
)


def convert_template(text: str) -> str:
    """Prometheus template spellings -> ours (`{{ printf "%.1f" $value }}` -> `{{ $value | printf ... }}`)."""
    for pattern, repl in _TEMPLATE_REWRITES:
        text = pattern.sub(repl, text)
    return text


def convert_rule(raw: Mapping[str, Any], *, group: str = "", source: str = "") -> tuple[Rule, list[str]]:
    """One `- alert:` entry -> (Rule, notes); raises `NotMappableError`."""
    name = str(raw.get("alert", "")).strip()
    if not name:
        raise NotMappableError("no `alert:` name")
    cond = parse_condition(str(raw.get("expr", "")))
    notes: list[str] = []
    labels = {str(k): str(v) for k, v in dict(raw.get("labels") or {}).items()}
    sev_text = labels.pop("severity", "warning")
    try:
        severity = Severity(sev_text)  # any string, as written: receivers route on it
    except ValueError:  # empty: in Prometheus an empty label is no label
        severity = Severity.WARNING
        notes.append(f"{name}: empty severity: mapped to warning")
    annotations: dict[str, str] = {}
    for k, v in dict(raw.get("annotations") or {}).items():
        text = convert_template(str(v))
        problems = template.check(text)
        if problems:
            notes.append(f"{name}: annotation {k} dropped: {problems[0]}")
            continue
        annotations[str(k)] = text
    try:
        for_s = promql_duration(str(raw["for"])) if raw.get("for") else 0.0
        keep_s = promql_duration(str(raw["keep_firing_for"])) if raw.get("keep_firing_for") else 0.0
    except NotMappableError as exc:
        raise NotMappableError(f"for/keep_firing_for: {exc}") from None
    rule = Rule(
        name=name,
        metric=cond.metric,
        op=cond.op,
        threshold=cond.threshold,
        aggregation=cond.aggregation,
        window_s=cond.window_s,
        for_s=for_s,
        keep_firing_for_s=keep_s,
        severity=severity,
        matchers=cond.matchers,
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
        runbook_url=annotations.get("runbook_url", ""),
        dashboard_url=annotations.get("dashboard_url", ""),
        source=f"{source} group {group}".strip(),
    )
    return rule, notes


def recorded_names(doc: object) -> set[str]:
    """Names of the recording rules (`record:`) in a Prometheus rule file."""
    out: set[str] = set()
    groups = doc.get("groups") if isinstance(doc, Mapping) else None
    for g in groups if isinstance(groups, list) else []:
        rules = g.get("rules") if isinstance(g, Mapping) else None
        for raw in rules if isinstance(rules, list) else []:
            if isinstance(raw, Mapping) and raw.get("record"):
                out.add(str(raw["record"]))
    return out


def _at(seq: object, index: int) -> tuple[int | None, int | None]:
    """Line and column of a list item, for `Unmappable`."""
    return item_position(seq, index) or (None, None)


def convert_groups(
    doc: object,
    *,
    source: str = "",
    eval_interval_s: float | None = None,
    recorded: Collection[str] = (),
) -> Conversion:
    """A Prometheus rule file (`groups: [{name, interval, rules: [...]}]`) -> Conversion.

    `recorded`: recording-rule names from the other files of the same rule set; an alert
    that reads one (or one of this file's) is not mappable: nothing here would ever write
    that series, so the alert could never fire.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("groups"), list):
        at = position_of(doc) or (None, None)
        return Conversion(unmappable=(Unmappable(source or "?", "", "no `groups:` list", "", *at),))
    recorded = {*recorded, *recorded_names(doc)}
    rules: list[Rule] = []
    skipped: list[Unmappable] = []
    notes: list[str] = []
    seen: set[tuple[str, Severity, tuple[tuple[str, str], ...]]] = set()
    groups = doc["groups"]
    for gi, g in enumerate(groups):
        gname = str(g.get("name", "")) if isinstance(g, Mapping) else ""
        if not isinstance(g, Mapping) or not isinstance(g.get("rules"), list):
            skipped.append(
                Unmappable(gname or "?", "", "group without a `rules:` list", gname, *_at(groups, gi))
            )
            continue
        if g.get("interval") and eval_interval_s is not None:
            try:
                if promql_duration(str(g["interval"])) != eval_interval_s:
                    every = f"{eval_interval_s:g}s"
                    notes.append(f"group {gname}: interval {g['interval']} ignored, evaluated every {every}")
            except NotMappableError:
                notes.append(f"group {gname}: interval {g['interval']!r} is not a duration, ignored")
        for ri, raw in enumerate(g["rules"]):
            line, column = _at(g["rules"], ri)
            if not isinstance(raw, Mapping):
                skipped.append(Unmappable("?", "", "a rule must be a mapping", gname, line, column))
                continue
            expr = str(raw.get("expr", ""))
            if "record" in raw:
                skipped.append(Unmappable(str(raw["record"]), expr, "recording rule", gname, line, column))
                continue
            try:
                rule, more = convert_rule(raw, group=gname, source=source)
            except NotMappableError as exc:
                skipped.append(Unmappable(str(raw.get("alert", "?")), expr, str(exc), gname, line, column))
                continue
            if rule.metric in recorded:
                reason = f"reads {rule.metric!r}, the output of a recording rule (not evaluated here)"
                skipped.append(Unmappable(rule.name, expr, reason, gname, line, column))
                continue
            ident = (rule.name, rule.severity, rule.labels)
            if ident in seen:  # same name, same labels: same fingerprints, the engine cannot tell them apart
                reason = "duplicate alert name with the same labels"
                skipped.append(Unmappable(rule.name, expr, reason, gname, line, column))
                continue
            seen.add(ident)
            rules.append(rule)
            notes.extend(more)
    return Conversion(tuple(rules), tuple(skipped), tuple(notes))


# --------------------------------------------------------------------------- promtool suites


def rename_series(text: str) -> str:
    """`up{instance="a:9100"}` -> `up{instance_id="a:9100"}` (values kept as written)."""
    name, labels = parse_series(text)
    if "instance" in labels and "instance_id" not in labels:
        labels = {("instance_id" if k == "instance" else k): v for k, v in labels.items()}
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}}" if body else name


def promtool_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """A promtool test case for our runner (rules/check.py): `instance` labels renamed, and
    promtool's defaults written out (`eval_time` 0)."""
    out = dict(case)
    out["input_series"] = [
        {**s, "series": rename_series(str(s["series"]))} for s in (case.get("input_series") or [])
    ]
    checks = []
    for c in case.get("alert_rule_test") or []:
        c = {**c, "eval_time": c.get("eval_time") or 0}
        exps = []
        for e in c.get("exp_alerts") or []:
            labels = {str(k): v for k, v in dict(e.get("exp_labels") or {}).items()}
            if "instance" in labels and "instance_id" not in labels:
                labels["instance_id"] = labels.pop("instance")
            exps.append({**e, "exp_labels": labels})
        checks.append({**c, "exp_alerts": exps})
    out["alert_rule_test"] = checks
    return out


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One `alert_rule_test` entry: pass, fail (with why) or skip (with why)."""

    test: int
    eval_time: float
    alertname: str
    status: str  # "pass" | "fail" | "skip"
    messages: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = f"{self.status.upper():<4} test #{self.test} {self.alertname} at {self.eval_time:g}s"
        return head + "".join(f"\n       {m}" for m in self.messages)


@dataclass(frozen=True, slots=True)
class SuiteResult:
    outcomes: tuple[CheckOutcome, ...]
    conversion: Conversion
    problems: tuple[str, ...] = ()  # test-level skips (promql_expr_test, ...)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "pass")

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "fail")

    @property
    def skipped(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "skip")


def run_suite(suite: Mapping[str, Any], rule_docs: Sequence[tuple[str, object]], file: str) -> SuiteResult:
    """Run a promtool test file's `tests:` against its converted `rule_files` (given parsed).

    Checks of alerts whose rule did not map are skipped and say so; everything else goes
    through rules/check.py's `run_case`, the runner of our own rule tests.
    """
    interval = parse_duration(suite.get("evaluation_interval", "1m"))
    rules: list[Rule] = []
    unmappable: list[Unmappable] = []
    notes: list[str] = []
    recorded = set().union(*(recorded_names(doc) for _, doc in rule_docs))
    for source, doc in rule_docs:
        conv = convert_groups(doc, source=source, eval_interval_s=interval, recorded=recorded)
        rules.extend(conv.rules)
        unmappable.extend(conv.unmappable)
        notes.extend(conv.notes)
    conversion = Conversion(tuple(rules), tuple(unmappable), tuple(notes))
    # a check of a name with any skipped rule would fail for the skipped rule's alerts (or
    # pass for the wrong reason): skip it and say which rule and why
    skip_reason: dict[str, str] = {}
    for u in unmappable:
        skip_reason.setdefault(u.name, f"rule not mappable: {u.reason}")
    ruleset = RuleSet(rules=tuple(rules), eval_interval_s=interval)
    outcomes: list[CheckOutcome] = []
    problems: list[str] = []
    for index, raw_case in enumerate(suite.get("tests") or [], start=1):
        if raw_case.get("promql_expr_test"):
            problems.append(f"test #{index}: promql_expr_test is not supported (skipped)")
        case = promtool_case(raw_case)
        checks = []
        for c in case["alert_rule_test"]:
            at = parse_duration(c["eval_time"])
            reason = skip_reason.get(str(c.get("alertname")))
            if not c.get("alertname"):
                outcomes.append(CheckOutcome(index, at, "?", "fail", ("no `alertname:` in this check",)))
            elif reason is not None:
                outcomes.append(CheckOutcome(index, at, str(c["alertname"]), "skip", (reason,)))
            else:
                checks.append(c)
        try:
            # Prometheus series need no `instance` label: ours then has an empty instance_id
            case = {**case, "alert_rule_test": checks}
            _, failures = run_case(ruleset, case, file, index, instance_required=False)
        except (CaseError, KeyError, ValueError) as exc:
            outcomes.extend(
                CheckOutcome(
                    index, parse_duration(c["eval_time"]), c["alertname"], "fail", (f"error: {exc}",)
                )
                for c in checks
            )
            continue
        by_check: dict[tuple[float, str], list[str]] = {}
        for f in failures:
            by_check.setdefault((f.eval_time, f.alertname), []).append(f.message)
        for c in sorted(checks, key=lambda c: parse_duration(c["eval_time"])):
            key = (parse_duration(c["eval_time"]), str(c["alertname"]))
            msgs = by_check.get(key)
            outcomes.append(
                CheckOutcome(index, key[0], key[1], "fail" if msgs else "pass", tuple(msgs or ()))
            )
    return SuiteResult(tuple(outcomes), conversion, tuple(problems))
