"""What a topic holds when a backtest's time window found nothing in it.

`connectors.kafka.replay.plan_ranges` finds offsets by *record* time (produce time). Data produced
long after its event times (a recording re-imported today with January's timestamps) has no
record stamped in a January window, and the replay reads nothing. The backtest then says how
many records the topics hold and when they were produced, so the user can widen the window or
read the whole topic (`--full-scan`); this module reads those two facts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.errors import ConnectorError
from connectors.kafka.replay import PartitionRange, _consumer_config, plan_ranges


@dataclass(frozen=True, slots=True)
class TopicSpan:
    """Records held by some topics and the record times (epoch s) of the oldest and newest.

    The times come from each partition's first and last record; None when no record had a
    timestamp (or there is no record).
    """

    records: int
    first: float | None = None
    last: float | None = None


def _stamp_at(c: Consumer, topic: str, partition: int, offset: int, timeout_s: float) -> float | None:
    c.assign([TopicPartition(topic, partition, offset)])
    for msg in c.consume(1, timeout_s):
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:  # a marker or a compacted hole: no record there
                return None
            raise ConnectorError(f"reading {topic} [{partition}] at {offset}: {err}")
        kind, ms = msg.timestamp()
        return ms / 1000 if kind else None
    return None


def topic_span(
    brokers: Sequence[str],
    topics: Sequence[str],
    *,
    add_config: Mapping[str, Any] | None = None,
    timeout_s: float = 10.0,
) -> TopicSpan:
    """Every record of `topics` now: count, and record times of the first and last ones."""
    ranges: Sequence[PartitionRange] = plan_ranges(
        brokers, topics, -math.inf, math.inf, add_config=add_config, timeout_s=timeout_s
    )
    stamps: list[float] = []
    c = Consumer(_consumer_config(brokers, add_config))
    try:
        for r in ranges:
            if r.size == 0:
                continue
            for offset in (r.start, r.end - 1):
                ts = _stamp_at(c, r.topic, r.partition, offset, timeout_s)
                if ts is not None:
                    stamps.append(ts)
    except KafkaException as exc:
        raise ConnectorError(f"cannot read the record times of {', '.join(topics)}: {exc}") from exc
    finally:
        c.close()
    return TopicSpan(sum(r.size for r in ranges), min(stamps, default=None), max(stamps, default=None))
