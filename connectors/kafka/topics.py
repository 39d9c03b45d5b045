"""The project's Kafka topics, and their idempotent creation.

`python -m connectors.kafka.topics` creates whatever is missing on $KAFKA_BOOTSTRAP_SERVERS
(deploy/local/services.sh runs it). Existing topics are left alone: partitions and
configs of a live topic are changed deliberately, never by a start-up script.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.errors import ConnectorError

DAY_MS: Final = 24 * 3600 * 1000

METRICS_DLQ_TOPIC: Final = "gds.metrics.dlq"
ALERTS_TOPIC: Final = "alerts"
ALERTS_DLQ_TOPIC: Final = "gds.alerts.dlq"
AGGREGATED_TOPIC: Final = "metrics-aggregated"
CONTROL_TOPIC: Final = "gds.control"
"""Silences, acknowledgements, rule-set reloads (rules/control): compacted, one partition, so
every reader sees the control plane's events in one order."""
RECORDED_TOPIC: Final = "gds.metrics.recorded"
"""Recording rules' output (Prometheus rule groups in the alerting job), seed message format:
a metric topic like the others, so storage and seed rules read it."""
METRIC_TOPIC_PATTERN: Final = r"^gds\.metrics\."
"""Every metric topic (`gds.metrics.{database_type}.{environment}`); the DLQ matches too
and is excluded by `connectors.kafka.metric_source`."""
DLQ_TOPICS: Final = frozenset({METRICS_DLQ_TOPIC, ALERTS_DLQ_TOPIC})


def metric_topic(database_type: str, environment: str) -> str:
    return f"gds.metrics.{database_type}.{environment}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the project needs it.

    `replication_factor=-1` lets the broker decide (`default.replication.factor`): 1 on the
    local single broker, 3 in production, with no per-environment table here.
    """

    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    replication_factor: int = -1

    def new_topic(self) -> NewTopic:
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            config={"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy},
        )


METRIC_TOPICS: Final = tuple(
    TopicSpec(metric_topic(db, env), partitions=4, retention_ms=7 * DAY_MS)
    for db, env in (
        ("postgresql", "production"),
        ("postgresql", "staging"),
        ("mysql", "production"),
        ("mysql", "staging"),  # the bundled sample has it
        ("os", "production"),
    )
)
# the pipeline's own health (connectors.ops.selfmetrics): one small partition is plenty
PIPELINE_TOPIC: Final = TopicSpec(
    metric_topic("pipeline", "production"), partitions=1, retention_ms=7 * DAY_MS
)

PROJECT_TOPICS: Final = (
    *METRIC_TOPICS,
    PIPELINE_TOPIC,
    TopicSpec(RECORDED_TOPIC, partitions=4, retention_ms=7 * DAY_MS),
    TopicSpec(METRICS_DLQ_TOPIC, partitions=1, retention_ms=14 * DAY_MS),
    TopicSpec(ALERTS_TOPIC, partitions=4, retention_ms=30 * DAY_MS),
    TopicSpec(ALERTS_DLQ_TOPIC, partitions=1, retention_ms=30 * DAY_MS),
    TopicSpec(AGGREGATED_TOPIC, partitions=4, retention_ms=30 * DAY_MS),
    # compacted: the newest event per key (a silence's id, an alert's acknowledgement) is kept
    # for ever; retention.ms only bounds how long a superseded version may linger
    TopicSpec(CONTROL_TOPIC, partitions=1, retention_ms=30 * DAY_MS, cleanup_policy="compact"),
)


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], *, timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created (in spec order).

    Idempotent: "already exists" is success. Any other failure is collected, and one
    `ConnectorError` names every topic that failed.
    """
    specs = list(specs)
    if not specs:
        return []
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        futures = admin.create_topics(
            [s.new_topic() for s in specs], operation_timeout=timeout_s, request_timeout=timeout_s
        )
    except KafkaException as exc:
        raise ConnectorError(f"cannot create topics on {bootstrap}: {exc}") from exc
    created: list[str] = []
    failed: list[str] = []
    for spec in specs:
        try:
            futures[spec.name].result(timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            failed.append(f"{spec.name}: {err.str() if isinstance(err, KafkaError) else exc}")
        except Exception as exc:  # the future's own timeout: the broker did not answer
            failed.append(f"{spec.name}: {type(exc).__name__}: {exc}")
        else:
            created.append(spec.name)
    if failed:
        raise ConnectorError(f"topic creation failed on {bootstrap}: " + "; ".join(failed))
    return created


def partition_counts(bootstrap: str, names: Iterable[str], *, timeout_s: float = 30.0) -> dict[str, int]:
    """Partitions of the named topics that exist (for reporting drift from the specs)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConnectorError(f"cannot list topics on {bootstrap}: {exc}") from exc
    return {n: len(md.topics[n].partitions) for n in names if n in md.topics}


_QUIET = logging.getLogger("connectors.kafka.topics.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # one line of ours says the broker is down, not one per retry


def topic_names(
    bootstrap: str, add_config: Mapping[str, Any] | None = None, *, timeout_s: float = 5.0
) -> frozenset[str]:
    """The topics on the cluster: the start-up probe. `ConnectorError` when no broker answers."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **(add_config or {}), "logger": _QUIET}
    try:
        md = AdminClient(config).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        raise ConnectorError(f"no broker of {bootstrap} answered within {timeout_s:g}s ({reason})") from exc
    return frozenset(md.topics)


def missing_topics(required: Mapping[str, str], existing: Collection[str], bootstrap: str) -> list[str]:
    """One problem line per `{VARIABLE: topic}` the job writes to that does not exist.

    Producing to a missing topic fails only at the first write, inside Bytewax, as a panic;
    the broker does not create it (no auto-creation in production clusters).
    """
    return [
        f"{name}={topic!r}: no such topic on {bootstrap}; create it (`python -m connectors.kafka.topics` "
        f"creates the project's topics) or correct {name}"
        for name, topic in required.items()
        if topic not in existing
    ]


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        print("KAFKA_BOOTSTRAP_SERVERS is not set (source deploy/local/env.sh)", file=sys.stderr)
        return 2
    try:
        created = ensure_topics(bootstrap, PROJECT_TOPICS)
        actual = partition_counts(bootstrap, (s.name for s in PROJECT_TOPICS))
    except ConnectorError as exc:
        print(exc, file=sys.stderr)
        return 1
    for spec in PROJECT_TOPICS:
        state = "created" if spec.name in created else "found  "
        got = actual.get(spec.name)
        drift = "" if got == spec.partitions else f"  (spec says {spec.partitions} partitions: not altered)"
        print(f"{state} {spec.name}  partitions={got} retention={spec.retention_ms // DAY_MS}d{drift}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
