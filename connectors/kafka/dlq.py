"""Dead-letter records: what a flow produces instead of stopping on a bad message.

A DLQ record must let someone find, understand and replay the original without access to
the flow: the original key stays the key (same partitioning, compaction-friendly), the
value is JSON with the error, the stage that failed, the origin (topic, partition,
offset) and the raw bytes, and the origin is repeated in headers so tools can filter
without parsing the value.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage

from connectors.errors import ConnectorError
from connectors.kafka.message import SourceMessage
from connectors.kafka.topics import METRICS_DLQ_TOPIC
from rules.metric import iso

__all__ = ["METRICS_DLQ_TOPIC", "DeadLetter", "dead_letter", "dead_letter_from", "parse_dead_letter"]

# A raw message near the broker's 1 MB limit grows by a third in base64: bound it, or the
# dead letter itself is refused and the flow crash-loops on the message it meant to park.
MAX_RAW_BYTES: Final = 512 * 1024
MAX_RAW_TEXT_BYTES: Final = 64 * 1024
MAX_ERROR_CHARS: Final = 2000

_K = TypeVar("_K", bound=bytes | None)
_V = TypeVar("_V", bound=bytes | None)

H_TOPIC: Final = "dlq.origin.topic"
H_PARTITION: Final = "dlq.origin.partition"
H_OFFSET: Final = "dlq.origin.offset"
H_STAGE: Final = "dlq.stage"
H_ERROR: Final = "dlq.error"


def dead_letter(
    raw_value: bytes | None,
    raw_key: bytes | None,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    error: str,
    stage: str,
    at: float,
    *,
    dlq_topic: str | None = None,
) -> KafkaSinkMessage[bytes | None, bytes]:
    """The DLQ record for one failed message (pure: `at` is the failure time, epoch seconds).

    `dlq_topic=None` leaves the topic to the sink (`kafka_sink(brokers, METRICS_DLQ_TOPIC)`).
    The record's Kafka timestamp is the failure time.
    """
    error = error[:MAX_ERROR_CHARS]
    body: dict[str, Any] = {
        "error": error,
        "stage": stage,
        "origin": {"topic": topic, "partition": partition, "offset": offset},
        "failed_at": iso(at),
        "raw_size": None if raw_value is None else len(raw_value),
        "raw_base64": None,
    }
    if raw_value is not None:
        kept = raw_value[:MAX_RAW_BYTES]
        body["raw_base64"] = base64.b64encode(kept).decode("ascii")
        if len(kept) < len(raw_value):
            body["raw_truncated"] = True
        if len(raw_value) <= MAX_RAW_TEXT_BYTES:
            with contextlib.suppress(UnicodeDecodeError):  # binary (Avro): base64 only
                body["raw_text"] = raw_value.decode("utf-8")
    headers: list[tuple[str, bytes]] = []
    if topic is not None:
        headers.append((H_TOPIC, topic.encode()))
    if partition is not None:
        headers.append((H_PARTITION, str(partition).encode()))
    if offset is not None:
        headers.append((H_OFFSET, str(offset).encode()))
    headers.append((H_STAGE, stage.encode()))
    headers.append((H_ERROR, error[:256].encode()))
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return KafkaSinkMessage(raw_key, value, topic=dlq_topic, headers=headers, timestamp=int(at * 1000))


def dead_letter_from(
    msg: KafkaSourceMessage[_K, _V] | SourceMessage,
    error: str,
    stage: str,
    at: float,
    *,
    dlq_topic: str | None = None,
) -> KafkaSinkMessage[bytes | None, bytes]:
    """`dead_letter` for a message as a source delivered it."""
    return dead_letter(
        msg.value, msg.key, msg.topic, msg.partition, msg.offset, error, stage, at, dlq_topic=dlq_topic
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A DLQ record read back (tests, replay tooling)."""

    error: str
    stage: str
    topic: str | None
    partition: int | None
    offset: int | None
    failed_at: str
    raw: bytes | None
    raw_text: str | None
    raw_size: int | None
    raw_truncated: bool
    key: bytes | None = None


def parse_dead_letter(value: bytes, key: bytes | None = None) -> DeadLetter:
    """Read a DLQ record value (and optionally its key) back into a `DeadLetter`."""
    try:
        body = json.loads(value)
        origin = body["origin"]
        raw_b64 = body.get("raw_base64")
        return DeadLetter(
            error=body["error"],
            stage=body["stage"],
            topic=origin.get("topic"),
            partition=origin.get("partition"),
            offset=origin.get("offset"),
            failed_at=body["failed_at"],
            raw=None if raw_b64 is None else base64.b64decode(raw_b64, validate=True),
            raw_text=body.get("raw_text"),
            raw_size=body.get("raw_size"),
            raw_truncated=bool(body.get("raw_truncated", False)),
            key=key,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConnectorError(f"not a dead-letter record: {exc!r}") from exc
