"""Prometheus rule files (`groups:`) -> `RuleGroup`s of parsed PromQL. Pure apart from reading files.

    groups:
      - name: database              # unique in the rule set (it keys the group's evaluation)
        interval: 1m                # optional; the job's default otherwise
        labels: {team: dba}         # optional (Prometheus 3): added to every rule of the group
        rules:
          - record: instance:cpu:avg5m
            expr: avg_over_time(cpu_usage_percent[5m])
          - alert: HighCPU
            expr: instance:cpu:avg5m > 80
            for: 5m
            keep_firing_for: 10m
            labels: {severity: warning}
            annotations: {summary: "CPU at {{ $value | humanize }}% on {{ $labels.instance }}"}

Every problem of every file is collected and reported at once, located `file:line:col` as
Prometheus' rulefmt does (`rules.loader.Problem`): YAML, unknown fields, a rule that is both or
neither `alert` and `record`, bad durations and names, an `expr` outside the PromQL subset
(`rules.promql.parse.PromqlError`: the construct is named, the problem points at `expr:`), a
template outside the supported subset (`rules.promql.gotemplate`).

Order within a group. Prometheus evaluates a group's rules in file order, each reading what the
rules before it wrote at the same evaluation; a rule that reads a recording rule written
*later* in its group (or by itself) would read the previous evaluation's value. That is refused
here with a problem naming both rules, rather than reordered: the file order is what
Prometheus and promtool evaluate, so a file that loads here means the same in both.
Group names must be unique across the rule set (Prometheus only requires it per file): the
stream evaluates each group under its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rules.duration import parse_duration
from rules.loader import (
    Position,
    Problem,
    RuleFileError,
    expand_paths,
    item_position,
    load_yaml,
    position_of,
)
from rules.promql import ast
from rules.promql.gotemplate import Template, TemplateError, compile_template
from rules.promql.parse import PromqlError, parse_expr

Labels = tuple[tuple[str, str], ...]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = frozenset({"name", "interval", "rules", "labels", "limit", "query_offset"})
_RULE_KEYS = frozenset({"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"})


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """`record: name` / `expr`: its result is written as series `name` at each evaluation."""

    name: str
    expr: ast.Expr
    labels: Labels = ()
    expr_text: str = ""
    source: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class AlertingRule:
    """`alert: name` / `expr`: every sample of the result is an active alert instance.

    `labels` and `annotations` are the templates as written; the compiled ones render them.
    """

    name: str
    expr: ast.Expr
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: Labels = ()
    annotations: Labels = ()
    source: str = ""
    line: int | None = None
    expr_text: str = ""
    label_templates: tuple[tuple[str, Template], ...] = field(default=(), compare=False, repr=False)
    annotation_templates: tuple[tuple[str, Template], ...] = field(default=(), compare=False, repr=False)


Rule = RecordingRule | AlertingRule


@dataclass(frozen=True, slots=True)
class RuleGroup:
    name: str
    interval_s: float | None  # None: the evaluating job's default
    rules: tuple[Rule, ...]
    source: str = ""


def is_prometheus_rule_doc(doc: object) -> bool:
    """A Prometheus rule file: a mapping with `groups:` and none of the seed formats' keys."""
    return (
        isinstance(doc, Mapping)
        and "groups" in doc
        and not any(k in doc for k in ("alert_rules", "rules", "alerting"))
    )


def is_prometheus_rule_file(path: str | Path) -> bool:
    """Whether `path` holds a Prometheus rule file (False when unreadable: the loader says why)."""
    try:
        return is_prometheus_rule_doc(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        return False


class _File:
    """Problems of one file, located."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def add(self, rule: str, fieldname: str, message: str, at: Position | None) -> None:
        line, column = at if at else (None, None)
        self.problems.append(Problem(self.path, rule, fieldname, message, line, column))


def _str_map(f: _File, rule: str, node: Mapping[str, Any], key: str) -> dict[str, str]:
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        f.add(
            rule,
            key,
            f"must be a mapping of names to strings, got {type(value).__name__}",
            position_of(node, key),
        )
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _LABEL_NAME.match(k):
            f.add(
                rule,
                f"{key}.{k}",
                f"invalid name {k!r}: letters, digits and _ only",
                position_of(node, f"{key}.{k}"),
            )
        elif isinstance(v, Mapping | list) or v is None:
            f.add(rule, f"{key}.{k}", "must be a string", position_of(node, f"{key}.{k}"))
        else:
            out[k] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _duration(f: _File, rule: str, node: Mapping[str, Any], key: str) -> float:
    if node.get(key) is None:
        return 0.0
    try:
        return parse_duration(node[key])
    except ValueError as exc:
        f.add(rule, key, str(exc), position_of(node, key))
        return 0.0


def _templates(
    f: _File, rule: str, key: str, node: Mapping[str, Any], texts: dict[str, str]
) -> tuple[tuple[str, Template], ...]:
    out = []
    for k, text in sorted(texts.items()):
        try:
            out.append((k, compile_template(text)))
        except TemplateError as exc:
            f.add(rule, f"{key}.{k}", f"template: {exc}", position_of(node, f"{key}.{k}"))
    return tuple(out)


def _rule(f: _File, raw: object, at: Position | None, group_labels: dict[str, str]) -> Rule | None:
    if not isinstance(raw, Mapping):
        f.add("", "", f"a rule must be a mapping with `alert:` or `record:`, got {type(raw).__name__}", at)
        return None
    record, alert = raw.get("record"), raw.get("alert")
    name = str(record if record is not None else alert if alert is not None else "")
    label = name or "?"
    before = len(f.problems)
    for key in raw:
        if key not in _RULE_KEYS:
            f.add(
                label,
                str(key),
                "unknown field (a rule has record or alert, expr, for, keep_firing_for, labels, annotations)",
                position_of(raw, str(key)),
            )
    if (record is None) == (alert is None):
        f.add(label, "", "a rule needs exactly one of `alert:` and `record:`", at)
        return None
    if record is not None:
        if not isinstance(record, str) or not _METRIC_NAME.match(record):
            f.add(
                label,
                "record",
                f"invalid recording rule name {record!r}: a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                position_of(raw, "record"),
            )
        for key in ("for", "keep_firing_for", "annotations"):
            if key in raw:
                f.add(
                    label, key, f"`{key}` is for alerting rules, not recording rules", position_of(raw, key)
                )
    elif not isinstance(alert, str) or not alert.strip():
        f.add(label, "alert", "the alert name must be a non-empty string", position_of(raw, "alert"))
    text = raw.get("expr")
    expr: ast.Expr | None = None
    if not isinstance(text, str | int | float) or isinstance(text, bool) or not str(text).strip():
        f.add(label, "expr", "required: a PromQL expression", position_of(raw, "expr") or at)
    else:
        text = str(text)
        try:
            expr = parse_expr(text)
        except PromqlError as exc:
            f.add(label, "expr", str(exc), position_of(raw, "expr"))
    labels = {**group_labels, **_str_map(f, label, raw, "labels")}
    if record is not None:
        if len(f.problems) > before or expr is None:
            return None
        return RecordingRule(
            name, expr, tuple(sorted(labels.items())), str(text), f.path, at[0] if at else None
        )
    annotations = _str_map(f, label, raw, "annotations")
    for_s = _duration(f, label, raw, "for")
    keep_s = _duration(f, label, raw, "keep_firing_for")
    label_t = _templates(f, label, "labels", raw, labels)
    ann_t = _templates(f, label, "annotations", raw, annotations)
    if len(f.problems) > before or expr is None:
        return None
    return AlertingRule(
        name=name,
        expr=expr,
        for_s=for_s,
        keep_firing_for_s=keep_s,
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
        source=f.path,
        line=at[0] if at else None,
        expr_text=str(text),
        label_templates=label_t,
        annotation_templates=ann_t,
    )


def _forward_references(f: _File, group: Mapping[str, Any], rules: list[tuple[int, Rule]]) -> None:
    """A rule must come after every recording rule of its group whose output it reads."""
    raw_rules = group.get("rules")
    for pos, (i, r) in enumerate(rules):
        names = ast.metric_names(r.expr) or set()
        for j, later in rules[pos:]:
            if isinstance(later, RecordingRule) and later.name in names:
                who = "itself" if j == i else f"rule #{j + 1} (line {later.line})"
                f.add(
                    r.name,
                    "expr",
                    f"reads {later.name!r}, which {who} records later in group {group.get('name')!r}: "
                    f"Prometheus would read the previous evaluation's value; move the recording rule "
                    f"above this rule",
                    position_of(raw_rules[i], "expr") if isinstance(raw_rules, list) else None,
                )
                break


def _group(f: _File, raw: object, at: Position | None, lenient: bool = False) -> RuleGroup | None:
    if not isinstance(raw, Mapping):
        f.add(
            "", "groups", f"a group must be a mapping with `name:` and `rules:`, got {type(raw).__name__}", at
        )
        return None
    before = len(f.problems)
    name = raw.get("name")
    gname = name if isinstance(name, str) else ""
    for key in raw:
        if key not in _GROUP_KEYS:
            f.add(
                "",
                f"group {gname or '?'}: {key}",
                "unknown field (a group has name, interval, labels, rules)",
                position_of(raw, str(key)),
            )
    if not gname.strip():
        f.add("", "name", "a group needs a non-empty `name:`", position_of(raw, "name") or at)
    for key in ("limit", "query_offset"):
        if raw.get(key):
            f.add(
                "",
                f"group {gname}: {key}",
                f"`{key}` is not supported (remove it, or set it to 0)",
                position_of(raw, key),
            )
    interval: float | None = None
    if raw.get("interval") is not None:
        try:
            interval = parse_duration(raw["interval"])
        except ValueError as exc:
            f.add("", f"group {gname}: interval", str(exc), position_of(raw, "interval"))
        else:
            if interval <= 0:
                f.add("", f"group {gname}: interval", "must be positive", position_of(raw, "interval"))
    group_labels = _str_map(f, "", raw, "labels")
    raw_rules = raw.get("rules")
    if not isinstance(raw_rules, list):
        f.add("", f"group {gname}: rules", "a group needs a `rules:` list", position_of(raw, "rules") or at)
        return None
    rules: list[tuple[int, Rule]] = []
    for i, r in enumerate(raw_rules):
        rule = _rule(f, r, item_position(raw_rules, i), group_labels)
        if rule is not None:
            rules.append((i, rule))
    _forward_references(f, raw, rules)
    new = f.problems[before:]
    broken = {p.rule for p in new if p.rule}
    if any(not p.rule for p in new) or (broken and not lenient):
        return None
    # lenient: the group without its broken rules, and without the rules that read their output
    lost = {
        str(r.get("record")) for r in raw_rules if isinstance(r, Mapping) and str(r.get("record")) in broken
    }
    kept: list[Rule] = []
    for i, r in rules:
        reads = ast.metric_names(r.expr) or set()
        if r.name in broken:
            continue
        if reads & lost:
            name = sorted(reads & lost)[0]
            msg = f"reads {name!r}, the output of a recording rule that could not be loaded"
            f.add(r.name, "expr", msg, position_of(raw_rules[i], "expr"))
            if isinstance(r, RecordingRule):
                lost.add(r.name)
            continue
        kept.append(r)
    return RuleGroup(gname, interval, tuple(kept), f.path)


def parse_rule_doc(doc: object, path: str, *, lenient: bool = False) -> tuple[list[RuleGroup], list[Problem]]:
    """One file's document (read with `rules.loader.load_yaml` for positions) -> groups, problems.

    `lenient`: a group keeps its rules that loaded (a problem of a rule drops that rule and the
    rules reading its output, not its group): for running test suites rule by rule."""
    f = _File(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("groups"), list):
        f.add("", "groups", "a Prometheus rule file needs a `groups:` list", position_of(doc, "groups"))
        return [], f.problems
    for key in doc:
        if key != "groups":
            f.add(
                "",
                str(key),
                "unknown field (a Prometheus rule file has only `groups:`)",
                position_of(doc, str(key)),
            )
    groups: list[RuleGroup] = []
    seen: dict[str, Position | None] = {}
    for i, raw in enumerate(doc["groups"]):
        at = item_position(doc["groups"], i)
        g = _group(f, raw, at, lenient)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name in seen:
            f.add("", "name", f"group name {name!r} is repeated in the same file", position_of(raw, "name"))
            continue
        if isinstance(name, str):
            seen[name] = at
        if g is not None:
            groups.append(g)
    return groups, sorted(f.problems, key=lambda p: (p.line or 0, p.column or 0))


def load_prometheus_rules(paths: Iterable[str | Path]) -> list[RuleGroup]:
    """Load Prometheus rule files (or directories of them); raise `RuleFileError` with every problem."""
    groups, problems = load_prometheus_rules_lenient(paths, lenient=False)
    if problems:
        raise RuleFileError(problems)
    return groups


def load_prometheus_rules_lenient(
    paths: Iterable[str | Path], *, lenient: bool = True
) -> tuple[list[RuleGroup], list[Problem]]:
    """The groups that loaded, and the problems of the rules left out (`parse_rule_doc`).

    Raises `RuleFileError` for problems that are not a rule's own (YAML, groups, files)."""
    problems: list[Problem] = []
    groups: list[RuleGroup] = []
    where: dict[str, str] = {}
    given = list(paths)
    files = expand_paths(given)
    if not files:
        raise RuleFileError([Problem(str([str(p) for p in given]), "", "", "no rule files found")])
    for path in files:
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(Problem(str(path), "", "", f"cannot read: {exc.strerror or exc}"))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
            problems.append(Problem(str(path), "", "", f"invalid YAML: {exc}", line, col))
            continue
        got, more = parse_rule_doc(doc, str(path), lenient=lenient)
        problems.extend(more)
        for g in got:
            if g.name in where:
                line, col = position_of(doc, "groups") or (None, None)
                msg = (
                    f"group name {g.name!r} is also in {where[g.name]}: group names must be unique "
                    f"across the rule set (each is evaluated under its name)"
                )
                problems.append(Problem(str(path), "", "name", msg, line, col))
                continue
            where[g.name] = str(path)
            groups.append(g)
    if not lenient:
        return groups, problems
    fatal = [p for p in problems if not p.rule]
    if fatal:
        raise RuleFileError(fatal)
    return groups, problems
