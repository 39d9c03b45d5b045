"""Dead-lettered notifications read back from `gds.alerts.dlq` for `python -m flows.notify --redrive`.

A bounded read: every partition from its start to its end offset at the time of the call (records
written meanwhile wait for the next redrive). Each record is `connectors.notify.undelivered`'s
`{"error", "event", "payload"}`; the event is rebuilt with `AlertEvent.from_record`, so it is
delivered again with its original `message_id`. Nothing is committed: a second redrive offers the
same dead letters again, which receivers deduplicate by `message_id`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.errors import ConnectorError
from rules.model import AlertEvent, RulesError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedriveFilter:
    """Which dead letters to put back: transitions at or after `since`, with all `labels`."""

    since: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def wants(self, event: AlertEvent) -> bool:
        if self.since is not None and event.at < self.since:
            return False
        have = dict(event.labels)
        return all(have.get(k) == v for k, v in self.labels.items())


def dead_letters(
    brokers: Sequence[str],
    topic: str,
    wanted: RedriveFilter,
    extra: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 30.0,
) -> list[AlertEvent]:
    """The dead-lettered events of `topic` that `wanted` keeps, oldest first per partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": ",".join(brokers),
            "group.id": f"gds-redrive-{uuid.uuid4().hex[:8]}",  # nothing is committed
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConnectorError(
                f"redrive: topic {topic!r} not found ({meta.error if meta else 'no metadata'})"
            )
        ends: dict[int, int] = {}
        assign = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        out: list[AlertEvent] = []
        if not assign:
            return out
        consumer.assign(assign)
        while ends:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise ConnectorError(f"redrive: no record from {topic} within {timeout_s:g}s")
            if msg.error() is not None:
                raise ConnectorError(f"redrive: {msg.error()}")
            part, offset = msg.partition(), msg.offset()
            if part is not None and offset is not None and part in ends and offset >= ends[part] - 1:
                del ends[part]
            event = _event(msg.value())
            if event is not None and wanted.wants(event):
                out.append(event)
        return out
    except KafkaException as exc:
        raise ConnectorError(f"redrive: cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()


def _event(raw: bytes | None) -> AlertEvent | None:
    try:
        record = json.loads(raw or b"")
        return AlertEvent.from_record(record["event"])
    except (ValueError, TypeError, KeyError, RulesError) as exc:
        log.warning("redrive: skipping a dead letter that holds no alert event: %s", exc)
        return None
