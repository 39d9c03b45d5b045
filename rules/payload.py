"""The notification-service payload for one alert transition (seed format).

Pure: the same event always yields the same payload, so a retry, a restart or a replay posts
byte-identical JSON under the same `message_id`, and the receiver's dedup by message_id is exact.
No clock is read here; every time in the payload comes from the event.

Field choices where the seed leaves room:
- `state` is "firing" for firing transitions and repeats, "resolved" for resolutions; the
  engine never notifies for PENDING, so a pending event is a wiring bug and raises.
- `subject` is `[FIRING:<severity>] <summary>` or `[RESOLVED] <summary>`, where `<summary>` is the
  rendered `summary` annotation, falling back to `<alert_name> on <instance_id>` (Alertmanager's
  default title shape). A repeat has the same subject as the first notification so mail clients
  thread them; `notify_reason` tells them apart.
- `routing_key` is `<environment>.<database_type>.<severity>` from the alert labels, each missing
  label spelled `unknown`, so a key always has three non-empty dot-separated segments that a
  receiver can route on with prefix or glob matching (`production.postgresql.*`).
- `correlation_id` is `<fingerprint>@<active_at as ISO Z>`: the same for every notification of
  one incident (first, repeats, resolution) and different for the next incident of the same
  alert, because a new incident has a new `active_at`.
- Non-finite numbers (NaN value of a stale / no-data alert) become JSON null: JSON has no NaN and
  httpx refuses to encode it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rules.model import AlertEvent, AlertState, NotifyReason, RulesError, iso

UNKNOWN_SEGMENT = "unknown"

REQUIRED_KEYS: frozenset[str] = frozenset(
    {
        "alert_name",
        "db_instance_id",
        "subject",
        "body_text",
        "message_id",
        "severity",
        "runbook_url",
        "dashboard_url",
        "labels",
        "routing_key",
        "correlation_id",
        "state",
        "environment",
        "context",
        "notify_reason",
    }
)
CONTEXT_KEYS: frozenset[str] = frozenset(
    {"metric_value", "threshold", "region", "alert_fired_at", "fire_count"}
)
NOTIFY_REASONS: frozenset[str] = frozenset(r.value for r in NotifyReason)


class PayloadError(RulesError):
    """An event that cannot become a notification (e.g. a PENDING transition)."""


def notification_payload(event: AlertEvent) -> dict[str, Any]:
    """Build the JSON body of `POST {NOTIFY_URL}/alerts` for one transition."""
    if event.state is AlertState.RESOLVED:
        state = "resolved"
    elif event.state is AlertState.FIRING:
        state = "firing"
    else:
        raise PayloadError(
            f"alert {event.alert_name!r} ({event.message_id}): "
            f"no notification for state {event.state.value!r}"
        )
    labels = dict(event.labels)
    annotations = dict(event.annotations)
    instance_id = labels.get("instance_id", "")
    environment = labels.get("environment", "")
    severity = event.severity.value
    if event.notify is not None:
        reason = event.notify.value
    else:
        # Only notify-marked events are posted; derive something sensible for previews.
        reason = "resolved" if state == "resolved" else "first"
    return {
        "alert_name": event.alert_name,
        "db_instance_id": instance_id,
        "subject": _subject(event, state, annotations, instance_id),
        "body_text": _body(event, state, annotations),
        "message_id": event.message_id,
        "severity": severity,
        "runbook_url": event.runbook_url,
        "dashboard_url": event.dashboard_url,
        "labels": labels,
        "routing_key": routing_key(labels, severity),
        "correlation_id": correlation_id(event),
        "state": state,
        "environment": environment,
        "context": {
            "metric_value": _finite(event.value),
            "threshold": _finite(event.threshold),
            "region": labels.get("region", ""),
            "alert_fired_at": iso(event.fired_at) if event.fired_at is not None else None,
            "fire_count": event.fire_count,
        },
        "notify_reason": reason,
    }


def routing_key(labels: Mapping[str, str], severity: str) -> str:
    """`environment.database_type.severity`; see the module docstring for why `unknown`."""
    env = labels.get("environment") or UNKNOWN_SEGMENT
    db_type = labels.get("database_type") or UNKNOWN_SEGMENT
    return f"{env}.{db_type}.{severity}"


def correlation_id(event: AlertEvent) -> str:
    """Shared by every notification of one incident, distinct across incidents."""
    return f"{event.fingerprint}@{iso(event.active_at)}"


def payload_problems(payload: Mapping[str, Any]) -> list[str]:
    """Minimal structural check (keys and a few types); empty when the payload is well formed.

    Not a substitute for the JSON schema in `schemas/`: this is the cheap check tests and the
    sink can run without a schema library.
    """
    problems = [f"missing key {key!r}" for key in sorted(REQUIRED_KEYS - payload.keys())]
    context = payload.get("context")
    if not isinstance(context, Mapping):
        problems.append("context is not an object")
    else:
        problems.extend(f"missing context key {key!r}" for key in sorted(CONTEXT_KEYS - context.keys()))
    if payload.get("state") not in ("firing", "resolved"):
        problems.append(f"bad state {payload.get('state')!r}")
    if payload.get("notify_reason") not in NOTIFY_REASONS:
        problems.append(f"bad notify_reason {payload.get('notify_reason')!r}")
    for key in ("message_id", "alert_name", "subject", "routing_key", "correlation_id"):
        if key in payload and not (isinstance(payload[key], str) and payload[key]):
            problems.append(f"{key} must be a non-empty string")
    if "labels" in payload and not isinstance(payload["labels"], Mapping):
        problems.append("labels is not an object")
    return problems


def _subject(event: AlertEvent, state: str, annotations: Mapping[str, str], instance_id: str) -> str:
    summary = annotations.get("summary", "").strip()
    if not summary:
        summary = f"{event.alert_name} on {instance_id}" if instance_id else event.alert_name
    if state == "resolved":
        return f"[RESOLVED] {summary}"
    return f"[FIRING:{event.severity.value}] {summary}"


def _body(event: AlertEvent, state: str, annotations: Mapping[str, str]) -> str:
    lines: list[str] = []
    description = annotations.get("description", "").strip()
    if description:
        lines.append(description)
        lines.append("")
    value = "no data" if not math.isfinite(event.value) else format_number(event.value)
    lines.append(f"Value: {value} (threshold {format_number(event.threshold)})")
    if event.stale:
        lines.append("The series stopped reporting (stale).")
    lines.append(f"Active since: {iso(event.active_at)}")
    if state == "resolved" and event.resolved_at is not None:
        lines.append(f"Resolved at: {iso(event.resolved_at)}")
    elif event.fired_at is not None:
        lines.append(f"Firing since: {iso(event.fired_at)}")
    if event.runbook_url:
        lines.append(f"Runbook: {event.runbook_url}")
    if event.dashboard_url:
        lines.append(f"Dashboard: {event.dashboard_url}")
    return "\n".join(lines)


def format_number(value: float) -> str:
    """Human form of a metric value: `85.5`, `90`, `12345678`, `NaN` (15 significant digits)."""
    if math.isnan(value):
        return "NaN"
    return format(value, ".15g")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
