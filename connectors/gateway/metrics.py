"""The gateway's own Prometheus registry (served on its GET /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "gds_gateway_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gds_gateway_request_seconds", "HTTP request latency by route.", ["route"], registry=r
        )
        self.accepted = Counter(
            "gds_gateway_samples_accepted",
            "Samples confirmed by Kafka, by endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.rejected = Counter(
            "gds_gateway_samples_rejected", "Samples refused with a per-item error.", ["endpoint"], registry=r
        )
        self.skipped = Counter(
            "gds_gateway_samples_skipped",
            "Prometheus staleness markers (not samples).",
            ["endpoint"],
            registry=r,
        )
        self.unavailable = Counter(
            "gds_gateway_kafka_unavailable",
            "Requests answered 503 because Kafka did not confirm their records (or the spool was full).",
            ["endpoint"],
            registry=r,
        )
        self.producer_renewals = Counter(
            "gds_gateway_producer_renewals",
            "Kafka producers replaced after librdkafka declared the idempotent producer dead (fatal error).",
            registry=r,
        )
        self.spool_found = Counter(
            "gds_gateway_spool_found_in_kafka",
            "Spooled records not sent again: read back from Kafka, where a delivery that had timed out "
            "in flight had written them.",
            registry=r,
        )
        self.spool_full = Counter(
            "gds_gateway_spool_full",
            "Requests answered 503 because Kafka was unreachable and the spool full.",
            ["endpoint"],
            registry=r,
        )
