"""AlertEvent factory for tests of formatting and delivery."""

from __future__ import annotations

from typing import Any

from rules.model import AlertEvent, AlertState, NotifyReason, Severity

T0 = 1736937000.0  # 2025-01-15T10:30:00Z
LABELS = {
    "database_type": "postgresql",
    "environment": "production",
    "instance_id": "prod-db-01",
    "metric_name": "cpu_usage_percent",
    "region": "us-east-1",
    "severity": "critical",
}


def alert_event(**overrides: Any) -> AlertEvent:
    """A firing HighCPUUsage event on prod-db-01; override any AlertEvent field."""
    fields: dict[str, Any] = {
        "alert_name": "HighCPUUsage",
        "fingerprint": "fp0123456789abcd",
        "state": AlertState.FIRING,
        "at": T0 + 300,
        "active_at": T0,
        "fired_at": T0 + 300,
        "resolved_at": None,
        "value": 92.5,
        "threshold": 85.0,
        "severity": Severity.CRITICAL,
        "labels": tuple(sorted(LABELS.items())),
        "annotations": (
            ("description", "CPU usage on prod-db-01 is 92.5% (threshold 85%)"),
            ("summary", "High CPU usage on prod-db-01"),
        ),
        "runbook_url": "https://runbooks.example.com/high-cpu",
        "dashboard_url": "https://grafana.example.com/d/db?var-instance=prod-db-01",
        "fire_count": 1,
        "message_id": "msg-firing-1",
        "notify": NotifyReason.FIRST,
    }
    fields.update(overrides)
    return AlertEvent(**fields)


def instance_labels(instance_id: str) -> tuple[tuple[str, str], ...]:
    return (
        ("database_type", "postgresql"),
        ("environment", "production"),
        ("instance_id", instance_id),
        ("region", "us-east-1"),
    )
