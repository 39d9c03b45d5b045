"""What the collector flow lets through, as pure functions of (state, poll).

Every target's poll passes `step`: samples stamped too far in the future are refused,
tag keys outside the allowlist are removed, and a metric that has already shown
`max_series_per_metric` distinct tag sets for this target admits no new one (a runaway
label — a query text, a temp table name — must not create series without bound). What is
dropped is counted in `collector_dropped_series`. The flow's own series are added here
too: `up` (1, or 0 with the error *class* as `error` tag) and the drop counters.

Health changes (first poll, up -> down, down -> up, a different error class) come out as
a `Notice` so the flow logs once per change, never once per poll.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from rules.model import Metric

SeriesKey = tuple[tuple[str, str], ...]

DEFAULT_TAG_ALLOWLIST: Final = frozenset(
    {"environment", "region", "zone", "cluster", "role", "mount", "device", "interface", "mode", "database"}
)
UP: Final = "up"
DROPPED: Final = "collector_dropped_series"
TARGET_TAG: Final = "target"  # on the flow's own series: two targets may share an instance_id
ERROR_TAG: Final = "error"


@dataclass(frozen=True, slots=True)
class CollectPolicy:
    """`tag_allowlist=None` lets every tag key through."""

    tag_allowlist: frozenset[str] | None = DEFAULT_TAG_ALLOWLIST
    max_series_per_metric: int = 100
    max_future_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Poll:
    """One poll of one target, as the polling source emits it.

    `error` is the exception class (it becomes a tag); `detail` the redacted message,
    which only ever goes to the log.
    """

    target: str
    instance_id: str
    database_type: str
    environment: str
    at: float  # poll time from the flow's clock; samples are stamped with it
    metrics: tuple[Metric, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)  # the target's static tags
    error: str | None = None
    detail: str = ""


class Health(enum.Enum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Notice:
    """A change of a target's health, to be logged once."""

    target: str
    instance_id: str
    health: Health
    at: float
    error: str | None = None
    detail: str = ""
    first: bool = False  # the first poll since start

    def __str__(self) -> str:
        where = f"target {self.target!r} (instance {self.instance_id})"
        if self.health is Health.UP:
            return f"{where} is up" if self.first else f"{where} is back up"
        return f"{where} is down: {self.detail or self.error}"


@dataclass(frozen=True, slots=True)
class TargetState:
    """Per target: the tag sets admitted so far per metric, and the last health."""

    series: Mapping[str, frozenset[SeriesKey]] = field(default_factory=dict)
    error: str | None = None
    polled: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    poll: Poll
    metrics: tuple[Metric, ...]
    notice: Notice | None = None
    dropped_cardinality: int = 0
    dropped_future: int = 0


def filter_tags(tags: Mapping[str, str], allowlist: frozenset[str] | None) -> Mapping[str, str]:
    """`tags` restricted to allowed keys; the same object when nothing is removed."""
    if allowlist is None or all(k in allowlist for k in tags):
        return tags
    return {k: v for k, v in tags.items() if k in allowlist}


def series_key(tags: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted(tags.items()))


def drop_future(metrics: Sequence[Metric], now: float, max_future_s: float) -> tuple[list[Metric], int]:
    """Samples stamped more than `max_future_s` after `now`, refused and counted: a collector
    (or plugin) with a broken clock would otherwise hold alert windows open in the future."""
    limit = now + max_future_s
    kept = [m for m in metrics if m.ts <= limit]
    return kept, len(metrics) - len(kept)


def limit_cardinality(
    series: Mapping[str, frozenset[SeriesKey]], metrics: Iterable[Metric], limit: int
) -> tuple[Mapping[str, frozenset[SeriesKey]], list[Metric], int]:
    """Admit known series always and new ones while the metric has fewer than `limit`.

    Returns the new admitted set, the kept samples and how many were dropped. Admission is
    sticky: a series that disappears keeps its slot (no churn back and forth at the limit).
    """
    updated: dict[str, set[SeriesKey]] = {}
    kept: list[Metric] = []
    dropped = 0
    for m in metrics:
        known = series.get(m.metric_name, frozenset())
        key = series_key(m.tags)
        if key in known:
            kept.append(m)
            continue
        added = updated.setdefault(m.metric_name, set())
        if key in added:
            kept.append(m)
        elif len(known) + len(added) < limit:
            added.add(key)
            kept.append(m)
        else:
            dropped += 1
    if not updated:
        return series, kept, dropped
    merged = dict(series)
    for name, added in updated.items():
        merged[name] = series.get(name, frozenset()) | added
    return merged, kept, dropped


def health_notice(state: TargetState, poll: Poll) -> Notice | None:
    """A notice when health changes: first poll, up <-> down, or another error class."""
    if state.polled and state.error == poll.error:
        return None
    health = Health.UP if poll.error is None else Health.DOWN
    return Notice(poll.target, poll.instance_id, health, poll.at, poll.error, poll.detail, not state.polled)


def _own(poll: Poll, name: str, value: float, base: Mapping[str, str], **extra: str) -> Metric:
    return Metric(poll.at, poll.database_type, poll.instance_id, name, value, {**base, **extra})


def step(policy: CollectPolicy, state: TargetState | None, poll: Poll) -> tuple[TargetState, Outcome]:
    """Apply the policy to one poll and add the flow's own series (`up`, drop counters)."""
    state = state or TargetState()
    notice = health_notice(state, poll)
    base = {**filter_tags(poll.tags, policy.tag_allowlist), TARGET_TAG: poll.target}
    if poll.error is not None:
        up = _own(poll, UP, 0.0, base, **{ERROR_TAG: poll.error})
        return TargetState(state.series, poll.error, True), Outcome(poll, (up,), notice)

    fresh, future = drop_future(poll.metrics, poll.at, policy.max_future_s)
    allow = policy.tag_allowlist
    filtered = [m if (t := filter_tags(m.tags, allow)) is m.tags else m._replace(tags=t) for m in fresh]
    series, kept, over = limit_cardinality(state.series, filtered, policy.max_series_per_metric)
    kept.append(_own(poll, UP, 1.0, base))
    kept.append(_own(poll, DROPPED, float(over), base, reason="cardinality"))
    kept.append(_own(poll, DROPPED, float(future), base, reason="future"))
    return TargetState(series, None, True), Outcome(poll, tuple(kept), notice, over, future)
