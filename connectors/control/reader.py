"""Read `gds.control` from its beginning: to its end (`read_all`: backtests, start-up), or
for ever (`ControlReader`: the API keeps its view of silences and acknowledgements current).

No consumer group is committed: every reader always folds the whole compacted topic, so its
view never depends on where an earlier process stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.errors import ConnectorError
from connectors.kafka.source import broker_list
from rules.control.events import ControlError, ControlEvent, decode

log = logging.getLogger(__name__)


def _consumer(brokers: Sequence[str] | str, add_config: Mapping[str, Any] | None) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(broker_list(brokers)),
        "group.id": "gds-control-reader",  # required by librdkafka; never committed
        "enable.auto.commit": "false",
        "enable.partition.eof": "true",
        "auto.offset.reset": "earliest",
    }
    config.update(add_config or {})
    return Consumer(config)


def _assign_all(consumer: Consumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    try:
        md = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise ConnectorError(f"cannot read the metadata of {topic}: {exc}") from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ConnectorError(
            f"control topic {topic!r} does not exist: create it (python -m connectors.kafka.topics) "
            "or set CONTROL_TOPIC=off"
        )
    parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
    consumer.assign(parts)
    return parts


def read_all(
    brokers: Sequence[str] | str,
    topic: str,
    add_config: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 30.0,
    on_error: Callable[[str], None] | None = None,
) -> list[ControlEvent]:
    """Every readable event from the beginning to the end as of the call, in topic order.

    Unreadable events are reported to `on_error` (default: logged) and skipped: one bad event
    must not hide the others.
    """
    consumer = _consumer(brokers, add_config)
    try:
        parts = _assign_all(consumer, topic, timeout_s)
        ends: dict[int, int] = {}
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            if high > low:
                ends[tp.partition] = high
        events: list[ControlEvent] = []
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ConnectorError(f"{topic}: not read to its end within {timeout_s:g}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err, part, offset = msg.error(), msg.partition() or 0, msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(part, None)
                    continue
                raise ConnectorError(f"{topic}: {err.str()}")
            if offset + 1 >= ends.get(part, 0):
                ends.pop(part, None)
            try:
                events.append(decode(msg.value()))
            except ControlError as exc:
                text = f"{topic}@{msg.partition()}:{msg.offset()}: {exc}"
                (on_error or log.warning)(text)
        return events
    finally:
        consumer.close()


class ControlReader:
    """A thread that reads the topic from its beginning and calls `apply(event)` for each event,
    for ever. `ready` is set once everything present at start was applied."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        apply: Callable[[ControlEvent], None],
        add_config: Mapping[str, Any] | None = None,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.brokers, self.topic, self.apply = brokers, topic, apply
        self.add_config = add_config
        self.on_error = on_error or log.warning
        self.ready = threading.Event()
        self.failure: str | None = None  # why it is not reading (for /readyz)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"control-reader-{topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except Exception as exc:  # the broker is down or the topic missing: say so, retry
                self.failure = str(exc)
                log.warning("reading %s: %s (retrying in 2 s)", self.topic, exc)
                self._stop.wait(2.0)

    def _read(self) -> None:
        consumer = _consumer(self.brokers, self.add_config)
        try:
            parts = _assign_all(consumer, self.topic, 10.0)
            pending = set()
            for tp in parts:
                low, high = consumer.get_watermark_offsets(tp, timeout=10.0)
                if high > low:
                    pending.add(tp.partition)
            if not pending:
                self.ready.set()
            self.failure = None
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # caught up
                        pending.discard(msg.partition())
                        if not pending:
                            self.ready.set()
                        continue
                    raise ConnectorError(f"{self.topic}: {err.str()}")
                try:
                    event = decode(msg.value())
                except ControlError as exc:
                    self.on_error(f"{self.topic}@{msg.partition()}:{msg.offset()}: {exc}")
                    continue
                self.apply(event)
        finally:
            consumer.close()
