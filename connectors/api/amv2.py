"""Alertmanager API v2 JSON (api/v2/openapi.yaml) for our silences and alerts, and the filters
amtool sends (`filter=alertname="X"`). Pure: time is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rules.control.events import ControlError, SilenceEvent, matcher_to_json
from rules.metric import iso
from rules.model import Matcher
from rules.routing.config import parse_matchers

MAX_FILTERS: Final = 32
MAX_FILTER_CHARS: Final = 4096
RECEIVER: Final = "gds"  # the alerts table does not say which receivers got an alert
ENDS_AFTER_S: Final = 300.0  # a firing alert's endsAt, as Alertmanager's resolve_timeout would set it


def parse_filters(raw: Sequence[str]) -> tuple[Matcher, ...]:
    """`filter` query values (`name="v"`, `name=~"re"`, ...); `ControlError` says which is bad."""
    if len(raw) > MAX_FILTERS:
        raise ControlError(f"filter: at most {MAX_FILTERS} matchers")
    out: list[Matcher] = []
    for text in raw:
        if len(text) > MAX_FILTER_CHARS:
            raise ControlError(f"filter: a matcher of at most {MAX_FILTER_CHARS} characters")
        try:
            out.extend(parse_matchers(text))
        except ValueError as exc:
            raise ControlError(f"filter: {exc}") from None
    return tuple(out)


def matches(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def silence_json(s: SilenceEvent, now: float) -> dict[str, Any]:
    """A GettableSilence (plus our `maintenance` flag)."""
    return {
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": iso(s.updated_at),
        "matchers": [matcher_to_json(m) for m in s.matchers],
        "startsAt": iso(s.starts_at),
        "endsAt": iso(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "maintenance": s.maintenance,
    }


def silence_matches_filter(s: SilenceEvent, filters: Sequence[Matcher]) -> bool:
    """Alertmanager's silence filter: the silence's own equality matchers read as labels."""
    labels = {m.name: m.value for m in s.matchers}
    return matches(filters, labels)


_STATE_ORDER: Final = {"active": 0, "pending": 1, "expired": 2}


def sort_silences(silences: Iterable[SilenceEvent], now: float) -> list[SilenceEvent]:
    """Alertmanager's order: active (ending first), pending (starting first), expired (newest end first)."""

    def key(s: SilenceEvent) -> tuple[int, float, str]:
        state = s.state(now)
        t = s.ends_at if state == "active" else s.starts_at if state == "pending" else -s.ends_at
        return _STATE_ORDER[state], t, s.id

    return sorted(silences, key=key)


@dataclass(frozen=True, slots=True)
class CurrentAlert:
    """The newest `alert_events` row of a firing alert, with what mutes it now."""

    fingerprint: str
    alert_name: str
    labels: Mapping[str, str]  # alertname included
    annotations: Mapping[str, str]
    active_at: float
    at: float
    severity: str
    value: float | None
    suppressed: str | None  # what the alerting job recorded (inhibited, maintenance, ...)
    silenced_by: tuple[str, ...] = ()
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str = ""

    @property
    def inhibited(self) -> bool:
        return self.suppressed == "inhibited"

    @property
    def state(self) -> str:
        return "suppressed" if self.silenced_by or self.inhibited else "active"


def alert_json(a: CurrentAlert) -> dict[str, Any]:
    """A GettableAlert; `acknowledgement` is ours (amtool ignores unknown fields)."""
    return {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": iso(a.active_at),
        "endsAt": iso(a.at + ENDS_AFTER_S),
        "updatedAt": iso(a.at),
        "fingerprint": a.fingerprint,
        "receivers": [{"name": RECEIVER}],
        "status": {
            "state": a.state,
            "silencedBy": list(a.silenced_by),
            "inhibitedBy": ["inhibited"] if a.inhibited else [],
            "mutedBy": [],
        },
        "generatorURL": "",
        "acknowledgement": (
            {"by": a.acked_by, "at": iso(a.acked_at or 0.0), "comment": a.ack_comment}
            if a.acked_by is not None
            else None
        ),
    }


def keep_alert(a: CurrentAlert, *, active: bool, silenced: bool, inhibited: bool) -> bool:
    """GET /api/v2/alerts' active / silenced / inhibited flags."""
    if a.silenced_by and not silenced:
        return False
    if a.inhibited and not inhibited:
        return False
    return active or bool(a.silenced_by) or a.inhibited


def status_json(started: float, version: str = "gds") -> dict[str, Any]:
    """A minimal AlertmanagerStatus (amtool's `config` and `cluster` commands read it)."""
    return {
        "cluster": {"name": "gds", "status": "ready", "peers": []},
        "versionInfo": {
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": "",
            "version": version,
        },
        "config": {"original": "# the control-plane API of gds: silences live on the control topic\n"},
        "uptime": iso(started),
    }
