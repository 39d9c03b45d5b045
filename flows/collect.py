"""The telemetry collector: `python -m bytewax.run flows.collect`.

Polls every target of $COLLECT_TARGETS (PostgreSQL through asyncpg, the host's /proc, any
registered collector type) at its interval and produces seed-format messages keyed by
instance_id to `gds.metrics.{database_type}.{environment}`, as JSON or Confluent Avro
($OUTPUT_FORMAT). Without KAFKA_BOOTSTRAP_SERVERS it prints the messages instead.

    poll (one partition per target) -> policy per target (stateful: future stamps,
    tag allowlist, cardinality, `up`, health notices) -> log notices -> encode -> Kafka
                                                                          (or the local spool while
                                                                          Kafka is unreachable)

Wiring only: collectors and the source are in connectors/collectors/, the policy in
rules/collect/policy.py. Scale by adding workers/processes: targets spread over them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from connectors.collectors import Target, create_collector
from connectors.collectors.source import Clock, CollectorFactory, CollectSource
from connectors.collectors.targets import CollectConfig, TargetFileError, load_targets
from connectors.config import CollectJobSettings, ConfigError
from connectors.errors import ConnectorError
from connectors.kafka.serde import AvroCodec, encode_json
from connectors.kafka.topics import metric_topic
from flows.common import lazy_flow
from rules.collect.policy import CollectPolicy, Health, Outcome, step
from rules.metric import Metric

log = logging.getLogger("flows.collect")

Encoder = Callable[[Metric, str], bytes]
"""`encode(metric, topic) -> message value`; the topic names the Avro subject."""
Shape = Callable[[Metric, str], Any]
"""`shape(metric, topic) -> sink item`."""
TopicOf = Callable[[str, str], str]
"""`topic_of(database_type, environment) -> topic`."""


def json_encoder(metric: Metric, topic: str) -> bytes:
    return encode_json(metric)


def avro_encoder(registry: str | AvroCodec) -> Encoder:
    """Confluent-framed Avro under the topic's `-value` subject (TopicNameStrategy).

    `registry` is a URL (`mock://...` for the in-memory registry) or a ready codec.
    """
    if isinstance(registry, str):
        from confluent_kafka.schema_registry import SchemaRegistryClient

        registry = AvroCodec(SchemaRegistryClient.new_client({"url": registry}))
    codec = registry
    return lambda metric, topic: codec.encode(metric, f"{topic}-value")


def kafka_shape(encode: Encoder) -> Shape:
    def shape(metric: Metric, topic: str) -> KafkaSinkMessage[bytes, bytes]:
        return KafkaSinkMessage(metric.instance_id.encode(), encode(metric, topic), topic=topic)

    return shape


def _log_health(_step_id: str, outcome: Outcome) -> None:
    n = outcome.notice
    if n is not None:
        log.log(logging.INFO if n.health is Health.UP else logging.WARNING, "%s", n)


def _messages(shape: Shape, topic_of: TopicOf, outcome: Outcome) -> list[Any]:
    topic = topic_of(outcome.poll.database_type, outcome.poll.environment)
    return [shape(m, topic) for m in outcome.metrics]


def build_flow(
    targets: Sequence[Target],
    sink: Sink[Any],
    clock: Clock = time.time,
    *,
    policy: CollectPolicy | None = None,
    encode: Encoder = json_encoder,
    shape: Shape | None = None,
    make_collector: CollectorFactory = create_collector,
    topic_of: TopicOf = metric_topic,
    polls: int | None = None,
    name: str = "collect",
) -> Dataflow:
    """The collector flow; the sink gets `KafkaSinkMessage`s unless `shape` says otherwise.

    `clock` stamps the samples (one call per poll); `polls` ends the flow after that many
    polls per target (tests, one-shot runs); `topic_of` defaults to the seed's
    `gds.metrics.{database_type}.{environment}`.
    """
    flow = Dataflow(name)
    polled = op.input("poll", flow, CollectSource(targets, clock, make_collector=make_collector, polls=polls))
    keyed = op.key_on("by-target", polled, lambda p: p.target)
    checked = op.key_rm("outcome", op.stateful_map("policy", keyed, partial(step, policy or CollectPolicy())))
    op.inspect("health-log", checked, _log_health)
    messages = op.flat_map("messages", checked, partial(_messages, shape or kafka_shape(encode), topic_of))
    op.output("out", messages, sink)
    return flow


def _ensure_topics(settings: CollectJobSettings, targets: Sequence[Target]) -> None:
    """Create missing metric topics of the targets (the broker does not auto-create)."""
    from connectors.kafka.topics import DAY_MS, TopicSpec, ensure_topics

    names = sorted({t.topic for t in targets})
    try:
        created = ensure_topics(
            ",".join(settings.bootstrap), [TopicSpec(n, partitions=4, retention_ms=7 * DAY_MS) for n in names]
        )
    except ConnectorError as exc:  # e.g. no admin rights: producing will say if a topic is missing
        log.warning("could not ensure topics %s: %s", ", ".join(names), exc)
        return
    if created:
        log.info("created topics %s", ", ".join(created))


def from_settings(settings: CollectJobSettings, config: CollectConfig) -> Dataflow:
    encode = avro_encoder(settings.schema_registry_url) if settings.output_format == "avro" else json_encoder
    if not settings.bootstrap:
        # no Kafka: print `topic key value` lines, so a first run needs no services
        def line(metric: Metric, topic: str) -> str:
            return f"{topic} {metric.instance_id} {encode_json(metric).decode()}"

        return build_flow(config.targets, StdOutSink(), policy=config.policy, shape=line)
    from connectors.collectors.sink import SpoolingKafkaSink

    if settings.create_topics:
        _ensure_topics(settings, config.targets)
    # Kafka unreachable: samples wait in the local spool and go out in order when it returns
    sink = SpoolingKafkaSink(
        settings.bootstrap,
        settings.spool_dir / "collect",
        settings.spool_max_bytes,
        dict(settings.kafka_extra),
    )
    return build_flow(config.targets, sink, policy=config.policy, encode=encode)


def _default_flow() -> Dataflow:
    from connectors.config import MonitoringSettings
    from connectors.ops.server import start
    from flows.common import add_liveness, configure_logging, exit_with

    configure_logging()
    problems: list[str] = []
    settings = config = monitoring = None
    try:
        settings = CollectJobSettings.from_env()
        config = load_targets(settings.targets_path)
    except (ConfigError, TargetFileError) as exc:
        problems += exc.problems
    try:
        monitoring = MonitoringSettings.from_env()
    except ConfigError as exc:
        problems += exc.problems
    if problems or settings is None or config is None or monitoring is None:
        exit_with("collect", problems)
    try:
        if settings.bootstrap:  # a pod: serve /metrics, /healthz, /readyz (a taken port exits)
            start("collect", monitoring)
            from connectors.ops.selfmetrics import start as start_selfmetrics

            start_selfmetrics("collect", settings, monitoring)  # own health, gds.metrics.pipeline.*
        flow = from_settings(settings, config)
    except ConfigError as exc:
        exit_with("collect", exc.problems)
    if settings.bootstrap:
        add_liveness(flow, "collect", monitoring.heartbeat_interval_s)
    summary = {
        "job": "collect",
        "targets_file": str(settings.targets_path),
        "output": ",".join(settings.bootstrap) or "stdout",
        "format": settings.output_format,
        "targets": [
            {
                "name": t.name,
                "type": t.type,
                "instance_id": t.instance_id,
                "topic": t.topic,
                "interval_s": t.interval_s,
            }
            for t in config.targets
        ],
    }
    print(json.dumps(summary), file=sys.stderr)
    return flow


__getattr__ = lazy_flow(globals(), _default_flow)
