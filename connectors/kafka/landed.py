"""Which records a producer was told had failed are in Kafka anyway: read back before re-sending.

A record that timed out while in flight (the produce request sent, its answer lost because the
broker stopped or froze) is reported failed, yet the broker may have written it. The idempotent
producer does not catch the repeat: after such a timeout librdkafka starts a new epoch, so a copy
sent again from the spool is a new record to the broker. Kafka's answer to "did it land?" is the
log itself, so the spool asks it before its first send:

    landed = Landed(bootstrap)
    landed.confirmed(topic, partition, offset)   # from each successful delivery report
    landed.doubt(topics)                         # records given to the producer came back unconfirmed
    kept = landed.filter(chunk)                  # before a spool chunk is produced (drain thread)
    landed.chunk_failed(chunk)                   # that chunk failed: read back again before its next try

`filter` reads, once per doubt, each doubtful topic's partitions from just after the last offset
confirmed to this producer up to the end (at most `window` records a partition: what a producer
can have in flight is far less), and drops the spooled records whose exact bytes (topic, key,
value) it found there, each at most as often as found. Records with the same bytes are the same
sample of the same series, so a match is a copy, never another sample. A read that fails raises
`ConnectorError`: the drain backs off and keeps the spool, as for a broker that does not answer.

What it cannot see: a copy written by a producer of an earlier process (a crash while records
were in flight) before this one confirmed anything on that partition is found only within the
last `window` records; the spool stays at-least-once across a crash.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.errors import ConnectorError
from connectors.kafka.spool import SpoolRecord

log = logging.getLogger(__name__)

WINDOW: Final = 100_000
"""Records read back per partition at most: a producer's in-flight requests hold far fewer."""

_Key = tuple[str, bytes | None, bytes]


class Landed:
    """Per partition the last offset confirmed to one producer, and the copies found in the log."""

    def __init__(
        self,
        bootstrap: str,
        extra: Mapping[str, Any] | None = None,
        *,
        window: int = WINDOW,
        timeout_s: float = 10.0,
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
    ) -> None:
        self.window = window
        self.timeout_s = timeout_s
        self._config: dict[str, Any] = {
            **(extra or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"gds-landed-{uuid.uuid4().hex[:12]}",  # assign() only: nothing committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        self._factory = consumer_factory
        self.marks: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the highest offset the broker confirmed to this producer."""
        self._doubtful: set[str] = set()
        self._found: Counter[_Key] = Counter()
        self._lock = threading.Lock()
        self.dropped = 0
        """Spooled records not sent again because they were found in the log."""

    def confirmed(self, topic: str, partition: int, offset: int) -> None:
        """A delivery report's success (the producer's poll thread; one dict write)."""
        tp = (topic, partition)
        if offset > self.marks.get(tp, -1):
            self.marks[tp] = offset

    def doubt(self, topics: Iterable[str]) -> None:
        """Records of `topics` given to the producer came back unconfirmed: read before re-sending."""
        with self._lock:
            self._doubtful.update(topics)

    def chunk_failed(self, records: Sequence[SpoolRecord]) -> None:
        """A spool chunk passed through `filter` failed to drain: it stays spooled whole, the
        copies found for it included, so the next `filter` reads its topics back again (and finds
        what this try may have written, or a late delivery)."""
        self.doubt({r.topic for r in records})

    def forget(self) -> None:
        """The spool is empty: copies found and not matched belong to no spooled record any more."""
        with self._lock:
            self._found.clear()

    def filter(self, records: Sequence[SpoolRecord]) -> list[SpoolRecord]:
        """`records` without those found in the log (reading it first while a doubt is open)."""
        with self._lock:
            doubtful = sorted(self._doubtful)
        if doubtful:
            found = self._read(doubtful)  # outside the lock: the poll thread must not wait on it
            with self._lock:
                self._found.update(found)
                self._doubtful.difference_update(doubtful)
        with self._lock:
            if not self._found:
                return list(records)
            kept: list[SpoolRecord] = []
            for r in records:
                k = (r.topic, r.key, r.value)
                if self._found[k] > 0:
                    self._found[k] -= 1
                    self.dropped += 1
                else:
                    kept.append(r)
            self._found += Counter()  # drops the zero counts
        if len(kept) < len(records):
            log.info(
                "%d spooled records are in Kafka already (their delivery had timed out in flight): "
                "not sent again",
                len(records) - len(kept),
            )
        return kept

    def _read(self, topics: Sequence[str]) -> Counter[_Key]:
        try:
            consumer = self._factory(self._config)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read back {', '.join(topics)}: {exc}") from exc
        try:
            return self._read_with(consumer, topics)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read back {', '.join(topics)}: {exc}") from exc
        finally:
            consumer.close()

    def _read_with(self, consumer: Any, topics: Sequence[str]) -> Counter[_Key]:
        meta = consumer.list_topics(timeout=self.timeout_s).topics
        ends: dict[tuple[str, int], int] = {}
        assign: list[TopicPartition] = []
        for topic in topics:
            info = meta.get(topic)
            if info is None or info.error is not None:
                continue  # never created: nothing of it can have landed
            for p in sorted(info.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self.timeout_s)
                mark = self.marks.get((topic, p))
                start = max(low, high - self.window) if mark is None else max(low, mark + 1)
                end = min(high, start + self.window)
                if end > start:
                    ends[(topic, p)] = end
                    assign.append(TopicPartition(topic, p, start))
        found: Counter[_Key] = Counter()
        if not assign:
            return found
        consumer.assign(assign)
        deadline = time.monotonic() + self.timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ConnectorError(
                    f"read back {len(ends)} partition(s) of {', '.join(topics)} not finished within "
                    f"{self.timeout_s:g}s"
                )
            for msg in consumer.consume(10_000, 0.5):
                tp = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends.pop(tp, None)
                        continue
                    raise ConnectorError(f"read back {tp[0]}[{tp[1]}]: {err.str()}")
                end = ends.get(tp)
                if end is None or msg.offset() >= end:
                    continue
                found[(tp[0], msg.key(), msg.value())] += 1
                if msg.offset() + 1 >= end:
                    ends.pop(tp, None)
        return found
