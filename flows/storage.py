"""The storage job: `python -m bytewax.run flows.storage`.

Raw metric messages -> `metrics_hot` (PostgreSQL / TimescaleDB) and the Redis latest values;
the `alerts` topic -> `alert_events` (alert history). Undecodable messages go to the DLQ as in
the alerting job. Wiring only: decoding is connectors/serde.py, the writes are
connectors/timescale.py and connectors/latest.py.

No state and no routing: each worker decodes the batches its Kafka partitions give it and
writes them itself (every sink is a per-worker `DynamicSink`), so nothing crosses the worker
exchange. Sinks write each batch before the epoch can close, never buffering across
batches, so with recovery a crash re-writes at most the last epoch, which the idempotent
writes absorb.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.config import ConfigError, Settings
from connectors.errors import PoisonMessage
from connectors.replay import FileSource
from connectors.timescale import AlertRow, decode_alert_record
from flows.common import (
    Decoder,
    Poison,
    WallClock,
    build_or_exit,
    lazy_flow,
    poison_line,
    poison_to_dlq,
    settings_decoder,
    settings_source,
    wall_clock,
)
from rules.model import Metric


@dataclass(frozen=True)
class StorageOutputs:
    """Where the streams go. `latest=None`: no Redis configured."""

    metrics: Sink[Metric]
    alerts: Sink[AlertRow]
    dlq: Sink[Any]
    dlq_fn: Callable[[Poison], Any] = poison_to_dlq
    latest: Sink[Metric] | None = None


def decode_metrics(
    decode: Decoder, wall: WallClock | None
) -> Callable[[list[KafkaSourceMessage]], list[Any]]:
    """Batch decoder: Metric for good messages, Poison for the rest (no exceptions escape)."""

    def run(batch: list[KafkaSourceMessage]) -> list[Any]:
        now = wall() if wall is not None else math.inf
        out: list[Any] = []
        append = out.append
        for msg in batch:
            raw = msg.value
            if raw is None:
                append(Poison(msg, "empty message (tombstone)"))
                continue
            try:
                append(decode(raw, now))
            except PoisonMessage as exc:
                append(Poison(msg, exc.reason))
        return out

    return run


def decode_alerts(batch: list[KafkaSourceMessage]) -> Iterable[AlertRow | Poison]:
    for msg in batch:
        try:
            yield decode_alert_record(msg.value)
        except PoisonMessage as exc:
            yield Poison(msg, exc.reason, stage="alert-decode")


def build_flow(
    source: Source[Any],
    outputs: StorageOutputs,
    decode: Decoder,
    *,
    alerts_source: Source[Any] | None = None,
    wall: WallClock | None = wall_clock,
    name: str = "storage",
) -> Dataflow:
    """`wall=None` accepts any timestamp (replays); live, it bounds the future (MAX_FUTURE_S)."""
    flow = Dataflow(name)
    raw = op.input("metrics", flow, source)
    decoded = op.flat_map_batch("decode", raw, decode_metrics(decode, wall))
    split = op.branch("split", decoded, lambda x: type(x) is not Poison)
    metrics: Stream[Metric] = split.trues
    poison: Stream[Poison] = split.falses
    op.output("metrics-hot", metrics, outputs.metrics)
    if outputs.latest is not None:
        op.output("latest", metrics, outputs.latest)
    if alerts_source is not None:
        alerts_raw = op.input("alerts", flow, alerts_source)
        alerts = op.branch(
            "alerts-split",
            op.flat_map_batch("alerts-decode", alerts_raw, decode_alerts),
            lambda x: type(x) is AlertRow,
        )
        rows: Stream[AlertRow] = alerts.trues  # type: ignore[assignment]
        op.output("alert-events", rows, outputs.alerts)
        poison = op.merge("poison", poison, alerts.falses)
    op.output("dlq", op.map("dlq-record", poison, outputs.dlq_fn), outputs.dlq)
    return flow


def from_settings(settings: Settings) -> Dataflow:
    if not settings.pg_dsn:
        raise ConfigError(["PG_DSN: the storage flow needs PostgreSQL (e.g. postgresql://user@host/db)"])
    from connectors.latest import RedisLatestSink
    from connectors.retry import STORAGE_RETRY
    from connectors.timescale import AlertEventsSink, MetricsHotSink, PgConfig

    retry = replace(STORAGE_RETRY, deadline_s=settings.storage_retry_deadline_s)
    pg = PgConfig(
        settings.pg_dsn,
        schema=settings.pg_schema,
        batch_rows=settings.pg_batch_rows,
        retention_days=settings.pg_retention_days,
        compress_after_days=settings.pg_compress_after_days,
        retry=retry,
    )
    latest = (
        RedisLatestSink(settings.redis_url, ttl_s=settings.redis_latest_ttl_s, retry=retry)
        if settings.redis_url
        else None
    )
    decode = settings_decoder(settings)
    if settings.embedded:
        outputs = StorageOutputs(
            MetricsHotSink(pg),
            AlertEventsSink(pg),
            StdOutSink(),
            poison_line,
            latest,
        )
        return build_flow(FileSource([settings.sample_path]), outputs, decode, wall=None)

    from connectors.kafka import kafka_sink

    brokers = list(settings.bootstrap)
    extra = dict(settings.kafka_extra)
    source = settings_source(settings)
    alerts_source = settings_source(settings, settings.alerts_topic, exclude=())
    outputs = StorageOutputs(
        MetricsHotSink(pg),
        AlertEventsSink(pg),
        kafka_sink(brokers, settings.dlq_topic, extra),
        poison_to_dlq,
        latest,
    )
    return build_flow(source, outputs, decode, alerts_source=alerts_source)


def _default_flow() -> Dataflow:
    # the topics it writes (dead letters) and reads by name (alert history), checked at start
    settings, flow = build_or_exit(
        "storage", from_settings, lambda s: {"DLQ_TOPIC": s.dlq_topic, "ALERTS_TOPIC": s.alerts_topic}
    )
    mode = (
        "replaying bundled sample " + str(settings.sample_path)
        if settings.embedded
        else f"tailing {settings.metric_topics} and {settings.alerts_topic} on {','.join(settings.bootstrap)}"
    )
    print(
        json.dumps(
            {"job": "storage", "mode": mode, "schema": settings.pg_schema, "redis": bool(settings.redis_url)}
        ),
        file=sys.stderr,
    )
    return flow


__getattr__ = lazy_flow(globals(), _default_flow)
