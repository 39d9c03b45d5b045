"""The storage job: `python -m bytewax.run flows.storage`.

Raw metric messages -> `metrics_hot` (PostgreSQL / TimescaleDB) and the Redis latest values;
the `alerts` topic -> `alert_events` (alert history). Undecodable messages go to the DLQ as in
the alerting job. Wiring only: decoding is connectors/kafka/serde.py, the writes are
connectors/storage/timescale.py and connectors/storage/latest.py.

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.config import ConfigError, Settings
from connectors.errors import PoisonMessage
from connectors.kafka.dlq import dead_letter
from connectors.kafka.message import Message
from connectors.kafka.replay import FileSource
from connectors.ops.metrics import METRICS
from connectors.storage.timescale import AlertRow, RefusedRow, decode_alert_record
from flows.common import (
    Decoder,
    Poison,
    WallClock,
    build_or_exit,
    decode_batch,
    lazy_flow,
    poison_line,
    poison_to_dlq,
    settings_decoder,
    settings_source,
    wall_clock,
)
from rules.metric import Metric


@dataclass(frozen=True)
class StorageOutputs:
    """Where the streams go. `latest=None`: no Redis configured."""

    metrics: Sink[Metric]
    alerts: Sink[AlertRow]
    dlq: Sink[Any]
    dlq_fn: Callable[[Poison], Any] = poison_to_dlq
    latest: Sink[Metric] | None = None


def decode_metrics(decode: Decoder, wall: WallClock | None) -> Callable[[list[Message]], list[Any]]:
    """Batch decoder: Metric for good messages, Poison for the rest (no exceptions escape)."""

    def run(batch: list[Message]) -> list[Any]:
        metrics, poison = decode_batch(batch, decode, wall() if wall is not None else math.inf)
        out: list[Any] = metrics
        out.extend(poison)
        return out

    return run


def decode_alerts(batch: list[Message]) -> Iterable[AlertRow | Poison]:
    """Alert transitions as rows; heartbeats (same topic) are skipped and counted, never
    dead-lettered; anything unreadable is poison."""
    for msg in batch:
        try:
            row = decode_alert_record(msg.value, msg.headers)
        except PoisonMessage as exc:
            yield Poison(msg, exc.reason, stage="alert-decode")
        except Exception as exc:  # one odd record must not stop the job
            yield Poison(msg, f"unexpected {type(exc).__name__}: {str(exc)[:500]}", stage="alert-decode")
        else:
            if row is not None:
                yield row


def refused_to_dlq(r: RefusedRow) -> KafkaSinkMessage[bytes | None, bytes]:
    """A row PostgreSQL refused, as a dead letter (the row as JSON: the sink has no original)."""
    METRICS.record_dlq("storage", r.stage)
    return dead_letter(r.raw(), r.key(), None, None, None, r.error, r.stage, time.time())


def refused_line(r: RefusedRow) -> str:
    return f"DLQ {r.stage}: {r.error}"


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
    from connectors.storage.latest import RedisLatestSink
    from connectors.storage.retry import STORAGE_RETRY
    from connectors.storage.timescale import AlertEventsSink, MetricsHotSink, PgConfig, Rejects

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
        printed = Rejects(StdOutSink(), refused_line)
        outputs = StorageOutputs(
            MetricsHotSink(pg, printed),
            AlertEventsSink(pg, printed),
            StdOutSink(),
            poison_line,
            latest,
        )
        return build_flow(FileSource([settings.sample_path]), outputs, decode, wall=None)

    from connectors.kafka.sink import kafka_sink

    brokers = list(settings.bootstrap)
    extra = dict(settings.kafka_extra)
    source = settings_source(settings)
    alerts_source = settings_source(settings, settings.alerts_topic, exclude=())
    # rows PostgreSQL refuses go to the same DLQ topic, through a producer of their own per sink
    refused = Rejects(kafka_sink(brokers, settings.dlq_topic, extra), refused_to_dlq)
    outputs = StorageOutputs(
        MetricsHotSink(pg, refused),
        AlertEventsSink(pg, refused),
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
