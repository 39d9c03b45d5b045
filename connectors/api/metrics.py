"""The API's own Prometheus registry (served on its /metrics, apart from the jobs' registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "gds_api_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gds_api_request_seconds", "HTTP request latency by route.", ["route"], registry=r
        )
        self.events_applied = Counter(
            "gds_api_control_events_applied",
            "Control events folded into the API's state, by kind.",
            ["kind"],
            registry=r,
        )
        self.events_unreadable = Counter(
            "gds_api_control_events_unreadable",
            "Control topic records that could not be decoded.",
            registry=r,
        )
        self.writes = Counter("gds_api_writes", "Writes done, by action.", ["action"], registry=r)
        self.audit_failures = Counter(
            "gds_api_audit_failures", "Audit inserts that failed (retried).", registry=r
        )
        self.audit_backlog = Gauge("gds_api_audit_backlog", "Audit rows waiting to be inserted.", registry=r)
