"""Generated metric messages with known incidents, shared by the Kafka-level tests."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

T0 = 1_736_935_200  # 2025-01-15T10:00:00Z


def incident_rows(instances: int = 24, minutes: int = 40, t0: int = T0) -> list[dict[str, Any]]:
    """Each instance has one CPU incident of 9-14 minutes at a staggered start (fires + resolves)."""
    out = []
    for step in range(minutes * 4):
        ts = t0 + step * 15
        minute = step / 4
        stamp = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
        for k in range(instances):
            start = 5 + k % 7
            hot = start <= minute < start + 9 + k % 6
            out.append({
                "timestamp": stamp, "database_type": "postgresql", "instance_id": f"db-{k:02d}",
                "metric_name": "cpu_usage_percent", "value": 88.0 + k % 5 if hot else 30.0 + k % 9,
                "tags": {"environment": "production", "region": "eu-west-1"},
            })  # fmt: skip
    return out


def produce(bootstrap: str, topic: str, rows: list[dict[str, Any]]) -> None:
    """Keyed by instance_id, as the collectors produce."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for r in rows:
        p.produce(topic, json.dumps(r).encode(), r["instance_id"].encode())
    assert p.flush(30) == 0


def write_jsonl(path: Any, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def consume_all(bootstrap: str, topic: str, expect_at_least: int) -> list[Any]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got: list[Any] = []
    idle = 0
    while idle < 6 and (len(got) < expect_at_least or idle < 2):
        msg = c.poll(1.0)
        if msg is None:
            idle += 1
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    c.close()
    return got


def record_count(bootstrap: str, topic: str) -> int:
    """Records in a topic: end minus start offsets over its partitions (exact, and no
    consumer-group join to wait for)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{time.monotonic_ns()}"})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        total = 0
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        return total
    finally:
        c.close()
