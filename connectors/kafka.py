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
  are ours, not the consumer's: they never reach this layer (see connectors/serde.py).
- `tail=False` ends each partition at its end offset: used by tests and replays.

`KafkaSink` flushes after every batch but ignores delivery reports, so a message the broker
refuses would be lost silently; `kafka_sink` installs a delivery callback that raises
instead, which stops the flow and makes the resumed epoch send it again.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from bytewax.connectors.kafka import KafkaSink, KafkaSource
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from connectors.errors import ConnectorError
from connectors.topics import DLQ_TOPICS

CONSUMER_DEFAULTS: Final[Mapping[str, str]] = {
    # librdkafka prefetches up to 64 MiB per partition by default: during a catch-up that is
    # most of a job's memory (measured: 463 MiB RSS for 1M messages over 4 partitions).
    # 16 MiB still keeps a batch of 1000 ready on every poll.
    "queued.max.messages.kbytes": "16384",
}

PRODUCER_DEFAULTS: Final[Mapping[str, str]] = {
    "acks": "all",  # a write is durable once the in-sync replicas have it
    "enable.idempotence": "true",  # librdkafka retries never duplicate or reorder
    "linger.ms": "5",  # small: the sink flushes every batch anyway
    "compression.type": "lz4",
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


def _brokers(brokers: Sequence[str] | str) -> list[str]:
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
    config: dict[str, Any] = {"bootstrap.servers": ",".join(_brokers(brokers))}
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
) -> KafkaSource:
    """A `KafkaSource` over metric topics given by name or pattern (see module docstring).

    Items are `KafkaSourceMessage`s with raw bytes: decode them after routing by key, so
    that parsed objects never cross the worker exchange.
    """
    names = resolve_topics(brokers, topics, add_config=add_config, exclude=exclude)
    return KafkaSource(
        _brokers(brokers),
        names,
        tail=tail,
        starting_offset=_offset(starting_offset),
        add_config={**CONSUMER_DEFAULTS, **(add_config or {})},
        batch_size=batch_size,
        raise_on_errors=raise_on_errors,
    )


def _raise_on_delivery_error(err: KafkaError | None, msg: Message) -> None:
    """Runs inside `poll`/`flush`; confluent-kafka re-raises it there, in `write_batch`."""
    if err is not None:
        raise ConnectorError(f"delivery to {msg.topic()} [{msg.partition()}] failed: {err.str()}")


def _raise_on_fatal(err: KafkaError) -> None:
    """Transient errors (broker restarts) are retried by librdkafka; fatal ones end the producer."""
    if err.fatal():
        raise ConnectorError(f"fatal Kafka producer error: {err.str()}")


def producer_config(
    brokers: Sequence[str] | str, add_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """At-least-once producer settings; `add_config` wins over the defaults."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(_brokers(brokers)),
        **PRODUCER_DEFAULTS,
        "on_delivery": _raise_on_delivery_error,
        "error_cb": _raise_on_fatal,
    }
    config.update(add_config or {})
    return config


def kafka_sink(
    brokers: Sequence[str] | str, topic: str | None, add_config: Mapping[str, Any] | None = None
) -> KafkaSink:
    """A `KafkaSink` that fails loudly on undelivered messages.

    `topic=None` takes the topic of each `KafkaSinkMessage` (one sink for several topics).
    """
    return KafkaSink(_brokers(brokers), topic, add_config=producer_config(brokers, add_config))
