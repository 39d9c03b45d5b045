"""The notification payload: exact dicts for the shapes the service sees."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from rules.model import AlertEvent, AlertState, NotifyReason, Severity
from rules.payload import (
    CONTEXT_KEYS,
    REQUIRED_KEYS,
    PayloadError,
    correlation_id,
    format_number,
    notification_payload,
    payload_problems,
    routing_key,
)
from tests.support.events import LABELS, T0, alert_event

make_event = alert_event


FIRING_EXPECTED: dict[str, Any] = {
    "alert_name": "HighCPUUsage",
    "db_instance_id": "prod-db-01",
    "subject": "[FIRING:critical] High CPU usage on prod-db-01",
    "body_text": (
        "CPU usage on prod-db-01 is 92.5% (threshold 85%)\n"
        "\n"
        "Value: 92.5 (threshold 85)\n"
        "Active since: 2025-01-15T10:30:00Z\n"
        "Firing since: 2025-01-15T10:35:00Z\n"
        "Runbook: https://runbooks.example.com/high-cpu\n"
        "Dashboard: https://grafana.example.com/d/db?var-instance=prod-db-01"
    ),
    "message_id": "msg-firing-1",
    "severity": "critical",
    "runbook_url": "https://runbooks.example.com/high-cpu",
    "dashboard_url": "https://grafana.example.com/d/db?var-instance=prod-db-01",
    "labels": LABELS,
    "routing_key": "production.postgresql.critical",
    "correlation_id": "fp0123456789abcd@2025-01-15T10:30:00Z",
    "state": "firing",
    "environment": "production",
    "context": {
        "metric_value": 92.5,
        "threshold": 85.0,
        "region": "us-east-1",
        "alert_fired_at": "2025-01-15T10:35:00Z",
        "fire_count": 1,
    },
    "notify_reason": "first",
}


def test_firing_payload() -> None:
    payload = notification_payload(make_event())
    assert payload == FIRING_EXPECTED
    assert payload_problems(payload) == []


def test_resolved_payload() -> None:
    event = make_event(
        state=AlertState.RESOLVED,
        at=T0 + 900,
        resolved_at=T0 + 900,
        value=40.25,
        message_id="msg-resolved-1",
        notify=NotifyReason.RESOLVED,
    )
    expected = {
        **FIRING_EXPECTED,
        "subject": "[RESOLVED] High CPU usage on prod-db-01",
        "body_text": (
            "CPU usage on prod-db-01 is 92.5% (threshold 85%)\n"
            "\n"
            "Value: 40.25 (threshold 85)\n"
            "Active since: 2025-01-15T10:30:00Z\n"
            "Resolved at: 2025-01-15T10:45:00Z\n"
            "Runbook: https://runbooks.example.com/high-cpu\n"
            "Dashboard: https://grafana.example.com/d/db?var-instance=prod-db-01"
        ),
        "message_id": "msg-resolved-1",
        "state": "resolved",
        "context": {**FIRING_EXPECTED["context"], "metric_value": 40.25},
        "notify_reason": "resolved",
    }
    payload = notification_payload(event)
    assert payload == expected
    assert payload_problems(payload) == []


def test_repeat_keeps_subject_and_correlation() -> None:
    first = notification_payload(make_event())
    repeat = notification_payload(
        make_event(
            at=T0 + 4 * 3600, fire_count=2, message_id="msg-repeat-2", notify=NotifyReason.REPEAT_ELAPSED
        )
    )
    assert repeat == {
        **FIRING_EXPECTED,
        "message_id": "msg-repeat-2",
        "context": {**FIRING_EXPECTED["context"], "fire_count": 2},
        "notify_reason": "repeat_elapsed",
    }
    assert repeat["subject"] == first["subject"]
    assert repeat["correlation_id"] == first["correlation_id"]
    assert payload_problems(repeat) == []


def test_nan_value_stale_without_annotations_or_optional_labels() -> None:
    labels = {"instance_id": "prod-db-02", "metric_name": "cpu_usage_percent"}
    event = make_event(
        alert_name="MetricsMissing",
        fingerprint="fpnodata",
        labels=tuple(sorted(labels.items())),
        annotations=(),
        value=math.nan,
        threshold=math.nan,
        severity=Severity.WARNING,
        runbook_url="",
        dashboard_url="",
        stale=True,
        message_id="msg-nodata",
    )
    payload = notification_payload(event)
    assert payload == {
        "alert_name": "MetricsMissing",
        "db_instance_id": "prod-db-02",
        "subject": "[FIRING:warning] MetricsMissing on prod-db-02",
        "body_text": (
            "Value: no data (threshold NaN)\n"
            "The series stopped reporting (stale).\n"
            "Active since: 2025-01-15T10:30:00Z\n"
            "Firing since: 2025-01-15T10:35:00Z"
        ),
        "message_id": "msg-nodata",
        "severity": "warning",
        "runbook_url": "",
        "dashboard_url": "",
        "labels": labels,
        "routing_key": "unknown.unknown.warning",
        "correlation_id": "fpnodata@2025-01-15T10:30:00Z",
        "state": "firing",
        "environment": "",
        "context": {
            "metric_value": None,
            "threshold": None,
            "region": "",
            "alert_fired_at": "2025-01-15T10:35:00Z",
            "fire_count": 1,
        },
        "notify_reason": "first",
    }
    # JSON has no NaN: the payload must encode strictly, as httpx does.
    json.dumps(payload, allow_nan=False)
    assert payload_problems(payload) == []


def test_pending_is_not_a_notification() -> None:
    with pytest.raises(PayloadError, match="pending"):
        notification_payload(make_event(state=AlertState.PENDING, fired_at=None))


def test_deterministic_for_the_same_event() -> None:
    event = make_event()
    assert json.dumps(notification_payload(event), sort_keys=True) == json.dumps(
        notification_payload(replace(event)), sort_keys=True
    )


def test_next_incident_has_a_new_correlation_id() -> None:
    assert correlation_id(make_event()) != correlation_id(make_event(active_at=T0 + 3600))


def test_routing_key_and_numbers() -> None:
    assert routing_key({"environment": "staging", "database_type": "mysql"}, "info") == "staging.mysql.info"
    assert routing_key({}, "critical") == "unknown.unknown.critical"
    assert format_number(90.0) == "90"
    assert format_number(0.1 + 0.2) == "0.3"
    assert format_number(12345678.0) == "12345678"


def test_required_keys_check_reports_what_is_missing() -> None:
    payload = notification_payload(make_event())
    assert payload.keys() == REQUIRED_KEYS
    assert payload["context"].keys() == CONTEXT_KEYS
    broken = {k: v for k, v in payload.items() if k not in ("routing_key", "context")}
    broken["state"] = "pending"
    assert payload_problems(broken) == [
        "missing key 'context'",
        "missing key 'routing_key'",
        "context is not an object",
        "bad state 'pending'",
    ]


def test_alert_records_are_strict_json_whatever_the_value() -> None:
    import json
    import math

    for value in (math.inf, -math.inf, math.nan):
        record = alert_event(value=value).to_record()
        assert record["value"] is None
        json.dumps(record, allow_nan=False)  # a consumer's strict parser accepts it
    # a PromQL alert without a top-level comparison has no threshold (NaN): null, and back
    record = alert_event(threshold=math.nan).to_record()
    assert record["threshold"] is None
    json.dumps(record, allow_nan=False)
    assert math.isnan(AlertEvent.from_record(record).threshold)


def test_trace_context_stays_out_of_the_notification_body() -> None:
    # the traceparent travels as an HTTP header: the body (and its idempotency) is unchanged
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = replace(make_event(), traceparent=tp)
    assert notification_payload(traced) == notification_payload(make_event())
    assert tp not in json.dumps(notification_payload(traced))
    assert correlation_id(traced) == correlation_id(make_event())
