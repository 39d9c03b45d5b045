"""Control events and their one wire format (JSON on `gds.control`, keyed per object).

- `SilenceEvent`: a silence or maintenance window, Alertmanager's model (matchers, [starts_at,
  ends_at), created_by, comment). Key `silence:{id}`: an update or an expiry is the same key
  again, so compaction keeps the newest version of each silence.
- `AckEvent`: an alert incident acknowledged (or the acknowledgement withdrawn). Key
  `ack:{fingerprint}`. It names the incident (`active_at`): a new incident of the same alert is
  not acknowledged. It carries the alert's labels, so delivery can route it to the alert's groups.
- `RuleSetEvent`: a rule-set reload a job did (or refused), for the history. Key
  `ruleset:{job}:{host}`.

Times are Unix seconds (floats) in memory and ISO 8601 on the wire. `decode` never trusts its
input: a bad event raises `ControlError` naming what is wrong, and the reader skips and counts it.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from rules.metric import iso
from rules.model import Matcher, RulesError, Silence

KINDS: Final = ("silence", "ack", "ruleset")
MAX_EVENT_BYTES: Final = 256 * 1024
LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_TEXT: Final = 4096


class ControlError(RulesError):
    """A control event that cannot be read or would be invalid; the message says why."""


@dataclass(frozen=True, slots=True)
class SilenceEvent:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float
    maintenance: bool = False  # a maintenance window: what it mutes reads `suppressed: maintenance`

    def state(self, now: float) -> str:
        """Alertmanager's silence state at `now`: pending, active or expired."""
        if now >= self.ends_at:
            return "expired"
        if now < self.starts_at:
            return "pending"
        return "active"

    def mutes(self, labels: Mapping[str, str], at: float) -> bool:
        return self.starts_at <= at < self.ends_at and all(m.matches(labels) for m in self.matchers)

    def as_silence(self) -> Silence:
        """The engine's silence (rule-file silences have the same shape)."""
        return Silence(self.matchers, self.starts_at, self.ends_at, self.comment)

    def expired(self, now: float) -> SilenceEvent:
        """Expire at `now` (Alertmanager: a pending silence ends before it started)."""
        ends = min(self.ends_at, max(now, self.starts_at))
        return replace(self, ends_at=ends, updated_at=now)


@dataclass(frozen=True, slots=True)
class AckEvent:
    fingerprint: str
    active_at: float  # the incident acknowledged
    acked: bool  # False: the acknowledgement was withdrawn
    by: str
    at: float
    comment: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    id: str = ""


@dataclass(frozen=True, slots=True)
class RuleSetEvent:
    job: str
    host: str
    version: str  # a hash of the files' contents
    status: str  # "loaded" or "refused"
    at: float
    files: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    rules: int = 0
    id: str = ""


ControlEvent = SilenceEvent | AckEvent | RuleSetEvent


def stamp(t: float) -> float:
    """A time as the wire keeps it (milliseconds): stamp times when created, so the event a
    writer keeps and the one every reader decodes are equal."""
    return round(t, 3)


def new_id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- matchers


def matcher_to_json(m: Matcher) -> dict[str, Any]:
    """Alertmanager API v2's matcher object."""
    return {"name": m.name, "value": m.value, "isRegex": m.regex, "isEqual": not m.negate}


def matcher_from_json(obj: Any, where: str = "matcher") -> Matcher:
    """An API v2 matcher object; `ControlError` says what is wrong with it."""
    if not isinstance(obj, Mapping):
        raise ControlError(f"{where}: expected an object with name, value, isRegex")
    name, value = obj.get("name"), obj.get("value")
    if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
        raise ControlError(f"{where}: name {name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ControlError(f"{where}: value must be a string of at most {MAX_TEXT} characters")
    is_regex, is_equal = obj.get("isRegex", False), obj.get("isEqual", True)
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise ControlError(f"{where}: isRegex and isEqual must be booleans")
    if is_regex:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ControlError(f"{where}: bad regular expression {value!r}: {exc}") from None
        return Matcher(name, value, True, not is_equal, pattern)
    return Matcher(name, value, False, not is_equal)


def check_matchers(matchers: Iterable[Matcher], where: str = "silence") -> None:
    """Alertmanager's rule: a silence must not match every alert (an empty matcher list, or only
    matchers that also match the empty string, is a typo that would mute everything)."""
    ms = list(matchers)
    if not ms:
        raise ControlError(f"{where}: at least one matcher is needed")
    if all(m.matches({}) for m in ms):
        raise ControlError(
            f"{where}: at least one matcher must not match the empty string (it would mute every alert)"
        )


# --------------------------------------------------------------------------- wire format


def key_of(event: ControlEvent) -> str:
    if isinstance(event, SilenceEvent):
        return f"silence:{event.id}"
    if isinstance(event, AckEvent):
        return f"ack:{event.fingerprint}"
    return f"ruleset:{event.job}:{event.host}"


def to_json(event: ControlEvent) -> dict[str, Any]:
    if isinstance(event, SilenceEvent):
        return {
            "kind": "silence",
            "id": event.id,
            "matchers": [matcher_to_json(m) for m in event.matchers],
            "startsAt": iso(event.starts_at),
            "endsAt": iso(event.ends_at),
            "createdBy": event.created_by,
            "comment": event.comment,
            "updatedAt": iso(event.updated_at),
            "maintenance": event.maintenance,
        }
    if isinstance(event, AckEvent):
        return {
            "kind": "ack",
            "id": event.id,
            "fingerprint": event.fingerprint,
            "activeAt": iso(event.active_at),
            "acked": event.acked,
            "by": event.by,
            "at": iso(event.at),
            "comment": event.comment,
            "labels": dict(event.labels),
        }
    return {
        "kind": "ruleset",
        "id": event.id,
        "job": event.job,
        "host": event.host,
        "version": event.version,
        "status": event.status,
        "at": iso(event.at),
        "files": list(event.files),
        "problems": list(event.problems),
        "rules": event.rules,
    }


def encode(event: ControlEvent) -> tuple[bytes, bytes]:
    """(Kafka key, value)."""
    return key_of(event).encode(), json.dumps(to_json(event), sort_keys=True).encode()


def parse_time(raw: object, key: str = "time") -> float:
    """RFC 3339 with a zone (Go's nanoseconds included, as amtool sends them) -> Unix seconds."""
    if not isinstance(raw, str) or len(raw) > 64:
        raise ControlError(f"{key}: expected an RFC 3339 time with a zone, e.g. 2025-01-15T10:00:00Z")
    try:
        dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ControlError(f"{key}: {raw!r} is not an RFC 3339 time, e.g. 2025-01-15T10:00:00Z") from None
    if dt.tzinfo is None:
        raise ControlError(f"{key}: {raw!r} has no time zone (add Z or +00:00)")
    t = dt.timestamp()
    if not math.isfinite(t):
        raise ControlError(f"{key}: {raw!r} is not a finite time")
    return t


def _time(obj: Mapping[str, Any], key: str) -> float:
    return parse_time(obj.get(key), key)


def _text(obj: Mapping[str, Any], key: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    raw = obj.get(key, "")
    if raw is None:
        raw = ""
    if not isinstance(raw, str) or len(raw) > limit:
        raise ControlError(f"{key}: expected a string of at most {limit} characters")
    if required and not raw.strip():
        raise ControlError(f"{key}: required")
    return raw


def silence_from_json(obj: Mapping[str, Any], *, id: str, updated_at: float) -> SilenceEvent:
    """A silence from API v2's PostableSilence (or our wire format), checked as Alertmanager does."""
    raw_matchers = obj.get("matchers")
    if not isinstance(raw_matchers, list):
        raise ControlError("matchers: expected a list of {name, value, isRegex, isEqual}")
    matchers = tuple(matcher_from_json(m, f"matchers[{i}]") for i, m in enumerate(raw_matchers))
    check_matchers(matchers)
    starts, ends = _time(obj, "startsAt"), _time(obj, "endsAt")
    if ends <= starts:
        raise ControlError("endsAt: must be after startsAt")
    maintenance = obj.get("maintenance", False)
    if not isinstance(maintenance, bool):
        raise ControlError("maintenance: expected true or false")
    return SilenceEvent(
        id=id,
        matchers=matchers,
        starts_at=starts,
        ends_at=ends,
        created_by=_text(obj, "createdBy", required=True, limit=256),
        comment=_text(obj, "comment"),
        updated_at=updated_at,
        maintenance=maintenance,
    )


def decode(value: bytes | None) -> ControlEvent:
    """One `gds.control` value; `ControlError` says what is wrong."""
    if value is None:
        raise ControlError("empty value (a tombstone)")
    if len(value) > MAX_EVENT_BYTES:
        raise ControlError(f"event of {len(value)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        obj = json.loads(value)
    except ValueError as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError("not a JSON object")
    kind = obj.get("kind")
    if kind == "silence":
        return silence_from_json(
            obj, id=_text(obj, "id", required=True, limit=64), updated_at=_time(obj, "updatedAt")
        )
    if kind == "ack":
        labels = obj.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ControlError("labels: expected an object of strings")
        acked = obj.get("acked")
        if not isinstance(acked, bool):
            raise ControlError("acked: expected true or false")
        return AckEvent(
            fingerprint=_text(obj, "fingerprint", required=True, limit=64),
            active_at=_time(obj, "activeAt"),
            acked=acked,
            by=_text(obj, "by", required=True, limit=256),
            at=_time(obj, "at"),
            comment=_text(obj, "comment"),
            labels=tuple(sorted((str(k), v) for k, v in labels.items())),
            id=_text(obj, "id", limit=64),
        )
    if kind == "ruleset":
        files, problems = obj.get("files") or [], obj.get("problems") or []
        if not isinstance(files, list) or not isinstance(problems, list):
            raise ControlError("files and problems: expected lists")
        status = _text(obj, "status", required=True)
        if status not in ("loaded", "refused"):
            raise ControlError(f"status: {status!r} is not loaded or refused")
        rules = obj.get("rules", 0)
        return RuleSetEvent(
            job=_text(obj, "job", required=True, limit=64),
            host=_text(obj, "host", required=True, limit=256),
            version=_text(obj, "version", required=True, limit=128),
            status=status,
            at=_time(obj, "at"),
            files=tuple(str(f) for f in files),
            problems=tuple(str(p) for p in problems),
            rules=rules if isinstance(rules, int) else 0,
            id=_text(obj, "id", limit=64),
        )
    raise ControlError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")


# --------------------------------------------------------------------------- the fold


@dataclass(frozen=True, slots=True)
class ControlState:
    """What the control plane says now: the newest version of each silence and acknowledgement."""

    silences: Mapping[str, SilenceEvent]
    acks: Mapping[str, AckEvent]  # by fingerprint


EMPTY: Final = ControlState({}, {})


def fold(state: ControlState, event: ControlEvent) -> ControlState:
    """Apply one event. An older version of a silence (by `updated_at`) never replaces a newer
    one, so a replay or a duplicate changes nothing."""
    if isinstance(event, SilenceEvent):
        old = state.silences.get(event.id)
        if old is not None and old.updated_at > event.updated_at:
            return state
        return replace(state, silences={**state.silences, event.id: event})
    if isinstance(event, AckEvent):
        old_ack = state.acks.get(event.fingerprint)
        if old_ack is not None and old_ack.at > event.at:
            return state
        return replace(state, acks={**state.acks, event.fingerprint: event})
    return state


def is_acked(state: ControlState, fingerprint: str, active_at: float) -> AckEvent | None:
    """The acknowledgement of that incident, if it is acknowledged."""
    ack = state.acks.get(fingerprint)
    if ack is None or not ack.acked or ack.active_at != active_at:
        return None
    return ack
