"""Kafka sink for the flows: at-least-once producer settings and a sink that fails loudly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bytewax.connectors.kafka import KafkaSink
from confluent_kafka import (
    KafkaError,
    Message,
)

from connectors.errors import ConnectorError
from connectors.kafka.source import broker_list

PRODUCER_DEFAULTS: Final[Mapping[str, str]] = {
    "acks": "all",  # a write is durable once the in-sync replicas have it
    "enable.idempotence": "true",  # librdkafka retries never duplicate or reorder
    "linger.ms": "5",  # small: the sink flushes every batch anyway
    "compression.type": "lz4",
}


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
        "bootstrap.servers": ",".join(broker_list(brokers)),
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
    return KafkaSink(broker_list(brokers), topic, add_config=producer_config(brokers, add_config))
