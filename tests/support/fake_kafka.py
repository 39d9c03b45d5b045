"""Stand-ins for a librdkafka delivery report's `Message` and for a consumer reading one partition
back, for unit tests of what producers do with delivery outcomes (connectors/kafka/landed.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError


class FakeMsg:
    """A delivered (or read) record of partition 0, or an error such as partition EOF."""

    def __init__(
        self, topic: str, offset: int = -1, key: bytes | None = None, value: bytes = b"", error: Any = None
    ) -> None:
        self._topic, self._offset, self._key, self._value, self._error = topic, offset, key, value, error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def error(self) -> Any:
        return self._error


class Log:
    """The one partition of `topic` as the broker wrote it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.entries: list[tuple[bytes | None, bytes]] = []

    def write(self, key: bytes | None, value: bytes) -> int:
        self.entries.append((key, value))
        return len(self.entries) - 1

    def values(self) -> list[bytes]:
        return [value for _key, value in self.entries]


class FakeConsumer:
    """Reads a `Log` back as `Landed` does: from the assigned offset to the end, then EOF."""

    def __init__(self, log: Log) -> None:
        self.log, self.at = log, 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={self.log.topic: SimpleNamespace(error=None, partitions={0: None})})

    def get_watermark_offsets(self, tp: Any, timeout: float = -1) -> tuple[int, int]:
        return 0, len(self.log.entries)

    def assign(self, parts: list[Any]) -> None:
        self.at = parts[0].offset

    def consume(self, n: int, timeout: float) -> list[FakeMsg]:
        topic, entries = self.log.topic, self.log.entries
        out = [FakeMsg(topic, o, *entries[o]) for o in range(self.at, len(entries))]
        self.at = len(entries)
        return [*out, FakeMsg(topic, error=KafkaError(KafkaError._PARTITION_EOF))]

    def close(self) -> None:
        pass
