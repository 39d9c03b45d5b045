"""Alertmanager webhook payloads (version 4) as `alert_events` rows, so an existing Alertmanager
can feed the same history. Pure; a bad payload raises `WebhookError` naming what is wrong."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from connectors.storage.timescale import AlertRow
from rules.control.events import LABEL_NAME, ControlError, parse_time

MAX_ALERTS: Final = 1000
MAX_LABELS: Final = 64
MAX_VALUE_CHARS: Final = 4096
GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"  # Alertmanager's "no endsAt"


class WebhookError(ControlError):
    """A payload that is not an Alertmanager webhook; the message says what is wrong."""


def _strings(obj: object, where: str, *, names: bool) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise WebhookError(f"{where}: expected an object of strings")
    if len(obj) > MAX_LABELS:
        raise WebhookError(f"{where}: at most {MAX_LABELS} entries")
    out: dict[str, str] = {}
    for k, v in obj.items():
        if names and not LABEL_NAME.fullmatch(k):
            raise WebhookError(f"{where}: {k!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if not isinstance(v, str) or len(v) > MAX_VALUE_CHARS or len(k) > 256:
            raise WebhookError(f"{where}.{k}: expected a string of at most {MAX_VALUE_CHARS} characters")
        out[k] = v
    return out


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable fingerprint when the payload has none (Alertmanager's is FNV over the labels)."""
    text = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def message_id(fingerprint: str, status: str, starts_at: str) -> str:
    """Deterministic, so a re-posted webhook (Alertmanager retries, repeats) stores one row."""
    return "am-" + hashlib.sha256(f"{fingerprint}|{status}|{starts_at}".encode()).hexdigest()[:32]


def _time(raw: object, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(parse_time(raw, where), UTC)
    except ControlError as exc:
        raise WebhookError(str(exc)) from None


def rows_from_payload(payload: object) -> list[AlertRow]:
    """Every alert of one webhook payload as a row (firing: at = startsAt; resolved: at = endsAt)."""
    if not isinstance(payload, Mapping):
        raise WebhookError("expected a JSON object (an Alertmanager webhook payload)")
    version = payload.get("version")
    if version != "4":
        raise WebhookError(f'version: {version!r} is not "4" (Alertmanager\'s webhook format)')
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise WebhookError("alerts: expected a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise WebhookError(f"alerts: at most {MAX_ALERTS} per payload")
    rows = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, Mapping):
            raise WebhookError(f"{where}: expected an object")
        labels = _strings(alert.get("labels"), f"{where}.labels", names=True)
        annotations = _strings(alert.get("annotations"), f"{where}.annotations", names=False)
        name = labels.get("alertname", "")  # kept in labels too, as the engine's alerts have it
        if not name:
            raise WebhookError(f"{where}.labels: alertname is required")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise WebhookError(f"{where}.status: {status!r} is not firing or resolved")
        starts_raw = alert.get("startsAt")
        starts = _time(starts_raw, f"{where}.startsAt")
        at = starts
        if status == "resolved":
            ends_raw = alert.get("endsAt")
            if ends_raw in (None, "", GO_ZERO_TIME):
                raise WebhookError(f"{where}.endsAt: a resolved alert needs its end time")
            at = _time(ends_raw, f"{where}.endsAt")
        fp = alert.get("fingerprint") or fingerprint_of(labels)
        if not isinstance(fp, str) or len(fp) > 128:
            raise WebhookError(f"{where}.fingerprint: expected a string of at most 128 characters")
        rows.append(
            AlertRow(  # the storage flow's row: what Alertmanager does not say stays NULL
                message_id=message_id(fp, status, str(starts_raw)),
                fingerprint=fp,
                alert_name=name,
                state=status,
                at=at,
                active_at=starts,
                value=None,
                threshold=None,
                labels=json.dumps(labels, ensure_ascii=False, sort_keys=True),
                annotations=json.dumps(annotations, ensure_ascii=False, sort_keys=True),
                severity=labels.get("severity", "none"),
                fire_count=None,
                suppressed=None,
            )
        )
    return rows
