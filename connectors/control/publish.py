"""Publish control events to `gds.control`: acks=all, idempotent, and confirmed before returning
(an API write answers 200 only once the event is durable)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.errors import ConnectorError
from connectors.kafka.sink import PRODUCER_DEFAULTS
from connectors.kafka.source import broker_list
from rules.control.events import ControlEvent, encode


class ControlPublisher:
    """One producer per process; `publish` blocks until the broker acknowledged the event."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        add_config: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(broker_list(brokers)),
            **PRODUCER_DEFAULTS,
            "linger.ms": "0",  # one event at a time, waited for
            "message.timeout.ms": str(int(timeout_s * 1000)),
        }
        config.update(add_config or {})
        self._producer = Producer(config)
        self._lock = threading.Lock()  # flush() per event: one at a time keeps errors attributable

    def publish(self, event: ControlEvent) -> None:
        """Durable on return, or `ConnectorError` saying why not (the caller answers 503)."""
        key, value = encode(event)
        errors: list[str] = []

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err.str())

        with self._lock:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=done)
            except (BufferError, Exception) as exc:  # KafkaException: unknown topic, bad config
                raise ConnectorError(f"cannot publish to {self.topic}: {exc}") from exc
            left = self._producer.flush(self.timeout_s)
        if left:
            raise ConnectorError(
                f"{self.topic}: the broker did not confirm the event within {self.timeout_s:g}s"
            )
        if errors:
            raise ConnectorError(f"{self.topic}: {errors[0]}")

    def close(self) -> None:
        self._producer.flush(self.timeout_s)
