"""The flows' control input: `gds.control` as a Bytewax source, always read from its beginning.

Items are decoded control events (`rules.control.events.ControlEvent`) and, once per
partition, a `ControlCaughtUp` marker after everything that was in that partition when the
job started has been read. A flow broadcasts both to every shard of its state: a consumer
that holds back decisions until it has seen the marker of every partition never acts on a
control plane older than the one the job started with (a restart does not notify what a
silence mutes).

Nothing is snapshotted: the topic is compacted, so the whole control plane is re-read at
every start and the recovery state never has to carry it. Unreadable events are logged and
skipped (counted in `skipped`); one bad event must not hide the others or stop the flow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.errors import ConnectorError
from connectors.kafka.source import broker_list
from connectors.ops.epochs import EpochClock
from connectors.ops.heartbeat import EPOCH_TICK_S
from rules.control.events import ControlError, ControlEvent, decode

IDLE_POLL_S: Final = EPOCH_TICK_S
"""How often an idle control partition is polled: a silence applies within this (plus a tick)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ControlCaughtUp:
    """In-band marker: control partition `part` (of `parts`) was read to where it ended at start."""

    part: str
    parts: int


ControlItem = ControlEvent | ControlCaughtUp


class _ControlPartition(StatefulSourcePartition[ControlItem, None]):
    def __init__(self, consumer: Consumer, topic: str, idx: int, parts: int, tail: bool) -> None:
        self._epoch = EpochClock()
        self._epoch.seen()  # built in the activation that starts its first epoch
        self._consumer = consumer
        self._topic, self._idx, self._parts, self._tail = topic, idx, parts, tail
        self._key = f"{idx}-{topic}"
        tp = TopicPartition(topic, idx, OFFSET_BEGINNING)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10.0)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read the offsets of {topic} [{idx}]: {exc}") from exc
        self._end = high  # what "caught up" means: everything present at start
        self._caught_up = high <= low
        self._announced = False
        self._awake: datetime | None = None
        self.skipped = 0
        consumer.assign([tp])

    def next_batch(self) -> list[ControlItem]:
        msgs = self._consumer.consume(500, 0.0)
        out: list[ControlItem] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._caught_up = True
                    continue
                raise ConnectorError(f"{self._topic} [{self._idx}]: {err.str()}")
            offset = msg.offset() or 0
            if offset + 1 >= self._end:
                self._caught_up = True
            try:
                out.append(decode(msg.value()))
            except ControlError as exc:
                self.skipped += 1
                log.warning("skipping control event %s [%d] @%d: %s", self._topic, self._idx, offset, exc)
        if self._caught_up and not self._announced:
            self._announced = True
            out.append(ControlCaughtUp(self._key, self._parts))
        if self._announced and not self._tail and not msgs:
            raise StopIteration()
        # rare events: poll an idle partition every EPOCH_TICK_S, not in a busy loop, and at
        # its epoch's end: an input that sleeps holds every other input at each epoch boundary
        # (connectors/ops/epochs.py)
        self._awake = None if msgs else self._epoch.wake_dt(time.time() + IDLE_POLL_S)
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        self._epoch.ended()  # Bytewax ends this partition's epoch now
        return None  # always re-read from the beginning (module docstring)

    def close(self) -> None:
        self._consumer.close()


class ControlSource(FixedPartitionedSource[ControlItem, None]):
    """`gds.control` (or any control topic) from its beginning; see the module docstring."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        add_config: Mapping[str, Any] | None = None,
        *,
        tail: bool = True,
    ) -> None:
        self._brokers = broker_list(brokers)
        self._topic = topic
        self._add_config = dict(add_config or {})
        self._tail = tail
        self._parts: int | None = None

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(self._brokers),
            "group.id": "gds-control-ignored",  # assign() only: nothing is committed
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
        }
        config.update(self._add_config)
        return config

    def list_parts(self) -> list[str]:
        consumer = Consumer(self._config())
        try:
            md = consumer.list_topics(self._topic, timeout=10.0)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read the metadata of {self._topic}: {exc}") from exc
        finally:
            consumer.close()
        meta = md.topics.get(self._topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ConnectorError(
                f"control topic {self._topic!r} does not exist: create it "
                "(python -m connectors.kafka.topics) or set CONTROL_TOPIC=off"
            )
        self._parts = len(meta.partitions)
        return [f"{p}-{self._topic}" for p in sorted(meta.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ControlPartition:
        idx, topic = for_part.split("-", 1)
        parts = self._parts if self._parts is not None else len(self.list_parts())
        return _ControlPartition(Consumer(self._config()), topic, int(idx), parts, self._tail)


def control_source(
    brokers: Sequence[str] | str,
    topic: str,
    add_config: Mapping[str, Any] | None = None,
    *,
    tail: bool = True,
) -> ControlSource:
    """The control input of a flow (items: `ControlEvent`s and `ControlCaughtUp` markers)."""
    return ControlSource(brokers, topic, add_config, tail=tail)
