"""Payloads -> seed messages, with a precise error per bad item (pure: `now` is passed in).

Every format ends in `from_labels` and then in the flows' own decoder (`decode_json`), so a
sample the gateway accepts is one the alerting job reads, and a bad one is refused here with the
reason the DLQ would have given, naming the item. Label mapping (Prometheus conventions):
`instance` (or `instance_id`) -> instance_id and the Kafka key, `database_type` and `environment`
-> the topic `gds.metrics.{database_type}.{environment}` (defaults when absent), the other labels
-> tags (`environment` stays a tag).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from connectors.errors import PoisonMessage
from connectors.kafka.serde import DEFAULT_MAX_FUTURE_S, decode_json
from connectors.kafka.topics import metric_topic
from rules.metric import Metric

IDENTITY_LABELS: Final = frozenset({"__name__", "instance", "instance_id", "database_type"})
_TOPIC_PART: Final = re.compile(r"[A-Za-z0-9_-]{1,100}")
SEED_FIELDS: Final = frozenset({"timestamp", "database_type", "instance_id", "metric_name", "value", "tags"})
GUIDE_FIELDS: Final = frozenset({"metric_name", "timestamp", "value", "labels"})


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a sample's labels do not say (GATEWAY_DEFAULT_*); also the flows' future limit."""

    environment: str = "production"
    database_type: str = "os"
    max_future_s: float = DEFAULT_MAX_FUTURE_S


@dataclass(frozen=True, slots=True)
class Record:
    """One message to produce: its topic, key (instance_id) and metric."""

    topic: str
    key: str
    metric: Metric


@dataclass(frozen=True, slots=True)
class ItemError:
    """Where in the request (`item 3`, `series 2 {...} sample 0`) and what is wrong."""

    item: str
    error: str

    def text(self) -> str:
        return f"{self.item}: {self.error}"


@dataclass(frozen=True, slots=True)
class Parsed:
    records: tuple[Record, ...]
    errors: tuple[ItemError, ...]
    skipped: int = 0  # Prometheus staleness markers: not samples, nothing to produce


def record(metric: Metric, defaults: Defaults) -> Record:
    environment = metric.tags.get("environment") or defaults.environment
    return Record(metric_topic(metric.database_type, environment), metric.instance_id, metric)


def from_labels(
    metric_name: str,
    labels: Mapping[str, str],
    ts: float,
    value: float,
    now: float,
    defaults: Defaults,
) -> Record:
    """One sample of a labelled series (remote_write, OTLP, the guide's payload) -> its record.

    Raises `PoisonMessage` naming what is wrong.
    """
    instance_id = labels.get("instance") or labels.get("instance_id")
    if not instance_id:
        raise PoisonMessage("no `instance` label (it becomes the instance_id and the Kafka key)")
    database_type = labels.get("database_type") or defaults.database_type
    environment = labels.get("environment") or defaults.environment
    tags = {k: v for k, v in labels.items() if k not in IDENTITY_LABELS}
    tags["environment"] = environment
    return _checked(
        {
            "timestamp": ts,
            "database_type": database_type,
            "instance_id": instance_id,
            "metric_name": metric_name,
            "value": value,
            "tags": tags,
        },
        now,
        defaults,
    )


def _checked(seed: dict[str, Any], now: float, defaults: Defaults) -> Record:
    """The seed message through the flows' decoder, and the topic name checked."""
    value = seed.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        raise PoisonMessage(f"value is {value} (NaN/Infinity are not allowed)")
    tags = seed.get("tags")
    environment = tags.get("environment") if isinstance(tags, dict) else None
    for part, v in (("database_type", seed.get("database_type")), ("environment", environment)):
        if isinstance(v, str) and v and not _TOPIC_PART.fullmatch(v):
            raise PoisonMessage(f"{part} {v[:64]!r} cannot be part of a topic name (A-Z a-z 0-9 _ -)")
    try:
        raw_json = orjson.dumps(seed)
    except TypeError as exc:  # e.g. an integer beyond 64 bits
        raise PoisonMessage(f"not representable as JSON: {exc}") from None
    metric = decode_json(raw_json, now, defaults.max_future_s)
    return record(metric, defaults)


def json_item(item: object, now: float, defaults: Defaults) -> Record:
    """One JSON item: the guide's `{metric_name, timestamp, value, labels}` or the seed message.

    The guide's form may omit the timestamp (then: now, when the gateway received it); the seed
    form without an `environment` tag gets the default one.
    """
    if not isinstance(item, dict):
        raise PoisonMessage(f"expected a JSON object, got {type(item).__name__}")
    if "labels" in item:
        unknown = sorted(set(item) - GUIDE_FIELDS)
        if unknown:
            raise PoisonMessage(
                f"unknown field(s) {', '.join(unknown)} (labels form: {sorted(GUIDE_FIELDS)})"
            )
        labels = item["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise PoisonMessage("labels must be an object of strings")
        name = item.get("metric_name")
        if not isinstance(name, str) or not name:
            raise PoisonMessage("metric_name: missing or not a non-empty string")
        if "value" not in item:
            raise PoisonMessage("missing field(s): value")
        return from_labels(name, labels, item.get("timestamp", now), item["value"], now, defaults)
    seed = dict(item)
    seed.pop("metadata", None)  # accepted, not part of the series (as in decode_json)
    tags = seed.get("tags")
    if isinstance(tags, dict) and not tags.get("environment"):
        seed["tags"] = {**tags, "environment": defaults.environment}
    elif tags is None:
        seed["tags"] = {"environment": defaults.environment}
    return _checked(seed, now, defaults)


def json_items(body: object, now: float, defaults: Defaults, *, batch: bool) -> Parsed:
    """`POST /metrics` (one item) or `POST /metrics/batch` (a list, or `{"metrics": [...]}`)."""
    if batch:
        items = body.get("metrics") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise PoisonMessage('expected a JSON list of metrics, or {"metrics": [...]}')
    else:
        items = [body]
    records: list[Record] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        try:
            records.append(json_item(item, now, defaults))
        except PoisonMessage as exc:
            errors.append(ItemError(f"item {i}" if batch else "metric", str(exc)))
    return Parsed(tuple(records), tuple(errors))


def series_text(labels: Mapping[str, str], limit: int = 200) -> str:
    """`name{a="b",...}` for error messages, cut at `limit` characters."""
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    text = f"{name}{{{inner}}}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
