"""The documented way to load the bundled sample into Kafka (README "Load the sample into Kafka").

`python -m connectors.kafka.load_sample` against the real broker: every line of the sample lands on
its `gds.metrics.{database_type}.{environment}` topic (the missing `gds.metrics.mysql.staging`
once failed 900 of its 3780 lines), keyed by instance_id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.load_sample import (
    DEFAULT_SAMPLE,
    Routed,
    Unroutable,
    read_lines,
    route_line,
    topic_specs,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the high watermarks per topic (0 for a topic that does not exist yet)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"offsets-{uuid.uuid4().hex}"})
    try:
        md = c.list_topics(timeout=10).topics
        out = {}
        for t in topics:
            parts = md[t].partitions if t in md and md[t].error is None else {}
            out[t] = sum(c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for p in parts)
        return out
    finally:
        c.close()


def expected_per_topic() -> Counter[str]:
    lines = list(read_lines(DEFAULT_SAMPLE))
    assert all(isinstance(x, Routed) for x in lines)
    return Counter(x.topic for x in lines if isinstance(x, Routed))


def test_every_line_of_the_sample_lands_on_its_topic(kafka_bootstrap: str) -> None:
    want = expected_per_topic()
    assert sum(want.values()) == 3780
    assert want["gds.metrics.mysql.staging"] == 900  # the topic the broker did not have
    before = end_offsets(kafka_bootstrap, sorted(want))
    done = subprocess.run(
        [sys.executable, "-m", "connectors.kafka.load_sample"],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert "total  produced=3780 failed=0" in out
    for topic, n in want.items():
        assert f"{topic}  produced={n} failed=0" in out
    after = end_offsets(kafka_bootstrap, sorted(want))
    assert {t: after[t] - before[t] for t in want} == dict(want)


def test_one_instance_per_key_and_lines_unchanged(kafka_bootstrap: str) -> None:
    """Keyed by instance_id (so one instance stays on one partition, in order) and byte-identical."""
    first = DEFAULT_SAMPLE.read_bytes().splitlines()[0]
    got = route_line(first, 1)
    assert isinstance(got, Routed)
    record = json.loads(first)
    assert got.key == record["instance_id"].encode() and got.value == first
    assert got.topic == f"gds.metrics.{record['database_type']}.{record['tags']['environment']}"


def test_unroutable_lines_are_reported_with_their_line(tmp_path: Path) -> None:
    bad = route_line(b'{"database_type": "mysql", "instance_id": "x", "tags": {}}', 7)
    assert isinstance(bad, Unroutable) and bad.line == 7 and "tags.environment" in bad.reason
    assert route_line(b"  \n", 3) is None
    assert isinstance(route_line(b"{nope", 4), Unroutable)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"nope": 1}\n')
    done = subprocess.run(
        [sys.executable, "-m", "connectors.kafka.load_sample", str(path), "--bootstrap", "127.0.0.1:9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and f"{path}:1: not produced" in done.stderr


def test_topic_specs_cover_topics_the_project_list_lacks() -> None:
    specs = {
        s.name: s for s in topic_specs(["gds.metrics.mysql.staging", "gds.metrics.postgresql.production"])
    }
    assert specs["gds.metrics.mysql.staging"].partitions == 4
    assert set(specs) == {"gds.metrics.mysql.staging", "gds.metrics.postgresql.production"}
