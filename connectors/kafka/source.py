"""Kafka source and sink for the flows, on top of `bytewax.connectors.kafka`.

What bytewax 0.21.1's `KafkaSource` does, and what follows for us:
- Each topic partition is a Bytewax input partition, read with `assign()` (no consumer
  group rebalancing, `group.id` is ignored and nothing is committed to Kafka). Offsets live
  in the recovery snapshots: `starting_offset` only applies to a first start without
  recovery state, and a resumed flow re-reads from its last snapshot (at-least-once).
- The topic list is fixed when the flow is built, so a topic *pattern* is resolved here,
  once, with the admin client; a topic created later needs a restart to be read.
- A consumer error raises and stops the flow by default (`raise_on_errors=True`); with
  False the stream also carries `KafkaError` items the flow must handle. Decoding errors
  are ours, not the consumer's: they never reach this layer (see connectors/kafka/serde.py).
- `tail=False` ends each partition at its end offset: used by tests and replays.

Our `MetricKafkaSource` changes two things of bytewax's partition reader:
- A read never waits for a full batch, and an idle partition is polled with a growing pause (1 ms
  doubling to `IDLE_POLL_MAX_S`) instead of every millisecond: an idle job burned most of a core on
  an empty topic, and a live one slept a millisecond at most reads.
- With `progress=True` each partition appends a `SourceProgress` marker to its batch every
  `PROGRESS_INTERVAL_S`, saying when it had last read everything the broker had (its cached high
  watermark).
  Markers travel in-band, behind the messages read before them, so a consumer that sees one knows
  those messages were handed to it already: the alerting engine lets wall time age an instance only
  as far as the input was caught up, never because a worker was busy (a blocked sink) or because a
  batch was still on its way.

`KafkaSink` flushes after every batch but ignores delivery reports, so a message the broker
refuses would be lost silently; `kafka_sink` installs a delivery callback that raises
instead, which stops the flow and makes the resumed epoch send it again.
"""

from __future__ import annotations

import copyreg
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage, _list_parts
from bytewax.connectors.kafka import _KafkaSourcePartition as _BytewaxPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient

from connectors.errors import ConnectorError
from connectors.kafka.message import NO_HEADERS, SourceMessage
from connectors.kafka.topics import DLQ_TOPICS
from connectors.ops.epochs import EpochClock
from connectors.ops.runtime import keep_thread_state

log = logging.getLogger(__name__)

_new = object.__new__
_set = object.__setattr__
_tuple_new = tuple.__new__


def _kafka_message(
    key: Any, value: Any, topic: Any, headers: Any, latency: Any, offset: Any, partition: Any, timestamp: Any
) -> KafkaSourceMessage[Any, Any]:
    m = _new(KafkaSourceMessage)
    _set(m, "__dict__", {
        "key": key, "value": value, "topic": topic, "headers": headers, "latency": latency, "offset": offset,
        "partition": partition, "timestamp": timestamp,
    })  # fmt: skip
    return m


def _reduce_message(m: KafkaSourceMessage[Any, Any]) -> tuple[Any, tuple[Any, ...]]:
    return _kafka_message, (m.key, m.value, m.topic, m.headers, m.latency, m.offset, m.partition, m.timestamp)


# Raw messages cross the worker exchange pickled (routed by key to the shard's process). Our
# sources' `SourceMessage` pickles as a tuple; bytewax's dataclass (a `TestingSource`'s, its
# `KafkaSource`'s) as its class and a dict of named fields. This reducer sends its values only
# and rebuilds it without `__init__`: 2.7 + 3.4 us -> 1.8 + 2.3 us a message (dump + load),
# 410 -> 305 bytes, equal objects. (`SourceMessage`'s fields are bytewax's, in its order:
# checked at import by `connectors.kafka.message`.)
copyreg.pickle(KafkaSourceMessage, _reduce_message)

CONSUMER_DEFAULTS: Final[Mapping[str, str]] = {
    # librdkafka's prefetch is what a catch-up costs in memory, not the job's state: by default
    # it queues up to 100k messages or 64 MiB per partition and asks for fetch responses of up
    # to 50 MiB. bench/catchup.py, 5M messages over 4 partitions, peak RSS over the same job's
    # steady state: 3.49x with the defaults (16 MiB queues), 1.80x at 10k messages, 1.62x at
    # 5k, 1.60x at 2k, the catch-up no slower (68-76 vs 81 s); 1000 messages and 1 MiB fetches
    # were 4x slower, and 2k was slower than 10k on a 500k-message run: 5k is the middle.
    "queued.max.messages.kbytes": "16384",
    "queued.min.messages": "5000",
    "fetch.max.bytes": "2097152",
    # 128 KiB, not 512: a fetch of lz4 batches holds far more messages than queued.min.messages
    # once decompressed, each allocated in its consumer's malloc arena; the catch-up peak was
    # mostly those (bench/catchup.py --diagnose: 4 arenas of ~22 MiB at the peak, 1.5 MiB
    # steady). Peak / steady 1.71-1.80x -> 1.43x, the catch-up no slower (101k -> 109k msg/s).
    "max.partition.fetch.bytes": "131072",
    # With the queue that small, librdkafka's default 1 s pause of a partition whose queue is
    # over those limits (librdkafka >= 2.4) left the worker waiting for data: a bounded
    # 1M-message run took 16.6 s instead of 13.6 s for the same CPU time (it is probably also
    # why 1000 messages were 4x slower above). 10 ms re-checks the queue often enough to keep
    # it fed; the memory bound stays the one above.
    "fetch.queue.backoff.ms": "10",
}


_OFFSETS: Final = {
    "earliest": OFFSET_BEGINNING,
    "beginning": OFFSET_BEGINNING,
    "latest": OFFSET_END,
    "end": OFFSET_END,
}

Topics = Sequence[str] | str | re.Pattern[str]
"""Explicit names, one name, or a pattern: a `re.Pattern` or a string starting with `^`
(librdkafka's convention for subscription patterns)."""


def broker_list(brokers: Sequence[str] | str) -> list[str]:
    """`"a:9092,b:9092"` (as in $KAFKA_BOOTSTRAP_SERVERS) or a list."""
    items = brokers.split(",") if isinstance(brokers, str) else list(brokers)
    out = [b.strip() for b in items if b.strip()]
    if not out:
        raise ConnectorError("no Kafka brokers given")
    return out


def _offset(starting_offset: int | str) -> int:
    if isinstance(starting_offset, int):
        return starting_offset
    try:
        return _OFFSETS[starting_offset.strip().lower()]
    except KeyError:
        raise ConnectorError(
            f"starting offset {starting_offset!r}: expected 'earliest' or 'latest'"
        ) from None


def resolve_topics(
    brokers: Sequence[str] | str,
    topics: Topics,
    *,
    add_config: Mapping[str, Any] | None = None,
    exclude: Collection[str] = DLQ_TOPICS,
    timeout_s: float = 10.0,
) -> list[str]:
    """Topic names for `topics`; a pattern is matched (`re.search`, like librdkafka) against
    the broker's topics, minus `exclude` and internal `__*` topics, sorted."""
    if isinstance(topics, str) and not topics.startswith("^"):
        return [topics]
    if not isinstance(topics, str | re.Pattern):
        names = [t for t in topics if t]
        if not names:
            raise ConnectorError("empty topic list")
        return names
    try:
        pattern = re.compile(topics) if isinstance(topics, str) else topics
    except re.error as exc:
        raise ConnectorError(f"invalid topic pattern {topics!r}: {exc}") from exc
    config: dict[str, Any] = {"bootstrap.servers": ",".join(broker_list(brokers))}
    config.update(add_config or {})
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConnectorError(f"cannot list topics on {config['bootstrap.servers']}: {exc}") from exc
    names = sorted(
        name
        for name in metadata.topics
        if pattern.search(name) and name not in exclude and not name.startswith("__")
    )
    if not names:
        raise ConnectorError(
            f"no topic on {config['bootstrap.servers']} matches the pattern {pattern.pattern}"
            f" (excluding {', '.join(sorted(exclude)) or 'nothing'})"
        )
    return names


IDLE_POLL_MAX_S: Final = 0.05
"""Longest pause between polls of an idle partition: bounds the latency a quiet topic adds."""

PROGRESS_INTERVAL_S: Final = 0.2
"""How often a partition reports its progress (markers are broadcast to every alert shard).
A silent instance's tick is decided at the first marker after its lateness elapsed: at 1 s
that wait was most of the job's p99 under load (bench/delivery.py); a marker costs each shard
one comparison per instance (`ShardEngine.advance_idle`)."""


@dataclass(frozen=True, slots=True)
class SourceProgress:
    """In-band marker: partition `part` had been read to the end as of wall time `caught_up_at`.

    `caught_up_at` is -inf while the partition is still behind since start; `parts` is the number
    of partitions of the whole source, so a reader knows when it has heard from every one.
    """

    part: str
    caught_up_at: float
    parts: int


class _MetricPartition(_BytewaxPartition):
    """bytewax's partition reader plus idle back-off and progress markers (module docstring)."""

    def __init__(
        self,
        *args: Any,
        start: int,
        parts: int,
        progress: bool,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(*args)
        self._tp = TopicPartition(self._topic, self._part_idx)
        self._key = f"{self._part_idx}-{self._topic}"
        self._parts = parts
        self._progress = progress
        self._clock = clock
        self._start = start
        self._caught_up_at = -math.inf
        self._reported = -math.inf
        self._pause = 0.0
        self._awake: datetime | None = None
        # an idle partition wakes at its epoch's end too (connectors/ops/epochs.py)
        self._epoch = EpochClock(clock=clock)
        self._epoch.seen()  # built in the activation that starts its first epoch

    def _at_end(self) -> bool:
        """Everything the broker had at the last fetch has been read (cached: no round trip)."""
        try:
            low, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        except KafkaException:
            return False
        if high < 0:  # no fetch answer yet
            return False
        if self._offset >= 0:
            return bool(self._offset >= high)
        # nothing read since start: an empty partition, or a start at its end
        return bool(high == low or self._start == OFFSET_END)

    def _read(self) -> list[Any]:
        """bytewax's `next_batch`, building each message as a `SourceMessage` rather than
        bytewax's dataclass (`connectors.kafka.message`: about half the cost), inlined because
        it runs once per message; topic and partition are this partition's, not a string and an
        int fetched from every message. And without its 1 ms wait for a full batch:
        a live partition rarely has one, so every read slept its millisecond while the other
        partitions' messages and the evaluation waited; an empty read backs off instead
        (`next_batch`)."""
        if self._eof:
            raise StopIteration()
        batch: list[Any] = []
        last_offset = None
        topic, part = self._topic, self._part_idx
        for msg in self._consumer.consume(self._batch_size, 0):
            error = msg.error()
            if error is not None:
                if error.code() == ConfluentKafkaError._PARTITION_EOF:
                    self._eof = True  # emit this batch, stop at the next call
                    break
                if self._raise_on_errors:
                    raise RuntimeError(f"error consuming from Kafka topic `{self._topic!r}`: {error}")
            headers = msg.headers()
            offset = msg.offset()
            m = _tuple_new(SourceMessage, (
                msg.key(), msg.value(), topic, NO_HEADERS if headers is None else headers, None, offset, part,
                msg.timestamp(),
            ))  # fmt: skip
            batch.append(m if error is None else KafkaError(error, m))  # type: ignore[arg-type]  # duck-typed
            last_offset = offset
        if last_offset is not None:  # resume from the next message, not this one
            self._offset = last_offset + 1
        return batch

    def next_batch(self) -> list[Any]:
        batch = self._read()
        now = self._clock()
        if batch:
            self._pause = 0.0
            self._awake = None
        else:  # idle: wait a little longer each time, up to IDLE_POLL_MAX_S
            self._pause = min(IDLE_POLL_MAX_S, max(0.001, self._pause * 2))
            self._awake = self._epoch.wake_dt(now + self._pause)
        if self._progress:
            if len(batch) < self._batch_size and self._at_end():
                self._caught_up_at = now
            if now - self._reported >= PROGRESS_INTERVAL_S:
                self._reported = now
                batch.append(SourceProgress(self._key, self._caught_up_at, self._parts))
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int | None:
        self._epoch.ended()  # Bytewax ends this partition's epoch now
        return super().snapshot()


class MetricKafkaSource(KafkaSource):
    """`KafkaSource` whose partitions back off when idle and can report progress in-band.

    Its items are `SourceMessage`s (`connectors.kafka.message`), not the `KafkaSourceMessage`s
    its base class is typed with: the same fields, read the same way."""

    def __init__(
        self, *args: Any, progress: bool = False, clock: Callable[[], float] = time.time, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._progress = progress
        self._clock = clock
        self._parts: int | None = None

    def list_parts(self) -> list[str]:
        # bytewax's own passes every consumer setting to an admin client, which warns about them
        config: dict[str, Any] = {"bootstrap.servers": ",".join(self._brokers)}
        config.update({k: v for k, v in self._add_config.items() if k not in CONSUMER_DEFAULTS})
        parts = list(_list_parts(AdminClient(config), self._topics))
        self._parts = len(parts)
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _MetricPartition:
        keep_thread_state()  # runs on the worker thread (connectors/ops/runtime.py)
        idx, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ConnectorError(
                f"the recovery state holds partition {for_part!r} of a topic this job no longer reads"
                f" ({', '.join(self._topics)}): start with a fresh recovery directory"
            )
        config = {
            "group.id": "BYTEWAX_IGNORED",  # offsets live in the recovery snapshots
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
        }
        config.update(self._add_config)
        parts = self._parts if self._parts is not None else len(self.list_parts())
        # which worker reads what, and from where: the line an operator looks for after a
        # restart or a rescale (and bench/alerting.py's start of a run: the cluster is formed)
        start = _start_text(resume_state, self._starting_offset)
        log.info("kafka: reading %s partition %s from %s", topic, idx, start)
        return _MetricPartition(
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset,
            resume_state,
            self._batch_size,
            self._raise_on_errors,
            start=self._starting_offset,
            parts=parts,
            progress=self._progress,
            clock=self._clock,
        )


def _start_text(resume_state: int | None, starting_offset: int) -> str:
    if resume_state is not None:
        return f"offset {resume_state} (recovery)"
    if starting_offset == OFFSET_BEGINNING:
        return "its beginning"
    if starting_offset == OFFSET_END:
        return "its end (new messages only)"
    return f"offset {starting_offset}"


def metric_source(
    brokers: Sequence[str] | str,
    topics: Topics,
    *,
    add_config: Mapping[str, Any] | None = None,
    starting_offset: int | str = OFFSET_BEGINNING,
    batch_size: int = 1000,
    tail: bool = True,
    raise_on_errors: bool = True,
    exclude: Collection[str] = DLQ_TOPICS,
    progress: bool = False,
) -> MetricKafkaSource:
    """A `KafkaSource` over metric topics given by name or pattern (see module docstring).

    Items are `SourceMessage`s with raw bytes: decode them after routing by key, so
    that parsed objects never cross the worker exchange. `progress=True` adds
    `SourceProgress` markers to the stream (the consumer must handle them).
    """
    names = resolve_topics(brokers, topics, add_config=add_config, exclude=exclude)
    return MetricKafkaSource(
        broker_list(brokers),
        names,
        tail=tail,
        starting_offset=_offset(starting_offset),
        add_config={**CONSUMER_DEFAULTS, **(add_config or {})},
        batch_size=batch_size,
        raise_on_errors=raise_on_errors,
        progress=progress,
    )
