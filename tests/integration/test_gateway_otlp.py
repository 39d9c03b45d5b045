"""The OpenTelemetry Python SDK's own OTLP/HTTP exporter (protobuf) pushes a gauge and a histogram
to the gateway's /v1/metrics; the seed messages on Kafka carry them: the gauge as one sample, the
histogram as Prometheus' cumulative `le` buckets with `_sum` and `_count`, keyed by the instance
(the resource's `service.instance.id`) on `gds.metrics.{db.system}.{deployment.environment.name}`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.support.gateway_job import TopicTail, free_port, start_gateway
from tests.support.jobs import stop

pytestmark = pytest.mark.integration

BOUNDS = [10.0, 100.0, 1000.0]
DURATIONS_MS = [5.0, 30.0, 70.0, 700.0, 5000.0]  # le 10: 1, le 100: 3, le 1000: 4, +Inf: 5


@pytest.fixture()
def environment(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh environment, so the test reads a metric topic of its own (created up front, deleted after)."""
    env = f"otel_{uuid.uuid4().hex[:10]}"
    topic = f"gds.metrics.postgresql.{env}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    yield env
    for fut in admin.delete_topics([topic]).values():
        with contextlib.suppress(Exception):  # cleanup is best effort
            fut.result(timeout=30)


def test_the_otel_sdk_pushes_a_gauge_and_a_histogram_through_the_gateway(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "gateway.log"
    gateway = start_gateway(port, log, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{port}/v1/metrics", timeout=10)
    # no periodic export during the test: force_flush is the one push, and says whether it succeeded
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.instance.id": "checkout-db-client-1",
            "deployment.environment.name": environment,
            "db.system": "postgresql",
        }
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    tail = TopicTail(kafka_bootstrap, f"gds.metrics.postgresql.{environment}")
    try:
        meter = provider.get_meter("tests.gateway")
        gauge = meter.create_gauge("db.pool.connections.active", unit="1")
        gauge.set(17, {"pool": "main"})
        histogram = meter.create_histogram(
            "db.query.duration", unit="ms", explicit_bucket_boundaries_advisory=BOUNDS
        )
        for d in DURATIONS_MS:
            histogram.record(d, {"query": "select"})
        assert provider.force_flush(timeout_millis=30_000), log.read_text(errors="replace")[-3000:]

        def complete(values: list[dict[str, Any]]) -> bool:
            names = {v["metric_name"] for v in values}
            buckets = [v for v in values if v["metric_name"] == "db_query_duration_bucket"]
            return {
                "db_pool_connections_active",
                "db_query_duration_sum",
                "db_query_duration_count",
            } <= names and (len(buckets) == len(BOUNDS) + 1)

        values = tail.wait_for(complete, "the gauge and every part of the histogram")
        keys = {k for k, _ in tail.records}
        assert keys == {b"checkout-db-client-1"}  # keyed by instance_id
        for v in values:
            assert (v["instance_id"], v["database_type"]) == ("checkout-db-client-1", "postgresql")
            assert v["tags"]["environment"] == environment and v["tags"]["job"] == "checkout"

        [active] = [v for v in values if v["metric_name"] == "db_pool_connections_active"]
        assert active["value"] == 17 and active["tags"]["pool"] == "main"

        by_name = {v["metric_name"]: v for v in values}
        assert by_name["db_query_duration_count"]["value"] == len(DURATIONS_MS)
        assert by_name["db_query_duration_sum"]["value"] == sum(DURATIONS_MS)
        buckets = {
            float(v["tags"]["le"]): v["value"]
            for v in values
            if v["metric_name"] == "db_query_duration_bucket"
        }
        assert buckets == {10.0: 1, 100.0: 3, 1000.0: 4, float("inf"): 5}  # cumulative, as Prometheus' le
        assert all(v["tags"]["query"] == "select" for v in values if v["metric_name"].startswith("db_query"))
        # one timestamp for all parts of the histogram point, as one scrape of a Prometheus histogram
        assert len({v["timestamp"] for v in values if v["metric_name"].startswith("db_query")}) == 1
    finally:
        provider.shutdown()
        tail.close()
        stop(gateway)
