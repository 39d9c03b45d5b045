"""Undeliverable notifications -> Kafka (`gds.alerts.dlq`), synchronously.

Rare by construction (only after the whole retry budget), so each record is flushed before
the sink moves on: if even Kafka refuses it, the error propagates and the flow restarts
from its last snapshot rather than losing the alert.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Producer

from connectors.errors import ConnectorError
from connectors.ops.metrics import METRICS
from rules.model import AlertEvent


class UndeliveredToKafka:
    """Callable `on_undeliverable(event, payload, error)` for `connectors.notify.NotifySink`."""

    def __init__(self, producer_config: Mapping[str, Any], topic: str, timeout_s: float = 30.0) -> None:
        self._producer = Producer(dict(producer_config))
        self._topic = topic
        self._timeout = timeout_s
        self._lock = threading.Lock()

    def __call__(self, event: AlertEvent, payload: Mapping[str, Any] | None, error: str) -> None:
        body = {"error": error, "event": event.to_record(), "payload": dict(payload) if payload else None}
        failures: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                failures.append(str(err))

        with self._lock:
            self._producer.produce(
                self._topic, json.dumps(body).encode(), event.message_id.encode(), on_delivery=delivered
            )
            left = self._producer.flush(self._timeout)
        if left or failures:
            raise ConnectorError(
                f"could not write undeliverable notification {event.message_id} to {self._topic}: "
                f"{failures or 'flush timed out'}"
            )
        METRICS.record_dlq("alerting", "notify")
