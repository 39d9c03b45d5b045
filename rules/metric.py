"""The metric record every subsystem shares (`Metric`, its series labels) and time helpers:
I/O modules import this, not the alert model."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple


class Metric(NamedTuple):
    """One decoded metric message (seed schema).

    A NamedTuple rather than a dataclass: one is built per message on the hot path and a
    tuple is the cheapest immutable record CPython has.
    """

    ts: float  # event time, epoch seconds UTC
    database_type: str
    instance_id: str
    metric_name: str
    value: float
    tags: Mapping[str, str]


def series_labels(metric: Metric) -> dict[str, str]:
    """The label set of the series a metric belongs to (tags plus identity)."""
    labels = dict(metric.tags)
    labels["instance_id"] = metric.instance_id
    labels["database_type"] = metric.database_type
    labels["metric_name"] = metric.metric_name
    return labels


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@lru_cache(maxsize=4096)  # ticks repeat: every event of a tick shares its times (3 us each)
def iso(ts: float) -> str:
    """ISO 8601 UTC with a `Z`, second precision unless the time has a fraction."""
    dt = utc(ts)
    text = dt.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")
