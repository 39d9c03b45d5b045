"""Kafka source, decoding, DLQ and sink against the real local broker.

Needs `deploy/local/services.sh up` and `source deploy/local/env.sh` (see tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.errors import ConnectorError, PoisonMessage
from connectors.kafka.dlq import (
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    DeadLetter,
    dead_letter_from,
    parse_dead_letter,
)
from connectors.kafka.message import SourceMessage
from connectors.kafka.serde import AvroCodec, decode_any, encode_json
from connectors.kafka.sink import kafka_sink
from connectors.kafka.source import metric_source, resolve_topics
from connectors.kafka.topics import TopicSpec, ensure_topics, partition_counts
from rules.metric import Metric

pytestmark = pytest.mark.integration

T0 = 1736937000.0
NOW = T0 + 3600.0
DEADLINE_S = 60.0  # an upper bound for the broker to answer, not a timing assertion


def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order; return each one's (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    where: dict[int, tuple[int, int]] = {}

    def delivered(i: int, err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        where[i] = (partition, offset)

    for i, (key, value) in enumerate(items):
        producer.produce(topic, value=value, key=key, on_delivery=partial(delivered, i))
    assert producer.flush(DEADLINE_S) == 0
    return [where[i] for i in range(len(items))]


def consume_all(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """Read partition 0 of `topic` from the start until `expected` records (or the deadline)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert high == expected, f"{high} records in {topic}, expected {expected}"
    finally:
        consumer.close()
    return got


def header_map(rec: Message) -> dict[str, bytes]:
    raw_headers = rec.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    return {str(k): v for k, v in pairs if isinstance(v, bytes)}


def decode_or_dead_letter(decode: Callable[[bytes, float], Metric]) -> Callable[[Any], Any]:
    def step(msg: KafkaSourceMessage[bytes | None, bytes | None]) -> Metric | KafkaSinkMessage[Any, bytes]:
        try:
            return decode(msg.value, NOW)  # type: ignore[arg-type]
        except PoisonMessage as exc:
            return dead_letter_from(msg, exc.reason, "decode", NOW)

    return step


def test_flow_routes_poison_to_the_dlq_and_passes_good_metrics(
    kafka_bootstrap: str, topic_factory: Callable[..., str], schema_registry_url: str
) -> None:
    metrics_topic = topic_factory("metrics", 2)
    dlq_topic = topic_factory("dlq", 1)
    client = SchemaRegistryClient.new_client({"url": schema_registry_url})
    codec = AvroCodec(client)

    good = [
        Metric(
            T0 + i, "postgresql", f"prod-db-0{i % 3}", "cpu_usage_percent", 50.0 + i, {"region": "us-east-1"}
        )
        for i in range(30)
    ]
    items: list[tuple[bytes | None, bytes | None]] = []
    for i, m in enumerate(good):  # a topic mid-migration: JSON and Avro side by side
        value = codec.encode(m, f"{metrics_topic}-value") if i % 5 == 0 else encode_json(m)
        items.append((m.instance_id.encode(), value))
    # an id the registry never gave out: well above the one it gave the subject just now
    given = client.get_latest_version(f"{metrics_topic}-value").schema_id
    assert given is not None
    unknown = given + 100_000
    nan = json.loads(encode_json(good[0]))
    nan["value"] = float("nan")
    poison: list[tuple[bytes | None, bytes | None, str]] = [
        (b"prod-db-00", b"not json at all", "invalid JSON"),
        (b"prod-db-01", json.dumps(nan).encode(), "NaN/Infinity"),
        (b"prod-db-02", encode_json(good[0]._replace(ts=NOW + 86400)), "in the future"),
        (b"prod-db-00", b"\x00" + unknown.to_bytes(4, "big") + b"\x01\x02", f"unknown schema id {unknown}"),
        (None, b'{"timestamp": "2025-01-15T10:30:00Z"}', "missing field(s): database_type"),
        (b"prod-db-01", None, "empty message"),
    ]
    items[7:7] = [(k, v) for k, v, _ in poison[:3]]
    items += [(k, v) for k, v, _ in poison[3:]]
    where = produce(kafka_bootstrap, metrics_topic, items)
    origin = {v: where[i] for i, (_, v) in enumerate(items)}

    out: list[Metric] = []
    flow = Dataflow("it-dlq")
    src = op.input("in", flow, metric_source([kafka_bootstrap], [metrics_topic], tail=False, batch_size=7))
    decoded = op.map("decode", src, decode_or_dead_letter(partial(decode_any, codec=codec)))
    split = op.branch("split", decoded, lambda x: isinstance(x, Metric))
    op.output("good", split.trues, TestingSink(out))
    op.output("dlq", split.falses, kafka_sink([kafka_bootstrap], dlq_topic))
    run_main(flow)

    assert len(out) == len(good)
    assert sorted(out) == sorted(good)

    records = consume_all(kafka_bootstrap, dlq_topic, expected=len(poison))
    by_raw: dict[bytes | None, tuple[DeadLetter, Message]] = {}
    for rec in records:
        dlq_value = rec.value()
        assert dlq_value is not None
        dl = parse_dead_letter(dlq_value, rec.key())
        by_raw[dl.raw] = (dl, rec)
    assert set(by_raw) == {v for _, v, _ in poison}
    for key, raw, reason in poison:
        dl, rec = by_raw[raw]
        assert reason in dl.error, (raw, dl.error)
        assert dl.stage == "decode"
        assert dl.key == key
        assert (dl.topic, (dl.partition, dl.offset)) == (metrics_topic, origin[raw])
        headers = header_map(rec)
        assert headers[H_TOPIC] == metrics_topic.encode()
        assert (int(headers[H_PARTITION]), int(headers[H_OFFSET])) == origin[raw]
        if raw is not None and raw[:1] != b"\x00":
            assert dl.raw_text == raw.decode()


def test_metric_source_resolves_a_pattern_and_excludes_the_dlq(
    kafka_bootstrap: str, topic_factory: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"pat{uuid.uuid4().hex[:8]}"
    metrics_topic = topic_factory(prefix, 2)
    dlq_topic = topic_factory(prefix, 1)
    pattern = rf"^test\.{prefix}\."
    assert resolve_topics(kafka_bootstrap, pattern, exclude=()) == sorted([metrics_topic, dlq_topic])
    assert resolve_topics([kafka_bootstrap], re.compile(pattern), exclude={dlq_topic}) == [metrics_topic]

    m = Metric(T0, "mysql", "db-1", "qps", 12.0, {})
    produce(kafka_bootstrap, metrics_topic, [(b"db-1", encode_json(m))])
    produce(kafka_bootstrap, dlq_topic, [(b"db-1", b"must not be read")])
    out: list[bytes | None] = []
    flow = Dataflow("it-pattern")
    src = metric_source(kafka_bootstrap, pattern, exclude={dlq_topic}, tail=False, starting_offset="earliest")
    op.output("out", op.map("value", op.input("in", flow, src), source_value), TestingSink(out))
    with caplog.at_level(logging.INFO, logger="connectors.kafka.source"):
        run_main(flow)
    assert out == [encode_json(m)]
    # which partition is read from where: once each, for an operator after a restart or rescale
    assert sorted(r.getMessage() for r in caplog.records if r.name == "connectors.kafka.source") == [
        f"kafka: reading {metrics_topic} partition {n} from its beginning" for n in (0, 1)
    ]


def source_value(item: Any) -> bytes | None:  # the source is typed as bytewax's KafkaSource
    assert isinstance(item, SourceMessage), item  # raise_on_errors=True: no error items
    return item.value


def test_pattern_without_match_is_a_clear_error(kafka_bootstrap: str) -> None:
    with pytest.raises(ConnectorError, match=r"no topic on .* matches the pattern \^test"):
        metric_source([kafka_bootstrap], rf"^test\.nomatch{uuid.uuid4().hex}\.")


def test_ensure_topics_is_idempotent(kafka_bootstrap: str) -> None:
    base = f"test.ensure.{uuid.uuid4().hex[:10]}"
    specs = [
        TopicSpec(f"{base}.metrics", partitions=4, retention_ms=7 * 86_400_000),
        TopicSpec(f"{base}.dlq", partitions=1, retention_ms=14 * 86_400_000),
    ]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        assert ensure_topics(kafka_bootstrap, specs) == [s.name for s in specs]
        assert ensure_topics(kafka_bootstrap, specs) == []
        assert partition_counts(kafka_bootstrap, [s.name for s in specs]) == {
            f"{base}.metrics": 4,
            f"{base}.dlq": 1,
        }
        resource = ConfigResource(ConfigResource.Type.TOPIC, f"{base}.dlq")
        configs = admin.describe_configs([resource])[resource].result(timeout=DEADLINE_S)
        assert configs["retention.ms"].value == str(14 * 86_400_000)
        assert configs["cleanup.policy"].value == "delete"
    finally:
        for fut in admin.delete_topics([s.name for s in specs]).values():
            fut.result(timeout=DEADLINE_S)


def test_kafka_sink_fails_loudly_when_the_broker_refuses_a_message(kafka_bootstrap: str) -> None:
    """Plain KafkaSink would drop it silently; ours stops the flow so the epoch is retried."""
    topic = f"test.small.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": "1024"})
    admin.create_topics([new])[topic].result(timeout=DEADLINE_S)
    try:
        flow = Dataflow("it-refused")
        src = op.input("in", flow, TestingSource([KafkaSinkMessage(b"k", b"x" * 20_000)]))
        op.output("out", src, kafka_sink([kafka_bootstrap], topic, {"compression.type": "none"}))
        with pytest.raises(Exception) as info:
            run_main(flow)
        chain = []
        exc: BaseException | None = info.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__
        assert any(f"delivery to {topic}" in text for text in chain), chain
    finally:
        for fut in admin.delete_topics([topic]).values():
            fut.result(timeout=DEADLINE_S)
