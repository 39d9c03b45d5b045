"""YAML rule files -> RuleSet, reporting every problem at once (file, rule, field).

Two seed formats load:

* `alert_rules:` list, each rule with a `condition: {operator, threshold, duration, aggregation}`;
* the flat form (`rules:` or `alerting: {rules: ...}`) with `operator/threshold/severity/cooldown_minutes`.

Prometheus rule files (`groups:`) in the same paths are passed by here and loaded by
`rules.promql.rulefile` (`prometheus_files` lists them).

Optional top-level sections: `settings:` (evaluation_interval, staleness, allowed_lateness,
flap_window, flap_threshold), `silences:` and `inhibit_rules:`.

Problems carry the line and column they are on (`file:line:col`, 1-based, as Prometheus'
rulefmt prints them): files are read with a YAML loader that keeps each mapping's and
sequence's key/item positions (`load_yaml`, `position_of`), at no cost to what the rest of
the code sees (they are dicts and lists).
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from rules import template
from rules.duration import parse_duration
from rules.model import (
    DEFAULT_INHIBIT,
    Aggregation,
    InhibitRule,
    Matcher,
    Op,
    Rule,
    RulesError,
    RuleSet,
    Severity,
    Silence,
)

BUNDLED = Path(__file__).parent / "bundled"

_OPS = {
    ">": Op.GT, "gt": Op.GT, "greater_than": Op.GT, "above": Op.GT,
    ">=": Op.GE, "gte": Op.GE, "ge": Op.GE,
    "<": Op.LT, "lt": Op.LT, "less_than": Op.LT, "below": Op.LT,
    "<=": Op.LE, "lte": Op.LE, "le": Op.LE,
    "==": Op.EQ, "=": Op.EQ, "eq": Op.EQ,
    "!=": Op.NE, "ne": Op.NE,
}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_RULE_KEYS = {
    "name", "alert", "description", "summary", "metric", "metric_name", "condition", "operator", "threshold",
    "duration", "for", "window", "aggregation", "severity", "labels", "annotations", "runbook_url",
    "dashboard_url", "keep_firing_for", "cooldown_minutes", "repeat_interval", "tags", "matchers",
    "database_type", "database_types", "no_data", "enabled",
}  # fmt: skip
_COND_KEYS = {"operator", "threshold", "duration", "aggregation", "window", "for", "keep_firing_for"}


Position = tuple[int, int]
"""1-based (line, column) in a YAML file, as Prometheus' rulefmt reports them."""


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    rule: str
    field: str
    message: str
    line: int | None = None  # 1-based, where the field (or else its rule) is written
    column: int | None = None  # 1-based, on `line`

    def __str__(self) -> str:
        at = self.file
        if self.line:
            at += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        where = f"{at}: rule {self.rule!r}" if self.rule else at
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


# --------------------------------------------------------------------------- YAML with positions


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _MarkedDict(dict[Any, Any]):
    """A YAML mapping that knows its position and each key's position."""

    pos: Position | None = None
    key_pos: dict[Any, Position]


class _MarkedList(list[Any]):
    """A YAML sequence that knows its position and each item's position."""

    pos: Position | None = None
    item_pos: list[Position]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[_MarkedDict]:
    data = _MarkedDict()
    data.pos = _pos(node)
    data.key_pos = {}
    yield data  # first, as PyYAML's own constructor does, so recursive documents still build
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable):
            data.key_pos.setdefault(key, _pos(key_node))


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Iterator[_MarkedList]:
    data = _MarkedList()
    data.pos = _pos(node)
    data.item_pos = [_pos(n) for n in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, with the positions `position_of` reads kept on mappings and sequences."""
    return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass: no arbitrary objects


_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")


def item_position(seq: object, index: int) -> Position | None:
    """Position of item `index` of a sequence read by `load_yaml`."""
    if isinstance(seq, _MarkedList) and 0 <= index < len(seq.item_pos):
        return seq.item_pos[index]
    return None


def position_of(node: object, path: str = "") -> Position | None:
    """Position of `path` (`condition.threshold`, `silences[1].matchers`) inside `node`.

    Falls back to the deepest part found, then to `node`'s own position; None for data
    that did not come from `load_yaml`.
    """
    pos: Position | None = getattr(node, "pos", None)
    for name, indexes in _PATH_PART.findall(path):
        if not isinstance(node, _MarkedDict) or name not in node:
            break
        pos = node.key_pos.get(name, pos)
        node = node[name]
        for i in map(int, re.findall(r"\d+", indexes)):
            if not isinstance(node, _MarkedList) or i >= len(node):
                return pos
            pos = node.item_pos[i]
            node = node[i]
    return pos


def item_line(seq: object, index: int) -> int | None:
    """Line of item `index` of a sequence read by `load_yaml`."""
    pos = item_position(seq, index)
    return pos[0] if pos else None


def line_of(node: object, path: str = "") -> int | None:
    """Line of `path` inside `node` (see `position_of`)."""
    pos = position_of(node, path)
    return pos[0] if pos else None


class RuleFileError(RulesError):
    """Raised with every problem found, so an author fixes a file in one pass."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in rule files:\n{lines}")


def _parse_time(value: object) -> float:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without timezone: {value!r} (add Z or +00:00)")
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class _Item:
    """Where a list item that is not a mapping is written (problems point there)."""

    pos: Position | None


class _Collector:
    """Problems of one file; `node` is the YAML mapping the fields being checked are in."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.node: object = None

    def add(self, rule: str, field: str, message: str, at: Position | None = None) -> None:
        if at is None:
            at = _field_position(self.node, field)
        line, column = at if at else (None, None)
        self.problems.append(Problem(self.file, rule, field, message, line, column))


def _field_position(node: object, field: str) -> Position | None:
    # rule fields may sit at the top of the rule or inside `condition:` (see `get` in _rule)
    pos = position_of(node, field)
    if isinstance(node, _MarkedDict) and field.split(".")[0] not in node and "condition" in node:
        pos = position_of(node["condition"], field) or pos
    return pos


def _str_map(c: _Collector, rule: str, field: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add(rule, field, f"must be a mapping, got {type(value).__name__}")
        return {}
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, Mapping | list):
            c.add(rule, field, f"entry {k!r} must map a name to a string")
            continue
        out[k] = str(v)
    return out


def _matchers(c: _Collector, rule: str, field: str, value: object) -> tuple[Matcher, ...]:
    out = []
    for name, spec in _str_map(c, rule, field, value).items():
        try:
            out.append(Matcher.parse(name, spec))
        except re.error as exc:
            c.add(rule, f"{field}.{name}", f"bad regular expression {spec!r}: {exc}")
    return tuple(out)


def _duration(c: _Collector, rule: str, field: str, value: object, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        c.add(rule, field, str(exc))
        return default


def _rule(c: _Collector, raw: object, index: int, flat: bool) -> Rule | None:
    if not isinstance(raw, Mapping):
        c.add(f"#{index + 1}", "", f"a rule must be a mapping, got {type(raw).__name__}")
        return None
    name = raw.get("name", raw.get("alert"))
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    before = len(c.problems)
    if not isinstance(name, str) or not _NAME.match(name):
        c.add(label, "name", f"required, letters/digits/_:.- only, got {name!r}")
    for key in raw:
        if key not in _RULE_KEYS:
            c.add(label, str(key), "unknown field")
    cond = raw.get("condition")
    if cond is None:
        cond = {}
        if not flat and "operator" not in raw:
            c.add(label, "condition", "required (operator, threshold, duration)")
    elif not isinstance(cond, Mapping):
        c.add(label, "condition", "must be a mapping")
        cond = {}
    for key in cond:
        if key not in _COND_KEYS:
            c.add(label, f"condition.{key}", "unknown field")

    def get(key: str, *alts: str) -> Any:
        for k in (key, *alts):
            if k in cond:
                return cond[k]
            if k in raw:
                return raw[k]
        return None

    metric = raw.get("metric", raw.get("metric_name"))
    if not isinstance(metric, str) or not metric:
        c.add(label, "metric", f"required metric name, got {metric!r}")
    no_data = raw.get("no_data", False)
    if not isinstance(no_data, bool):
        c.add(label, "no_data", "must be true or false")
        no_data = False

    op_raw = get("operator")
    op = _OPS.get(str(op_raw).strip().lower()) if op_raw is not None else None
    if op is None and not no_data:
        c.add(
            label,
            "operator",
            f"one of {sorted({k for k in _OPS if not k.replace('_', '').isalpha()})}, got {op_raw!r}",
        )
    threshold_raw = get("threshold")
    threshold = 0.0
    if isinstance(threshold_raw, bool) or not isinstance(threshold_raw, int | float):
        if not no_data or threshold_raw is not None:
            c.add(label, "threshold", f"must be a number, got {threshold_raw!r}")
    elif not math.isfinite(threshold_raw):
        # `.nan` compares false with everything and `.inf` true or false for ever: a typo
        c.add(label, "threshold", f"must be a finite number, got {threshold_raw!r}")
    else:
        threshold = float(threshold_raw)

    agg_raw = get("aggregation")
    try:
        agg = Aggregation(str(agg_raw).lower()) if agg_raw is not None else Aggregation.AVG
    except ValueError:
        agg = Aggregation.AVG
        c.add(label, "aggregation", f"one of {[a.value for a in Aggregation]}, got {agg_raw!r}")

    sev_raw = raw.get("severity", "warning")
    try:
        severity = Severity(str(sev_raw).lower())
    except ValueError:
        severity = Severity.WARNING
    if not severity.is_known:  # the notification service knows these three; another word is a typo
        severity = Severity.WARNING
        c.add(label, "severity", f"one of {[s.value for s in Severity]}, got {sev_raw!r}")

    for_s = _duration(c, label, "duration", get("duration", "for"), 0.0)
    window_s = _duration(c, label, "window", get("window"), 60.0)
    if window_s <= 0:
        c.add(label, "window", "must be positive")
    keep_s = _duration(c, label, "keep_firing_for", get("keep_firing_for"), 0.0)
    repeat_s = 4 * 3600.0
    if raw.get("cooldown_minutes") is not None:
        cm = raw["cooldown_minutes"]
        if isinstance(cm, bool) or not isinstance(cm, int | float) or not 0 <= cm < math.inf:
            c.add(label, "cooldown_minutes", f"must be a non-negative number, got {cm!r}")
        else:
            repeat_s = float(cm) * 60
    repeat_s = _duration(c, label, "repeat_interval", raw.get("repeat_interval"), repeat_s)

    matchers = _matchers(c, label, "tags", raw.get("tags", raw.get("matchers")))
    dbt = raw.get("database_types", raw.get("database_type"))
    database_types: tuple[str, ...] = ()
    if isinstance(dbt, str):
        database_types = (dbt,)
    elif isinstance(dbt, list) and all(isinstance(x, str) for x in dbt):
        database_types = tuple(dbt)
    elif dbt is not None:
        c.add(label, "database_types", "must be a string or a list of strings")

    labels = _str_map(c, label, "labels", raw.get("labels"))
    annotations = _str_map(c, label, "annotations", raw.get("annotations"))
    for key in ("summary", "description"):
        if isinstance(raw.get(key), str):
            annotations.setdefault(key, raw[key])
    urls = {}
    for key in ("runbook_url", "dashboard_url"):
        v = raw.get(key, annotations.get(key, ""))
        if not isinstance(v, str):
            c.add(label, key, "must be a string")
            v = ""
        urls[key] = v
    for key, text in [*annotations.items(), *urls.items()]:
        for msg in template.check(text):
            c.add(label, f"annotations.{key}" if key in annotations else key, msg)

    if len(c.problems) > before or raw.get("enabled", True) is False:
        return None
    assert isinstance(name, str) and isinstance(metric, str)
    return Rule(
        name=name,
        metric=metric,
        op=op or Op.GT,
        threshold=threshold,
        aggregation=agg,
        window_s=window_s,
        for_s=for_s,
        keep_firing_for_s=keep_s,
        severity=severity,
        matchers=matchers,
        database_types=database_types,
        labels=tuple(sorted(labels.items())),
        annotations=tuple(sorted(annotations.items())),
        runbook_url=urls["runbook_url"],
        dashboard_url=urls["dashboard_url"],
        repeat_interval_s=repeat_s,
        no_data=no_data,
        source=c.file,
    )


def _silences(c: _Collector, raw: object) -> list[Silence]:
    out: list[Silence] = []
    if raw is None:
        return out
    if not isinstance(raw, list):
        c.add("", "silences", "must be a list")
        return out
    for i, item in enumerate(raw):
        where = f"silences[{i}]"
        if not isinstance(item, Mapping):
            c.add("", where, "must be a mapping")
            continue
        matchers = _matchers(c, "", f"{where}.matchers", item.get("matchers"))
        if not matchers:
            c.add(
                "",
                f"{where}.matchers",
                "at least one matcher is required (a silence muting everything is a typo)",
            )
        try:
            starts = _parse_time(item.get("starts_at"))
            ends = _parse_time(item.get("ends_at"))
        except (ValueError, TypeError) as exc:
            c.add("", where, f"starts_at/ends_at: {exc}")
            continue
        if ends <= starts:
            c.add("", where, "ends_at must be after starts_at")
            continue
        out.append(Silence(matchers, starts, ends, str(item.get("comment", ""))))
    return out


def _inhibits(c: _Collector, raw: object) -> list[InhibitRule] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        c.add("", "inhibit_rules", "must be a list")
        return None
    out = []
    for i, item in enumerate(raw):
        where = f"inhibit_rules[{i}]"
        if not isinstance(item, Mapping):
            c.add("", where, "must be a mapping")
            continue
        equal = item.get("equal", ["instance_id"])
        if not isinstance(equal, list) or not all(isinstance(e, str) for e in equal):
            c.add("", f"{where}.equal", "must be a list of label names")
            continue
        source = _matchers(c, "", f"{where}.source_match", item.get("source_match"))
        target = _matchers(c, "", f"{where}.target_match", item.get("target_match"))
        if not source or not target:
            c.add("", where, "source_match and target_match are both required")
            continue
        out.append(InhibitRule(source, target, tuple(equal)))
    return out


_SETTINGS = {
    "evaluation_interval": "eval_interval_s",
    "staleness": "staleness_s",
    "allowed_lateness": "allowed_lateness_s",
    "flap_window": "flap_window_s",
}


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """RULES_PATH as every loader reads it: files as given, directories' *.yml and *.yaml sorted
    (a ConfigMap volume's `..data` entries are neither)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yml"), *p.glob("*.yaml")]))
        else:
            files.append(p)
    return files


def is_prometheus_file(doc: object) -> bool:
    """A Prometheus rule file (`groups:` and none of the seed formats' lists)."""
    return (
        isinstance(doc, Mapping)
        and "groups" in doc
        and not any(k in doc for k in ("alert_rules", "rules", "alerting"))
    )


def prometheus_files(paths: Iterable[str | Path]) -> list[Path]:
    """The Prometheus rule files among `paths` (files or directories, as `load_rules` reads
    them): `load_rules` passes them by, `rules.promql.rulefile.load_prometheus_rules` loads
    them. A file that cannot be read or parsed is left to `load_rules` to report."""
    out: list[Path] = []
    for path in expand_paths(paths):
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if is_prometheus_file(doc):
            out.append(path)
    return out


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load and validate rule files (or directories of them); raise with every problem.

    Prometheus rule files among them are passed by (`prometheus_files`): an empty `RuleSet`
    when they are all there is."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    silences: list[Silence] = []
    inhibits: list[InhibitRule] | None = None
    settings: dict[str, Any] = {}
    seen: dict[str, str] = {}
    files = expand_paths(paths)
    if not files:
        raise RuleFileError([Problem(str(list(paths)), "", "", "no rule files found")])
    for path in files:
        c = _Collector(str(path))
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"))
        except OSError as exc:
            c.add("", "", f"cannot read: {exc.strerror or exc}")
            problems.extend(c.problems)
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            at = (mark.line + 1, mark.column + 1) if mark is not None else None
            c.add("", "", f"invalid YAML: {exc}", at)
            problems.extend(c.problems)
            continue
        if not isinstance(doc, Mapping):
            c.add("", "", "top level must be a mapping with `alert_rules:` or `rules:`")
            problems.extend(c.problems)
            continue
        c.node = doc
        if is_prometheus_file(doc):  # rules.promql.rulefile loads it (see `prometheus_files`)
            continue
        flat = "alert_rules" not in doc
        raw_rules = doc.get("alert_rules")
        if raw_rules is None:
            raw_rules = doc.get("rules")
        if raw_rules is None and isinstance(doc.get("alerting"), Mapping):
            raw_rules = doc["alerting"].get("rules")
        if raw_rules is None:
            raw_rules = []
            if "silences" not in doc and "inhibit_rules" not in doc and "settings" not in doc:
                c.add("", "", "no `alert_rules:` or `rules:` list")
        if not isinstance(raw_rules, list):
            c.add("", "alert_rules", "must be a list")
            raw_rules = []
        for i, raw in enumerate(raw_rules):
            # a rule's problems point into the rule; one that is not a mapping, at its item
            c.node = raw if isinstance(raw, Mapping) else _Item(item_position(raw_rules, i))
            name = raw.get("name", raw.get("alert")) if isinstance(raw, Mapping) else None
            if isinstance(name, str) and name in seen:
                # names are alert identities (fingerprints): two rules must never share one
                c.add(name, "name", f"duplicate rule name (also in {seen[name]})")
                continue
            if isinstance(name, str):
                seen[name] = str(path)
            rule = _rule(c, raw, i, flat)
            if rule is not None:
                rules.append(rule)
        c.node = doc
        silences.extend(_silences(c, doc.get("silences")))
        more = _inhibits(c, doc.get("inhibit_rules"))
        if more is not None:
            inhibits = (inhibits or []) + more
        raw_settings = doc.get("settings") or {}
        if not isinstance(raw_settings, Mapping):
            c.add("", "settings", "must be a mapping")
            raw_settings = {}
        for key, value in raw_settings.items():
            if key in _SETTINGS:
                settings[_SETTINGS[key]] = _duration(c, "", f"settings.{key}", value, 0.0)
            elif key == "flap_threshold":
                if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
                    settings["flap_threshold"] = value
                else:
                    c.add("", "settings.flap_threshold", "must be an integer >= 2")
            else:
                c.add("", f"settings.{key}", "unknown setting")
        if settings.get("eval_interval_s", 1.0) <= 0:
            c.add("", "settings.evaluation_interval", "must be positive")
        problems.extend(c.problems)
    if problems:
        raise RuleFileError(problems)
    return RuleSet(
        rules=tuple(rules),
        silences=tuple(silences),
        inhibit_rules=tuple(inhibits) if inhibits is not None else (DEFAULT_INHIBIT,),
        **settings,
    )
