"""Confluent-framed Avro against a real schema registry: Apicurio Registry 3.3.3 through its
Confluent-compatible API (deploy/local/apicurio.sh, $SCHEMA_REGISTRY_URL).

Each test uses its own topics, hence its own `<topic>-value` subject. Schema ids are always read
from the registry: Apicurio numbers them itself, and the session's other tests register too.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.errors import ConnectorError
from connectors.kafka.serde import AvroCodec, load_schema, make_decoder
from connectors.kafka.sink import kafka_sink
from connectors.kafka.source import metric_source
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.storage.timescale import AlertEventsSink, MetricsHotSink, PgConfig
from flows import storage
from flows.collect import avro_encoder
from flows.collect import build_flow as collect_flow
from rules.metric import Metric
from tests.integration.test_collect import ENV, targets, topic_of
from tests.integration.test_storage_flow import pg
from tests.support.data import consume_all
from tests.support.jobs import stop
from tests.support.live_job import AlertsTail, live_env, start_job

pytestmark = pytest.mark.integration

V1 = load_schema("metric.avsc")
V2 = load_schema("metric.v2.avsc")


def registry(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def serializer(client: SchemaRegistryClient, schema: str, subject: str, *, register: bool) -> AvroSerializer:
    """confluent-kafka's own Avro producer side, writing under `subject`."""
    conf = {"auto.register.schemas": register, "subject.name.strategy": lambda _ctx, _rec: subject}
    return AvroSerializer(client, schema, conf=conf)


def record(ts: float, instance: str, metric: str, value: float, **extra: Any) -> dict[str, Any]:
    base = {
        "timestamp": round(ts * 1000),
        "database_type": "postgresql",
        "instance_id": instance,
        "metric_name": metric,
        "value": value,
        "tags": {"environment": "test"},
    }
    return {**base, **extra}


def schema_id(frame: bytes) -> int:
    magic, sid = struct.unpack(">bI", frame[:5])
    assert magic == 0
    return int(sid)


# --------------------------------------------------------------------------- the ccompat API


def test_backward_compatibility_v1_then_v2_and_both_decode(
    kafka_bootstrap: str, schema_registry_url: str, topic_factory: Any
) -> None:
    topic = topic_factory("avro", 1)
    subject = f"{topic}-value"
    client = registry(schema_registry_url)
    client.set_compatibility(subject, "BACKWARD")
    id1 = client.register_schema(subject, Schema(V1, "AVRO"))
    id2 = client.register_schema(subject, Schema(V2, "AVRO"))
    assert id1 != id2
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1, 2]
    assert client.get_compatibility(subject) == "BACKWARD"
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, id2)
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).schema_id == id1

    # old and new producers side by side, neither allowed to register: they look their schema up
    now = time.time()
    old = serializer(client, V1, subject, register=False)
    new = serializer(client, V2, subject, register=False)
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1_msg = old(record(now, "db-1", "cpu_usage_percent", 41.0), ctx)
    v2_msg = new(record(now, "db-2", "cpu_usage_percent", 42.0, unit="percent", metadata={"c": "1"}), ctx)
    assert v1_msg is not None and v2_msg is not None
    assert (schema_id(v1_msg), schema_id(v2_msg)) == (id1, id2)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    p.produce(topic, v1_msg, b"db-1")
    p.produce(topic, v2_msg, b"db-2")
    assert p.flush(30) == 0

    decode = make_decoder("avro", schema_registry_url)
    got = [decode(m.value(), now) for m in consume_all(kafka_bootstrap, topic, 2)]
    assert sorted(got) == [
        Metric(
            round(now * 1000) / 1000, "postgresql", "db-1", "cpu_usage_percent", 41.0, {"environment": "test"}
        ),
        Metric(
            round(now * 1000) / 1000, "postgresql", "db-2", "cpu_usage_percent", 42.0, {"environment": "test"}
        ),
    ]


def test_an_incompatible_schema_is_rejected_and_the_producer_reports_it(
    schema_registry_url: str, topic_factory: Any
) -> None:
    subject = f"{topic_factory('avro', 1)}-value"
    client = registry(schema_registry_url)
    client.set_compatibility(subject, "BACKWARD")
    client.register_schema(subject, Schema(V1, "AVRO"))
    # a new required field without a default: v3 readers could not read v1 data
    bad = json.loads(V1)
    bad["fields"].append({"name": "owner", "type": "string"})
    bad_text = json.dumps(bad)
    assert client.test_compatibility(subject, Schema(bad_text, "AVRO")) is False

    ser = serializer(client, bad_text, subject, register=True)
    with pytest.raises(SchemaRegistryError) as err:
        ser({**record(time.time(), "db-1", "cpu_usage_percent", 1.0), "owner": "x"}, None)
    assert err.value.http_status_code == 409

    # the project's producer side (collector, gateway) says which subject refused what
    codec = AvroCodec(SchemaRegistryClient.new_client({"url": schema_registry_url}), writer_schema=bad_text)
    with pytest.raises(ConnectorError, match=re.escape(f"schema registry refused subject {subject!r}")):
        codec.encode(Metric(time.time(), "postgresql", "db-1", "cpu_usage_percent", 1.0, {}), subject)
    assert client.get_versions(subject) == [1]  # nothing registered


# --------------------------------------------------------------------------- jobs

RULES = """
settings: {evaluation_interval: 1s, allowed_lateness: 2s, staleness: 15s}
alert_rules:
  - name: HotCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 80, duration: 0s, aggregation: avg}
    window: 2s
    severity: critical
    repeat_interval: 1h
"""


def test_avro_producer_fires_an_alert_in_the_alerting_job(
    kafka_bootstrap: str, schema_registry_url: str, topic_factory: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    env = live_env(
        kafka_bootstrap,
        topic_factory,
        rules,
        INPUT_FORMAT="avro",
        SCHEMA_REGISTRY_URL=schema_registry_url,
    )
    topic = env["METRIC_TOPICS"]
    # a v1 producer registering its own schema, as an existing team's service would
    ser = serializer(registry(schema_registry_url), V1, f"{topic}-value", register=True)
    ctx = SerializationContext(topic, MessageField.VALUE)
    stop_sending = threading.Event()

    def send() -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        while not stop_sending.is_set():
            p.produce(topic, ser(record(time.time(), "db-avro", "cpu_usage_percent", 95.0), ctx), b"db-avro")
            p.poll(0)
            stop_sending.wait(0.5)
        p.flush(30)

    log = tmp_path / "job.log"
    job = start_job(env, log)
    sender = threading.Thread(target=send, daemon=True)
    tail = AlertsTail(kafka_bootstrap, env["ALERTS_TOPIC"])
    try:
        sender.start()
        fired = tail.wait_for(lambda r: r["state"] == "firing" and r["notify"] == "first", job, log)
    finally:
        stop_sending.set()
        sender.join(10)
        tail.close()
        stop(job)
    assert fired["alert_name"] == "HotCPU"
    assert fired["labels"]["instance_id"] == "db-avro"
    assert consume_all(kafka_bootstrap, env["DLQ_TOPIC"], 0) == []  # every Avro message decoded


@pytest.fixture()
def pg_schema(pg_dsn: str) -> Iterator[str]:
    name = f"test_avro_{uuid.uuid4().hex[:10]}"
    yield name
    pg(pg_dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_collector_avro_output_is_stored_by_the_storage_flow(
    kafka_bootstrap: str, pg_dsn: str, schema_registry_url: str, pg_schema: str
) -> None:
    prefix = f"test.avro{uuid.uuid4().hex[:8]}"
    pg_topic = f"{prefix}.postgresql.{ENV}"
    ensure_topics(kafka_bootstrap, [TopicSpec(pg_topic, partitions=1, retention_ms=3_600_000)])
    try:
        # the collector job's encoder as OUTPUT_FORMAT=avro builds it: from the registry URL
        sink = kafka_sink(kafka_bootstrap, None)
        run_main(
            collect_flow(
                targets(pg_dsn)[:1],
                sink,
                encode=avro_encoder(schema_registry_url),
                topic_of=topic_of(prefix),
                polls=1,
            )
        )
        versions = registry(schema_registry_url).get_versions(f"{pg_topic}-value")
        assert versions == [1]

        cfg = PgConfig(pg_dsn, schema=pg_schema, batch_rows=500)
        dlq: list[Any] = []
        outputs = storage.StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink(dlq))
        source = metric_source(kafka_bootstrap, [pg_topic], tail=False)
        run_main(storage.build_flow(source, outputs, make_decoder("avro", schema_registry_url), wall=None))
    finally:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # held: its futures die with it
        for fut in admin.delete_topics([pg_topic]).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                fut.result(timeout=30)
    assert dlq == []
    rows = pg(pg_dsn, f'SELECT instance_id, metric_name, value FROM "{pg_schema}".metrics_hot')
    names = {r["metric_name"] for r in rows if r["instance_id"] == "it-pg"}
    assert {"connection_usage_percent", "up", "database_size_bytes"} <= names
    assert [r["value"] for r in rows if r["metric_name"] == "up"] == [1.0]
    assert all(math.isfinite(r["value"]) for r in rows)


def test_gateway_avro_output_fires_an_alert_in_the_alerting_job(
    kafka_bootstrap: str, schema_registry_url: str, topic_factory: Any, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import urllib.request

    from tests.integration.test_collect import free_port

    environment = f"avro{uuid.uuid4().hex[:8]}"
    topic = f"gds.metrics.postgresql.{environment}"  # the gateway's topic for these samples
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=1, retention_ms=3_600_000)])
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    env = live_env(
        kafka_bootstrap, topic_factory, rules, INPUT_FORMAT="avro", SCHEMA_REGISTRY_URL=schema_registry_url
    )
    env["METRIC_TOPICS"] = topic
    port = free_port()
    gw_env = {**env, "GATEWAY_PORT": str(port), "GATEWAY_OUTPUT_FORMAT": "avro", "GATEWAY_TOKENS": ""}
    gw_env["SPOOL_DIR"] = str(tmp_path / "spool")  # a gateway locks its spool
    gw_log, log = tmp_path / "gateway.log", tmp_path / "job.log"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "connectors.gateway"],
        env=gw_env,
        stdout=gw_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    job = start_job(env, log)
    stop_sending = threading.Event()
    accepted: list[int] = []

    def send() -> None:
        while not stop_sending.is_set():
            body = [
                {
                    "metric_name": "cpu_usage_percent",
                    "timestamp": time.time(),
                    "value": 95.0,
                    "labels": {
                        "instance": "db-gw",
                        "database_type": "postgresql",
                        "environment": environment,
                    },
                }
            ]
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/metrics/batch",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            # the gateway may still be starting
            with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=5) as resp:
                accepted.append(resp.status)
            stop_sending.wait(0.5)

    sender = threading.Thread(target=send, daemon=True)
    tail = AlertsTail(kafka_bootstrap, env["ALERTS_TOPIC"])
    try:
        sender.start()
        fired = tail.wait_for(lambda r: r["state"] == "firing" and r["notify"] == "first", job, log)
    finally:
        stop_sending.set()
        sender.join(10)
        tail.close()
        stop(job)
        stop(gateway)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for fut in admin.delete_topics([topic]).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                fut.result(timeout=30)
    assert accepted and set(accepted) <= {200, 202, 204}, gw_log.read_text()[-3000:]
    assert (fired["alert_name"], fired["labels"]["instance_id"]) == ("HotCPU", "db-gw")
    assert registry(schema_registry_url).get_versions(f"{topic}-value") == [1]  # the gateway registered v2
    assert consume_all(kafka_bootstrap, env["DLQ_TOPIC"], 0) == []
