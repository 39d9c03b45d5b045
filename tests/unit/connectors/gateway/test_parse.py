"""Each format -> seed records, every bad item refused with its own error, the valid ones kept."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from connectors.errors import PoisonMessage
from connectors.gateway import otlp, remote_write
from connectors.gateway.parse import Defaults, json_items
from connectors.gateway.prometheus.remote_pb2 import WriteRequest

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
D = Defaults(environment="staging", database_type="os")


# -- seed JSON ------------------------------------------------------------------------------


def test_the_guides_labels_form_and_the_seed_message_both_map_to_records() -> None:
    parsed = json_items(
        [
            {
                "metric_name": "cpu_usage_percent",
                "timestamp": "2025-12-31T23:59:00Z",
                "value": 85.5,
                "labels": {"instance": "db-1", "database_type": "postgresql", "region": "eu"},
            },
            {
                "timestamp": NOW - 60,
                "database_type": "mysql",
                "instance_id": "db-2",
                "metric_name": "qps",
                "value": 3,
                "tags": {"environment": "production"},
                "metadata": {"source": "x"},
            },
        ],
        NOW,
        D,
        batch=True,
    )
    assert parsed.errors == ()
    a, b = parsed.records
    assert (a.topic, a.key) == ("gds.metrics.postgresql.staging", "db-1")
    assert a.metric.tags == {"region": "eu", "environment": "staging"}
    assert a.metric.ts == NOW - 60
    assert (b.topic, b.key, b.metric.value) == ("gds.metrics.mysql.production", "db-2", 3.0)


def test_bad_items_get_their_own_error_and_the_good_ones_stay() -> None:
    good = {"metric_name": "up", "value": 1, "labels": {"instance": "a"}}
    parsed = json_items(
        {
            "metrics": [
                good,
                {"metric_name": "up", "value": 1, "labels": {}},
                {"metric_name": "up", "value": "high", "labels": {"instance": "a"}},
                {"metric_name": "up", "value": 1, "timestamp": NOW + 3600, "labels": {"instance": "a"}},
                {"database_type": "os", "instance_id": "b", "value": 1, "timestamp": NOW},
                {"metric_name": "up", "value": 1, "labels": {"instance": "a", "environment": "prod/eu"}},
                7,
            ]
        },
        NOW,
        D,
        batch=True,
    )
    assert [r.key for r in parsed.records] == ["a"]
    assert parsed.records[0].metric.ts == NOW  # no timestamp: when the gateway received it
    errors = {e.item: e.error for e in parsed.errors}
    assert list(errors) == ["item 1", "item 2", "item 3", "item 4", "item 5", "item 6"]
    assert "no `instance` label" in errors["item 1"]
    assert "value" in errors["item 2"]
    assert "in the future" in errors["item 3"]
    assert "missing field(s): metric_name" in errors["item 4"]
    assert "cannot be part of a topic name" in errors["item 5"]
    assert "expected a JSON object" in errors["item 6"]


def test_a_batch_must_be_a_list() -> None:
    with pytest.raises(PoisonMessage, match="JSON list"):
        json_items({"metric_name": "up"}, NOW, D, batch=True)


# -- remote_write ---------------------------------------------------------------------------


def write_request(*series: tuple[dict[str, str], list[tuple[float, int]]]) -> WriteRequest:
    wr = WriteRequest()
    for labels, samples in series:
        ts = wr.timeseries.add()
        for k, v in labels.items():
            label = ts.labels.add()
            label.name, label.value = k, v
        for value, t_ms in samples:
            s = ts.samples.add()
            s.value, s.timestamp = value, t_ms
    return wr


STALE = struct.unpack("<d", struct.pack("<Q", remote_write.STALE_NAN))[0]


def test_remote_write_maps_prometheus_labels_and_refuses_bad_samples_by_series_and_index() -> None:
    t = int(NOW * 1000)
    wr = write_request(
        (
            {"__name__": "pg_up", "instance": "pg:9187", "job": "pg", "database_type": "postgresql"},
            [(1.0, t - 1000), (math.nan, t), (STALE, t)],
        ),
        ({"__name__": "node_load1", "job": "node"}, [(0.5, t)]),
        ({"instance": "x"}, [(1.0, t)]),
    )
    raw = remote_write.decompress(bytes(cramjam.snappy.compress_raw(wr.SerializeToString())), 1 << 20)
    parsed = remote_write.samples(remote_write.decode(raw), NOW, D)
    (rec,) = parsed.records
    assert (rec.topic, rec.key, rec.metric.metric_name) == (
        "gds.metrics.postgresql.staging",
        "pg:9187",
        "pg_up",
    )
    assert rec.metric.tags == {"job": "pg", "environment": "staging"}
    assert rec.metric.ts == NOW - 1
    assert parsed.skipped == 1  # the staleness marker: no sample, no error
    assert [e.text() for e in parsed.errors] == [
        'series 0 pg_up{instance="pg:9187",job="pg",database_type="postgresql"} sample 1: '
        "value is nan (NaN/Infinity are not allowed)",
        'series 1 node_load1{job="node"} sample 0: '
        "no `instance` label (it becomes the instance_id and the Kafka key)",
        'series 2 {instance="x"}: no `__name__` label (the metric name)',
    ]


def test_remote_write_refuses_unreadable_bodies_and_oversized_ones_before_decompressing() -> None:
    with pytest.raises(remote_write.BadRequestError, match="snappy"):
        remote_write.decompress(b"\xff\xff\xff\xff\xff\x00garbage", 1 << 20)
    with pytest.raises(remote_write.BadRequestError, match="WriteRequest"):
        remote_write.decode(b"\x0a\xff\xff")
    big = bytes(cramjam.snappy.compress_raw(b"\0" * 5000))
    with pytest.raises(remote_write.TooLargeError, match="5000 bytes"):
        remote_write.decompress(big, 4096)


# -- OTLP -----------------------------------------------------------------------------------


def otlp_request(metrics: list[dict[str, object]]) -> ExportMetricsServiceRequest:
    attrs = [
        {"key": "service.instance.id", "value": {"stringValue": "app-1"}},
        {"key": "service.name", "value": {"stringValue": "checkout"}},
    ]
    body = {"resourceMetrics": [{"resource": {"attributes": attrs}, "scopeMetrics": [{"metrics": metrics}]}]}
    return json_format.ParseDict(body, ExportMetricsServiceRequest())


def test_otlp_gauges_sums_and_histograms_become_prometheus_series() -> None:
    ns = str(int((NOW - 5) * 1e9))
    point = {"timeUnixNano": ns, "attributes": [{"key": "pool.name", "value": {"stringValue": "main"}}]}
    req = otlp_request(
        [
            {"name": "db.connections", "gauge": {"dataPoints": [{**point, "asInt": "7"}]}},
            {"name": "requests", "sum": {"dataPoints": [{**point, "asDouble": 12.5}], "isMonotonic": True}},
            {
                "name": "latency",
                "histogram": {
                    "dataPoints": [
                        {
                            **point,
                            "count": "6",
                            "sum": 3.5,
                            "explicitBounds": [0.1, 1],
                            "bucketCounts": ["1", "4", "1"],
                        }
                    ]
                },
            },
        ]
    )
    parsed = otlp.samples(req, NOW, D)
    assert parsed.errors == ()
    got = [(r.metric.metric_name, r.metric.tags.get("le"), r.metric.value) for r in parsed.records]
    assert got == [
        ("db_connections", None, 7.0),
        ("requests", None, 12.5),
        ("latency_bucket", "0.1", 1.0),
        ("latency_bucket", "1", 5.0),
        ("latency_bucket", "+Inf", 6.0),
        ("latency_sum", None, 3.5),
        ("latency_count", None, 6.0),
    ]
    first = parsed.records[0]
    assert (first.key, first.topic, first.metric.ts) == ("app-1", "gds.metrics.os.staging", NOW - 5)
    assert first.metric.tags == {"pool_name": "main", "job": "checkout", "environment": "staging"}


def test_otlp_refuses_bad_points_with_a_partial_success_naming_them() -> None:
    ns = str(int(NOW * 1e9))
    req = otlp_request(
        [
            {"name": "ok", "gauge": {"dataPoints": [{"timeUnixNano": ns, "asDouble": 1}]}},
            {"name": "nan", "gauge": {"dataPoints": [{"timeUnixNano": ns, "asDouble": "NaN"}]}},
            {"name": "s", "summary": {"dataPoints": [{"timeUnixNano": ns, "count": "1"}]}},
            {
                "name": "h",
                "histogram": {
                    "dataPoints": [{"timeUnixNano": ns, "explicitBounds": [1], "bucketCounts": ["1"]}]
                },
            },
        ]
    )
    parsed = otlp.samples(req, NOW, D)
    assert [r.metric.metric_name for r in parsed.records] == ["ok"]
    texts = [e.text() for e in parsed.errors]
    assert texts[0].startswith("resource 0 scope 0 metric 1 'nan' point 0: value is nan")
    assert texts[1].startswith("resource 0 scope 0 metric 2 's': summary: not supported")
    assert "1 bucket_counts for 1 explicit_bounds" in texts[2]
    answer = ExportMetricsServiceResponse.FromString(otlp.response(parsed, otlp.PROTOBUF))
    assert answer.partial_success.rejected_data_points == 3
    assert "metric 2 's'" in answer.partial_success.error_message
    as_json = json_format.Parse(otlp.response(parsed, otlp.JSON), ExportMetricsServiceResponse())
    assert as_json == answer


def test_otlp_refuses_a_body_that_is_not_a_request() -> None:
    with pytest.raises(remote_write.BadRequestError, match="ExportMetricsServiceRequest"):
        otlp.decode(b"{not json", otlp.JSON)
