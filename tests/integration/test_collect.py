"""The collector flow against the real local PostgreSQL and Kafka, and into the alerting flow.

Needs `deploy/local/services.sh up` and `source deploy/local/env.sh` (see tests/conftest.py).
Each test writes to its own `test.collect.<random>.{database_type}.{environment}` topics (not
`gds.metrics.*`, which other jobs' patterns would pick up) and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.collectors.base import Target
from connectors.collectors.targets import parse_targets
from connectors.kafka.serde import AvroCodec, decode_json, make_decoder
from connectors.kafka.sink import kafka_sink
from connectors.kafka.source import metric_source
from connectors.kafka.topics import TopicSpec, ensure_topics
from flows.alerting import Outputs
from flows.alerting import build_flow as alerting_flow
from flows.collect import avro_encoder, build_flow
from rules.loader import BUNDLED, load_rules
from rules.metric import Metric
from rules.model import AlertEvent, AlertState

pytestmark = pytest.mark.integration

PG_METRICS = {
    "connection_usage_percent",
    "active_connections",
    "transactions_per_second",
    "cache_hit_ratio",
    "locks",
    "locks_waiting",
    "deadlocks",
    "database_size_bytes",
    "long_running_queries",
    "clock_skew_seconds",
    "up",
    "collector_dropped_series",
}
OS_METRICS = {
    "cpu_usage_percent",
    "memory_usage_percent",
    "disk_usage_percent",
    "load_average_1m",
    "network_receive_bytes_per_second",
    "up",
}


ENV = "it"


@pytest.fixture()
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix, with its postgresql and os metric topics created."""
    prefix = f"test.collect.{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}.postgresql.{ENV}", f"{prefix}.os.{ENV}"]
    ensure_topics(kafka_bootstrap, [TopicSpec(n, partitions=2, retention_ms=3_600_000) for n in names])
    yield prefix
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # held: its futures die with it
    for fut in admin.delete_topics(names).values():
        with contextlib.suppress(Exception):  # cleanup is best effort
            fut.result(timeout=30)


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def targets(pg_dsn: str) -> list[Target]:
    doc = {
        "settings": {"environment": ENV, "interval": "1s", "timeout": "1s"},
        "targets": [
            {"name": "pg", "type": "postgresql", "instance_id": "it-pg", "dsn": "${IT_PG_DSN}"},
            {"name": "host", "type": "os", "instance_id": "it-host", "mounts": ["/"]},
            {
                "name": "pg-down",
                "type": "postgresql",
                "instance_id": "it-pg-down",
                "dsn": f"postgresql://gds:hunter22@127.0.0.1:{free_port()}/gds",
            },
        ],
    }
    return list(parse_targets(doc, {"IT_PG_DSN": pg_dsn}).targets)


def topic_of(prefix: str) -> Callable[[str, str], str]:
    return lambda database_type, environment: f"{prefix}.{database_type}.{environment}"


def consume(bootstrap: str, prefix: str) -> list[KafkaSourceMessage]:
    """Everything in the prefix's metric topics, read to their current end."""
    out: list[KafkaSourceMessage] = []
    source = metric_source(bootstrap, "^" + re.escape(prefix + "."), tail=False)
    flow = Dataflow("consume")
    stream: Any = op.input("in", flow, source)
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    return out


def minute_clock(start: float) -> Callable[[], float]:
    """One call per poll, each a minute after the previous one."""
    ticks = itertools.count()
    return lambda: start + 60.0 * next(ticks)


@contextlib.contextmanager
def query_load(dsn: str) -> Iterator[None]:
    """Keep a backend reading buffers, so block counters move between polls (an idle
    server has no block reads, hence no `cache_hit_ratio`)."""
    stop = threading.Event()

    async def load() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while not stop.is_set():
                await conn.fetchval("SELECT sum(relpages) FROM pg_class")
                await asyncio.sleep(0.05)  # idle gaps let the backend flush its statistics
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(load(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def test_collector_produces_to_kafka_and_a_down_target_reports_up_zero(
    kafka_bootstrap: str, pg_dsn: str, prefix: str
) -> None:
    sink = kafka_sink(kafka_bootstrap, None)
    flow = build_flow(targets(pg_dsn), sink, topic_of=topic_of(prefix), polls=3)
    with query_load(pg_dsn):
        run_main(flow)
    msgs = consume(kafka_bootstrap, prefix)
    metrics: list[tuple[KafkaSourceMessage, Metric]] = [
        (m, decode_json(m.value, math.inf)) for m in msgs if m.value is not None
    ]
    assert len(metrics) == len(msgs)
    for msg, metric in metrics:
        assert msg.key == metric.instance_id.encode()
        assert msg.topic == f"{prefix}.{metric.database_type}.{ENV}"
        assert isinstance(metric.value, float) and math.isfinite(metric.value)
        assert metric.tags["environment"] == ENV

    def names(instance: str) -> set[str]:
        return {m.metric_name for _, m in metrics if m.instance_id == instance}

    assert names("it-pg") >= PG_METRICS
    assert names("it-host") >= OS_METRICS
    pg = [m for _, m in metrics if m.instance_id == "it-pg"]
    usage = [m.value for m in pg if m.metric_name == "connection_usage_percent"]
    assert len(usage) == 3 and all(0 < u <= 100 for u in usage)
    assert all(0 <= m.value <= 1 for m in pg if m.metric_name == "cache_hit_ratio")
    assert {m.tags["database"] for m in pg if m.metric_name == "database_size_bytes"} >= {"gds"}
    assert {m.tags["mode"] for m in pg if m.metric_name == "locks"} >= {"AccessShareLock"}
    assert [m.value for m in pg if m.metric_name == "up"] == [1.0, 1.0, 1.0]
    down = [m for _, m in metrics if m.instance_id == "it-pg-down"]
    assert [(m.metric_name, m.value, m.tags["error"]) for m in down] == [
        ("up", 0.0, "ConnectionRefusedError")
    ] * 3
    assert not any(b"hunter22" in (msg.value or b"") for msg, _ in metrics)


def test_avro_output_decodes_with_the_registry(
    kafka_bootstrap: str, pg_dsn: str, prefix: str, schema_registry_url: str
) -> None:
    registry = SchemaRegistryClient.new_client({"url": schema_registry_url})
    codec = AvroCodec(registry)
    only_pg = targets(pg_dsn)[:1]
    sink = kafka_sink(kafka_bootstrap, None)
    run_main(build_flow(only_pg, sink, encode=avro_encoder(codec), topic_of=topic_of(prefix), polls=1))
    msgs = consume(kafka_bootstrap, prefix)
    assert msgs and all(m.value is not None and m.value[0] == 0 for m in msgs)  # Confluent framing
    decoded = [codec.decode(m.value, math.inf) for m in msgs if m.value is not None]
    assert {m.metric_name for m in decoded} >= {"connection_usage_percent", "up"}
    assert {m.instance_id for m in decoded} == {"it-pg"}


async def _fill_connections(dsn: str, share: float) -> list[Any]:
    """Open connections until client backends reach `share` of max_connections."""
    probe = await asyncpg.connect(dsn)
    conns: list[Any] = [probe]
    try:
        max_conn = int(await probe.fetchval("SHOW max_connections"))
        want = math.ceil(share * max_conn)
        sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        for _ in range(3):  # others may connect or leave meanwhile: top up, a few rounds at most
            missing = want - int(await probe.fetchval(sql))
            if missing <= 0:
                break
            conns += await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(missing)))
    except BaseException:
        await _close_all(conns)
        raise
    return conns


async def _close_all(conns: list[Any]) -> None:
    await asyncio.gather(*(c.close(timeout=10) for c in conns), return_exceptions=True)


def test_saturated_connections_fire_the_bundled_connection_saturation_rule(
    kafka_bootstrap: str, pg_dsn: str, prefix: str
) -> None:
    pg = replace(targets(pg_dsn)[0], instance_id=f"it-pg-{uuid.uuid4().hex[:8]}")
    start = (1_736_937_000 // 60) * 60 + 1.0  # a past minute: event time drives the rules
    loop = asyncio.new_event_loop()
    try:
        conns = loop.run_until_complete(_fill_connections(pg_dsn, 0.90))
        try:
            # 5 polls one (fake) minute apart: pending, then firing once `for: 2m` has elapsed
            sink = kafka_sink(kafka_bootstrap, None)
            clock = minute_clock(start)
            run_main(build_flow([pg], sink, clock, topic_of=topic_of(prefix), polls=5))
        finally:
            loop.run_until_complete(_close_all(conns))
    finally:
        loop.close()

    produced = consume(kafka_bootstrap, prefix)
    usage = [
        decode_json(m.value, math.inf).value
        for m in produced
        if m.value is not None and b'"connection_usage_percent"' in m.value
    ]
    assert len(usage) == 5 and min(usage) >= 85.0

    alerts: list[AlertEvent] = []
    outputs = Outputs(
        TestingSink(alerts), TestingSink([]), TestingSink([]), lambda e: e, lambda e: e, lambda p: p
    )
    flow = alerting_flow(
        load_rules([BUNDLED]),
        TestingSource(produced),
        outputs,
        make_decoder("json", max_future_s=math.inf),
        shards=4,
        wall=None,
        flush_on_eof=True,
    )
    run_main(flow)
    saturation = [
        e for e in alerts if e.alert_name == "ConnectionSaturation" and e.instance_id == pg.instance_id
    ]
    assert [e.state for e in saturation][:2] == [AlertState.PENDING, AlertState.FIRING]
    firing = saturation[1]
    assert firing.value >= 85.0 and firing.fired_at is not None
    assert firing.fired_at - firing.active_at >= 120.0
