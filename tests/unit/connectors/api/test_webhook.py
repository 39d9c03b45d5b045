"""Alertmanager webhook payloads as alert_events rows (connectors/api/webhook.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.api.webhook import WebhookError, rows_from_payload

ALERT: dict[str, Any] = {
    "status": "firing",
    "labels": {"alertname": "HighCPU", "instance_id": "db-1", "severity": "critical"},
    "annotations": {"summary": "cpu <b>high</b>"},
    "startsAt": "2025-01-15T10:00:00.123456789Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "fingerprint": "0123456789abcdef",
}


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "receiver": "gds",
        "status": "firing",
        "groupKey": "{}:{}",
        "alerts": list(alerts),
    }


def test_firing_and_resolved_rows_with_deterministic_message_ids() -> None:
    (row,) = rows_from_payload(payload(ALERT))
    assert (row.alert_name, row.state, row.fingerprint, row.severity) == (
        "HighCPU",
        "firing",
        "0123456789abcdef",
        "critical",
    )
    assert row.at == row.active_at and row.at.isoformat().startswith("2025-01-15T10:00:00.123")
    assert json.loads(row.labels)["instance_id"] == "db-1"
    assert json.loads(row.annotations) == {"summary": "cpu <b>high</b>"}
    assert rows_from_payload(payload(ALERT))[0].message_id == row.message_id  # a re-post is the same row
    (resolved,) = rows_from_payload(
        payload({**ALERT, "status": "resolved", "endsAt": "2025-01-15T10:05:00Z"})
    )
    assert resolved.message_id != row.message_id and resolved.at.minute == 5
    no_fp = {k: v for k, v in ALERT.items() if k != "fingerprint"}
    assert (
        rows_from_payload(payload(no_fp))[0].fingerprint == rows_from_payload(payload(no_fp))[0].fingerprint
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ([], "expected a JSON object"),
        ({"version": "3", "alerts": [ALERT]}, "version"),
        (payload(), "non-empty list"),
        (payload({**ALERT, "labels": {"instance_id": "x"}}), "alertname is required"),
        (payload({**ALERT, "labels": {"alertname": "A", "bad-name": "x"}}), "is not a label name"),
        (payload({**ALERT, "labels": {"alertname": "A", "x": 1}}), "expected a string"),
        (payload({**ALERT, "status": "weird"}), "not firing or resolved"),
        (payload({**ALERT, "startsAt": "yesterday"}), "RFC 3339"),
        (payload({**ALERT, "status": "resolved"}), "needs its end time"),
        (payload(*[ALERT] * 1001), "at most 1000"),
    ],
)
def test_bad_payloads_say_what_is_wrong(bad: Any, reason: str) -> None:
    with pytest.raises(WebhookError, match=reason):
        rows_from_payload(bad)
