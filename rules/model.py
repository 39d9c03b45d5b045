"""Rule model and the values evaluation passes around.

Pure data, no I/O and no clock. Times inside the engine are float epoch seconds (UTC by
definition, cheap to compare and small in snapshots); they become aware datetimes only
where they leave the engine (events, payloads).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Final

from rules.metric import Metric, iso, series_labels


class RulesError(Exception):
    """Root exception of the rules package."""


class Op(enum.Enum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Op.GT:
            return value > threshold
        if self is Op.GE:
            return value >= threshold
        if self is Op.LT:
            return value < threshold
        if self is Op.LE:
            return value <= threshold
        if self is Op.EQ:
            return value == threshold
        return value != threshold


class Aggregation(enum.Enum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"
    LAST = "last"
    P50 = "p50"
    P95 = "p95"
    P99 = "p99"
    RATE = "rate"


class Severity(enum.Enum):
    """info, warning, critical; and any other non-empty string, kept as written.

    Prometheus rules carry whatever severity their teams route on (`page`, `ticket`): such a
    value becomes a member of its own (`Severity("page").value == "page"`, same object on
    every call and after unpickling) that ranks below warning. The seed loader still accepts
    only the three known ones (`is_known`): there a different word is a typo.
    """

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @classmethod
    def _missing_(cls, value: object) -> Severity | None:
        if not isinstance(value, str) or not value.strip():
            return None
        member = object.__new__(cls)
        member._value_ = value
        member._name_ = value
        # cached, so `is` and hashing agree for every instance of one string
        found = cls._value2member_map_.setdefault(value, member)
        return found if isinstance(found, cls) else member

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK.get(self, 0)  # other strings: below warning, with info

    @property
    def is_known(self) -> bool:
        return self in _SEVERITY_RANK


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher as in PromQL: `=`, `!=`, `=~`, `!~` (regexes fully anchored)."""

    name: str
    value: str
    regex: bool = False
    negate: bool = False
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def parse(name: str, spec: str) -> Matcher:
        """`"prod-.*"` style values: a leading `~` means regex, `!` negation, `!~` both."""
        negate = spec.startswith("!")
        if negate:
            spec = spec[1:]
        regex = spec.startswith("~")
        if regex:
            spec = spec[1:]
            return Matcher(name, spec, True, negate, re.compile(spec))
        return Matcher(name, spec, False, negate)

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.pattern is not None:
            ok = self.pattern.fullmatch(got) is not None
        else:
            ok = got == self.value
        return ok != self.negate


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule; see rules/loader.py for the two YAML formats it comes from."""

    name: str
    metric: str
    op: Op
    threshold: float
    aggregation: Aggregation = Aggregation.AVG
    window_s: float = 60.0  # range of the aggregation, like `avg_over_time(x[window])`
    for_s: float = 0.0  # Prometheus `for`
    keep_firing_for_s: float = 0.0
    severity: Severity = Severity.WARNING
    matchers: tuple[Matcher, ...] = ()
    database_types: tuple[str, ...] = ()  # empty: any
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # templates, see rules/template.py
    runbook_url: str = ""
    dashboard_url: str = ""
    repeat_interval_s: float = 4 * 3600.0
    no_data: bool = False  # dead man's switch: the condition is "no sample in the window"
    source: str = ""  # file the rule came from, for error messages

    def selects(self, metric: Metric) -> bool:
        if metric.metric_name != self.metric:
            return False
        if self.database_types and metric.database_type not in self.database_types:
            return False
        if not self.matchers:
            return True
        labels = series_labels(metric)
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    """A rule-file silence or maintenance window: matchers plus [starts, ends)."""

    matchers: tuple[Matcher, ...]
    starts: float
    ends: float
    comment: str = ""

    def mutes(self, labels: Mapping[str, str], at: float) -> bool:
        return self.starts <= at < self.ends and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Alertmanager's inhibit rule: a firing source alert mutes matching targets."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ("instance_id",)


DEFAULT_INHIBIT = InhibitRule(
    source=(Matcher("severity", "critical"),),
    target=(Matcher("severity", "warning"),),
    equal=("instance_id",),
)


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    silences: tuple[Silence, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = (DEFAULT_INHIBIT,)
    eval_interval_s: float = 60.0  # evaluation step; ticks are aligned to the epoch
    staleness_s: float = 300.0
    allowed_lateness_s: float = 30.0
    flap_window_s: float = 1800.0
    flap_threshold: int = 4  # state changes within flap_window that make an alert "flapping"


class AlertState(enum.Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class NotifyReason(enum.Enum):
    """Why a transition is (or would be) sent to the notification service."""

    FIRST = "first"
    REPEAT_ELAPSED = "repeat_elapsed"
    RESOLVED = "resolved"
    # still firing when the silence / inhibition / flapping that held its FIRING back ended
    UNSUPPRESSED = "unsuppressed"


class Suppression(enum.Enum):
    """Why a notification was not sent; the transition is still recorded."""

    SILENCED = "silenced"
    MAINTENANCE = "maintenance"
    INHIBITED = "inhibited"
    FLAPPING = "flapping"
    # a RESOLVED whose FIRING was never announced: a receiver has no incident to close
    NOT_ANNOUNCED = "not_announced"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert transition (or repeat) as the engine emits it.

    Every event goes to the `alerts` topic; those with `notify` set and no
    `suppressed` are posted to the notification service.
    """

    alert_name: str
    fingerprint: str
    state: AlertState  # the state entered (PENDING, FIRING, RESOLVED) or FIRING for a repeat
    at: float  # event time of the transition
    active_at: float
    fired_at: float | None
    resolved_at: float | None
    value: float  # NaN when the series had no data (stale / no-data alerts)
    threshold: float
    severity: Severity
    labels: tuple[tuple[str, str], ...]  # sorted
    annotations: tuple[tuple[str, str], ...]  # rendered
    runbook_url: str
    dashboard_url: str
    fire_count: int
    message_id: str
    notify: NotifyReason | None = None
    suppressed: Suppression | None = None
    stale: bool = False
    # W3C trace context of the newest metric message of this instance that carried one (its Kafka
    # `traceparent` header); delivery sends it on every outbound request. Metadata, not identity:
    # never in message_id or fingerprint, and ignored by `==` (same transition, same event).
    traceparent: str | None = field(default=None, compare=False)

    @property
    def instance_id(self) -> str:
        return dict(self.labels).get("instance_id", "")

    def __setstate__(self, state: list[object]) -> None:
        """Unpickle, also from before a field was added (delivery state in Bytewax snapshots
        holds events): a missing trailing field takes its default instead of being unset."""
        for f, value in zip(_EVENT_FIELDS, state, strict=False):
            object.__setattr__(self, f.name, value)
        for f in _EVENT_FIELDS[len(state) :]:
            object.__setattr__(self, f.name, f.default)

    def to_record(self) -> dict[str, object]:
        """The JSON shape written to the alerts topic and the backtest transition log.

        `traceparent` is written only when the event has one, so inputs without trace context
        give byte-identical records.
        """
        record: dict[str, object] = {
            "alert_name": self.alert_name,
            "state": self.state.value,
            "at": iso(self.at),
            "active_at": iso(self.active_at),
            "fired_at": iso(self.fired_at) if self.fired_at is not None else None,
            "resolved_at": iso(self.resolved_at) if self.resolved_at is not None else None,
            "value": self.value if math.isfinite(self.value) else None,  # JSON has no NaN or Infinity
            # a Prometheus alert's threshold is the number of a top-level comparison, else NaN
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "severity": self.severity.value,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "fingerprint": self.fingerprint,
            "message_id": self.message_id,
            "fire_count": self.fire_count,
            "notify": self.notify.value if self.notify else None,
            "suppressed": self.suppressed.value if self.suppressed else None,
            "stale": self.stale,
            "runbook_url": self.runbook_url,
            "dashboard_url": self.dashboard_url,
        }
        if self.traceparent is not None:
            record["traceparent"] = self.traceparent
        return record

    @staticmethod
    def from_record(record: Mapping[str, object]) -> AlertEvent:
        """The inverse of `to_record` (the delivery flow reads the `alerts` topic); `RulesError`
        names what is missing or malformed."""
        try:
            value = record.get("value")
            return AlertEvent(
                alert_name=str(record["alert_name"]),
                fingerprint=str(record["fingerprint"]),
                state=AlertState(record["state"]),
                at=_epoch(record["at"]),
                active_at=_epoch(record["active_at"]),
                fired_at=None if record.get("fired_at") is None else _epoch(record["fired_at"]),
                resolved_at=None if record.get("resolved_at") is None else _epoch(record["resolved_at"]),
                value=math.nan if value is None else float(value),  # type: ignore[arg-type]
                threshold=math.nan if record.get("threshold") is None else float(record["threshold"]),  # type: ignore[arg-type]
                severity=Severity(record["severity"]),
                labels=tuple(sorted((str(k), str(v)) for k, v in dict(record["labels"]).items())),  # type: ignore[call-overload]
                annotations=tuple(
                    sorted((str(k), str(v)) for k, v in dict(record.get("annotations") or {}).items())  # type: ignore[call-overload]
                ),
                runbook_url=str(record.get("runbook_url") or ""),
                dashboard_url=str(record.get("dashboard_url") or ""),
                fire_count=int(record.get("fire_count") or 0),  # type: ignore[call-overload]
                message_id=str(record["message_id"]),
                notify=None if record.get("notify") is None else NotifyReason(record["notify"]),
                suppressed=None if record.get("suppressed") is None else Suppression(record["suppressed"]),
                stale=bool(record.get("stale", False)),
                traceparent=None if record.get("traceparent") is None else str(record["traceparent"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesError(f"not an alert record ({type(exc).__name__}: {exc})") from exc


_EVENT_FIELDS: Final = fields(AlertEvent)


def _epoch(value: object) -> float:
    """ISO 8601 (as `iso` writes it) or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()
