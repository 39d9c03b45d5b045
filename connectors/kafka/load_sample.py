"""Load a JSONL file of seed-format metrics into Kafka: `python -m connectors.kafka.load_sample [FILE]`.

Each line goes, unchanged, to `gds.metrics.{database_type}.{tags.environment}` keyed by its
`instance_id` (as the collectors produce). Every topic the file needs is created first, with
the project's spec when `connectors.kafka.topics` has one and the collectors' default otherwise:
the broker does not auto-create topics, and a missing one used to fail every message of it.

Records keep the broker's wall-clock timestamp, not the sample's event time: the topics'
time-based retention would otherwise delete a 2025 sample as soon as it was written. The
flows read event time from the payload, so nothing else changes.

Prints one line per topic (`topic  produced=N failed=N`) and a total; exits 1 if any line
could not be routed or delivered, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.errors import ConnectorError
from connectors.kafka.topics import DAY_MS, PROJECT_TOPICS, TopicSpec, ensure_topics, metric_topic

DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "flows" / "sample" / "metrics.jsonl"


@dataclass(frozen=True, slots=True)
class Routed:
    """One line of the file and where it goes."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Unroutable:
    line: int
    reason: str


@dataclass(slots=True)
class LoadReport:
    """Per-topic delivery counts; `unroutable` lines never reached a producer."""

    produced: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    unroutable: list[Unroutable] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unroutable and not sum(self.failed.values())


def route_line(raw: bytes, lineno: int) -> Routed | Unroutable | None:
    """Topic and key of one JSONL line; None for a blank line."""
    text = raw.strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError as exc:
        return Unroutable(lineno, f"not JSON: {exc}")
    if not isinstance(record, dict):
        return Unroutable(lineno, "not a JSON object")
    tags = record.get("tags")
    env = tags.get("environment") if isinstance(tags, dict) else None
    db = record.get("database_type")
    instance = record.get("instance_id")
    missing = [
        name
        for name, v in (("database_type", db), ("instance_id", instance), ("tags.environment", env))
        if not isinstance(v, str) or not v
    ]
    if missing:
        return Unroutable(lineno, "missing or empty " + ", ".join(missing) + " (needed to pick the topic)")
    assert isinstance(db, str) and isinstance(env, str) and isinstance(instance, str)
    return Routed(metric_topic(db, env), instance.encode(), text)


def read_lines(path: Path) -> Iterator[Routed | Unroutable]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            got = route_line(raw, lineno)
            if got is not None:
                yield got


def topic_specs(names: Iterable[str]) -> list[TopicSpec]:
    """The project's spec of each topic, or the collectors' default for a metric topic it lacks."""
    known = {s.name: s for s in PROJECT_TOPICS}
    return [known.get(n) or TopicSpec(n, partitions=4, retention_ms=7 * DAY_MS) for n in sorted(set(names))]


def load(
    lines: Sequence[Routed | Unroutable],
    bootstrap: str,
    *,
    extra: dict[str, str] | None = None,
    create_topics: bool = True,
    timeout_s: float = 60.0,
) -> LoadReport:
    """Create the topics `lines` need, produce every routed line, wait for every delivery."""
    report = LoadReport()
    routed = [x for x in lines if isinstance(x, Routed)]
    report.unroutable = [x for x in lines if isinstance(x, Unroutable)]
    if create_topics and routed:
        report.created = ensure_topics(bootstrap, topic_specs(r.topic for r in routed))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **(extra or {})})

    def delivered(err: KafkaError | None, msg: Message) -> None:
        topic = msg.topic() or "?"
        if err is None:
            report.produced[topic] += 1
        else:
            report.failed[topic] += 1
            if len(report.errors) < 5:
                report.errors.append(f"{topic}: {err.str()}")

    for r in routed:
        while True:
            try:
                producer.produce(r.topic, r.value, r.key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry this line
                producer.poll(0.5)
        producer.poll(0)
    left = producer.flush(timeout_s)
    if left:
        report.failed["(not delivered before the timeout)"] += left
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.kafka.load_sample",
        description="Produce seed-format JSONL metrics to gds.metrics.{database_type}.{environment}.",
    )
    parser.add_argument(
        "file", nargs="?", type=Path, default=DEFAULT_SAMPLE, help="default: the bundled sample"
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ""),
        help="brokers host:port,... (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--no-create", action="store_true", help="do not create missing topics")
    args = parser.parse_args(argv)
    if not args.bootstrap:
        print(
            "no brokers: set KAFKA_BOOTSTRAP_SERVERS (source deploy/local/env.sh) or pass --bootstrap",
            file=sys.stderr,
        )
        return 2
    try:
        lines = list(read_lines(args.file))
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {}
    for item in os.environ.get("KAFKA_EXTRA_CONFIG", "").split(";"):
        if "=" in item:
            k, v = item.split("=", 1)
            extra[k.strip()] = v.strip()
    try:
        report = load(lines, args.bootstrap, extra=extra, create_topics=not args.no_create)
    except ConnectorError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name in report.created:
        print(f"created topic {name}")
    for topic in sorted(set(report.produced) | set(report.failed)):
        print(f"{topic}  produced={report.produced[topic]} failed={report.failed[topic]}")
    for u in report.unroutable:
        print(f"{args.file}:{u.line}: not produced: {u.reason}", file=sys.stderr)
    for e in report.errors:
        print(f"delivery error: {e}", file=sys.stderr)
    total_failed = sum(report.failed.values()) + len(report.unroutable)
    print(f"total  produced={sum(report.produced.values())} failed={total_failed}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
