"""The collector's targets file, checked at start (its environment: `connectors.config`, collect).

Like the rule loader, every problem is reported at once (file, target, field). String
values may use `${VAR}` or `${VAR:-default}` (`$$` is a literal `$`) so secrets stay in the
environment; expansion happens *after* YAML parsing, on string scalars only, so a value
from the environment can never change the structure of the file. Problems never quote a
value (it may be a password), only names.

    settings:                 # optional
      environment: production # default for targets
      interval: 15s
      timeout: 5s             # per poll, <= interval
      tag_allowlist: [environment, region, mount, device, interface, mode, database]  # or "*"
      max_series_per_metric: 100
      max_future: 1m
    targets:
      - name: pg-main         # unique; the partition key and the `target` tag of `up`
        type: postgresql      # a registered collector type (connectors/collectors/base.py)
        instance_id: prod-db-01       # default: name
        database_type: postgresql     # default: the type's own
        tags: {region: us-east-1}
        dsn: postgresql://monitor:${PG_PASSWORD}@db1:5432/postgres   # type-specific options
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from connectors.collectors.base import Target, collector_class, registered_types
from connectors.config import DEFAULT_TARGETS as DEFAULT_TARGETS  # the collect section's default
from connectors.errors import ConnectorError
from rules.collect.policy import DEFAULT_TAG_ALLOWLIST, CollectPolicy
from rules.duration import parse_duration

DEFAULT_INTERVAL_S: Final = 15.0
DEFAULT_TIMEOUT_S: Final = 5.0

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOPIC_PART = re.compile(r"^[A-Za-z0-9_-]+$")  # no dots: they separate the topic's parts
_COMMON = {"name", "type", "instance_id", "database_type", "environment", "interval", "timeout", "tags"}
_DEFAULT_POLICY: Final = CollectPolicy()
_SETTINGS = {"environment", "interval", "timeout", "tag_allowlist", "max_series_per_metric", "max_future"}


class TargetFileError(ConnectorError):
    """Every problem of a targets file, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem(s) in targets:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True, slots=True)
class CollectConfig:
    targets: tuple[Target, ...]
    policy: CollectPolicy = field(default_factory=CollectPolicy)


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with `${VAR}` / `${VAR:-default}` replaced; also the names that were missing."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, default = m[1], m[2]
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    return _ENV_REF.sub(sub, text), missing


def _expand_tree(obj: Any, env: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(obj, str):
        value, missing = expand_env(obj, env)
        for name in missing:
            problems.append(f"{where}: environment variable {name} is not set (and no ${{{name}:-default}})")
        return value
    if isinstance(obj, Mapping):
        return {
            k: _expand_tree(v, env, f"{where}.{k}" if where else str(k), problems) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_expand_tree(v, env, f"{where}[{i}]", problems) for i, v in enumerate(obj)]
    return obj


def _duration(problems: list[str], where: str, value: object, positive: bool = True) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return 0.0
    if positive and seconds <= 0:
        problems.append(f"{where}: must be > 0")
    return seconds


def _policy(raw: Mapping[str, Any], where: str, problems: list[str]) -> CollectPolicy:
    for k in sorted(set(raw) - _SETTINGS):
        problems.append(f"{where}: unknown setting {k!r}")
    allow: frozenset[str] | None = DEFAULT_TAG_ALLOWLIST
    raw_allow = raw.get("tag_allowlist")
    if raw_allow == "*":
        allow = None
    elif raw_allow is not None:
        if isinstance(raw_allow, list) and all(isinstance(k, str) and k for k in raw_allow):
            allow = frozenset(raw_allow)
        else:
            problems.append(f'{where}.tag_allowlist: must be a list of tag keys or "*"')
    limit = raw.get("max_series_per_metric", _DEFAULT_POLICY.max_series_per_metric)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems.append(f"{where}.max_series_per_metric: must be an integer >= 1")
        limit = _DEFAULT_POLICY.max_series_per_metric
    future = _duration(
        problems, f"{where}.max_future", raw.get("max_future", _DEFAULT_POLICY.max_future_s), False
    )
    return CollectPolicy(tag_allowlist=allow, max_series_per_metric=limit, max_future_s=future)


def _tags(raw: object, where: str, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and k for k in raw):
        problems.append(f"{where}: must be a mapping of tag names to values")
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if isinstance(v, Mapping | list) or v is None:
            problems.append(f"{where}.{k}: must be a string")
        else:
            out[k] = str(v)
    return out


def parse_targets(raw_doc: object, env: Mapping[str, str], source: str = "<targets>") -> CollectConfig:
    """Validate a parsed targets document; raise `TargetFileError` with every problem."""
    problems: list[str] = []
    if not isinstance(raw_doc, Mapping) or not isinstance(raw_doc.get("targets"), list):
        raise TargetFileError([f"{source}: top level must be a mapping with a `targets:` list"])
    doc: dict[str, Any] = _expand_tree(raw_doc, env, "", problems)
    problems = [f"{source}: {p}" for p in problems]
    settings = doc.get("settings") or {}
    if not isinstance(settings, Mapping):
        problems.append(f"{source}: settings: must be a mapping")
        settings = {}
    policy = _policy(settings, f"{source}: settings", problems)
    default_env = settings.get("environment")
    default_interval = _duration(
        problems, f"{source}: settings.interval", settings.get("interval", DEFAULT_INTERVAL_S)
    )
    default_timeout = settings.get("timeout")

    targets: list[Target] = []
    seen: set[str] = set()
    raw_targets = doc["targets"]
    if not raw_targets:
        problems.append(f"{source}: targets: empty (nothing to collect)")
    for i, raw in enumerate(raw_targets):
        label = f"targets[{i}]"
        if not isinstance(raw, Mapping):
            problems.append(f"{source}: {label}: must be a mapping")
            continue
        name = raw.get("name")
        if isinstance(name, str) and name:
            label += f" {name!r}"
        where = f"{source}: {label}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}: name: required, letters, digits, `_.-`")
            name = f"#{i}"
        elif name in seen:
            problems.append(f"{where}: name: duplicate")
        seen.add(name)
        type_name = raw.get("type")
        cls = collector_class(type_name) if isinstance(type_name, str) else None
        if cls is None:
            problems.append(
                f"{where}: type: {type_name!r} is not a registered collector type"
                f" (known: {', '.join(registered_types())})"
            )
        options = {k: v for k, v in raw.items() if k not in _COMMON}
        if cls is not None:
            problems.extend(f"{where}: {p}" for p in cls.check_options(options))
        instance_id = raw.get("instance_id", name)
        if not isinstance(instance_id, str) or not instance_id:
            problems.append(f"{where}: instance_id: must be a non-empty string")
            instance_id = name
        database_type = raw.get("database_type") or (cls.default_database_type if cls is not None else "")
        environment = raw.get("environment", default_env)
        for key, part in (("database_type", database_type), ("environment", environment)):
            if not isinstance(part, str) or not _TOPIC_PART.match(part):
                hint = " (or settings.environment)" if key == "environment" else ""
                problems.append(f"{where}: {key}{hint}: required, letters, digits, `_-` (it names the topic)")
        interval = (
            _duration(problems, f"{where}: interval", raw["interval"])
            if "interval" in raw
            else default_interval
        )
        raw_timeout = raw.get("timeout", default_timeout)
        if raw_timeout is None:
            timeout = min(DEFAULT_TIMEOUT_S, interval)
        else:
            timeout = _duration(problems, f"{where}: timeout", raw_timeout)
            if interval > 0 and timeout > interval:
                problems.append(f"{where}: timeout: longer than the interval (polls would overlap)")
        tags = _tags(raw.get("tags"), f"{where}: tags", problems)
        if isinstance(environment, str):
            tags.setdefault("environment", environment)
        targets.append(
            Target(
                name=name,
                type=str(type_name),
                instance_id=instance_id,
                database_type=str(database_type),
                environment=str(environment),
                interval_s=interval,
                timeout_s=timeout,
                tags=tags,
                options=options,
            )
        )
    if problems:
        raise TargetFileError(problems)
    return CollectConfig(tuple(targets), policy)


def load_targets(path: str | Path, env: Mapping[str, str] | None = None) -> CollectConfig:
    """Read and validate a targets file (`env` defaults to the process environment)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TargetFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise TargetFileError([f"{path}: invalid YAML: {exc}"]) from exc
    return parse_targets(doc, dict(os.environ) if env is None else env, str(path))
