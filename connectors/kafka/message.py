"""The raw message our sources emit: bytewax's `KafkaSourceMessage` fields, as a named tuple.

bytewax's `KafkaSourceMessage` is a generic dataclass: an object and an 8-entry `__dict__`,
both tracked by the garbage collector. In the live read loop (1,000-message batches, 200k
messages of bench/alerting's topic) building one cost 1.4-1.9 us a message; this tuple of the
same fields 0.7-1.0 us, and the empty headers are a shared tuple rather than a new list. It
pickles as its class and its values (the worker exchange), no field names.

Code reads the same attributes from either type, so flows fed bytewax's own messages (a
`TestingSource` in the tests, bytewax's `KafkaSource`) work unchanged: where a step must tell
a message from an in-band marker, it asks `is_message` or `MESSAGE_TYPES`, never one class.
"""

from __future__ import annotations

from dataclasses import fields
from itertools import repeat
from typing import Any, Final, NamedTuple, TypeAlias

from bytewax.connectors.kafka import KafkaSourceMessage

NO_HEADERS: Final[tuple[tuple[str, bytes], ...]] = ()


class SourceMessage(NamedTuple):
    """One Kafka record (or one line of a recording) as read, not yet decoded."""

    key: Any
    value: Any
    topic: str | None = None
    headers: Any = NO_HEADERS  # list of (name, bytes) from the broker, or NO_HEADERS
    latency: float | None = None
    offset: int | None = None
    partition: int | None = None
    timestamp: tuple[int, int] | None = None


Message: TypeAlias = "SourceMessage | KafkaSourceMessage[Any, Any]"
"""What a source of raw metrics yields, besides in-band markers."""

MESSAGE_TYPES: Final[frozenset[Any]] = frozenset({SourceMessage, KafkaSourceMessage})
"""`x.__class__ in MESSAGE_TYPES`: one hash lookup, the per-message form of `is_message`."""


def is_message(item: object) -> bool:
    """A raw message of either type (not a marker, not an error item)."""
    return item.__class__ in MESSAGE_TYPES


def check_message_fields(user: str) -> None:
    """`SourceMessage` must keep bytewax's field names and order, or code written against one
    would read the wrong field of the other. A real check, not an `assert` (`python -O` strips
    those, and messages would then miss or invent fields without a word)."""
    theirs = tuple(f.name for f in fields(KafkaSourceMessage))
    if theirs != SourceMessage._fields:
        raise ImportError(
            f"bytewax changed KafkaSourceMessage (fields {list(theirs)}, "
            f"expected {list(SourceMessage._fields)}): update {user}"
        )


check_message_fields("connectors/kafka/message.py's SourceMessage")

_tuple_new = tuple.__new__


def source_message(
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp: tuple[int, int] | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    latency: float | None = None,
) -> SourceMessage:
    """A `SourceMessage` without the named tuple's keyword `__new__` (one C call)."""
    hs = NO_HEADERS if headers is None else headers
    return _tuple_new(SourceMessage, (key, value, topic, hs, latency, offset, partition, timestamp))


_REPEAT_TYPE: Final = repeat(SourceMessage)  # map() stops at its shortest input


class MessageChunk(list[Any]):
    """One shard's share of a source batch (`flows.common.evaluate`): its messages, then any
    in-band markers, in order. A plain list in the process that built it. Crossing to another
    process Bytewax pickles it, and a list of named tuples pickles as a class reference and a
    Python-level `__new__` call per message: 1.5 us a message dumped and loaded (16-message
    chunks, the job's). In columns, eight tuples of plain values, 0.8 us, rebuilt as it was.
    With 2 processes half the messages cross: the columns took 10 % off a bounded run."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        n = len(self)
        while n and self[n - 1].__class__ is not SourceMessage:
            n -= 1  # trailing markers travel as they are
        head = self if n == len(self) else self[:n]
        if n and set(map(type, head)) == {SourceMessage}:
            return (_chunk_from_columns, (tuple(zip(*head, strict=True)), self[n:]))
        return (MessageChunk, (list(self),))  # anything else: item by item


def _chunk_from_columns(columns: tuple[tuple[Any, ...], ...], rest: list[Any]) -> MessageChunk:
    chunk = MessageChunk(map(_tuple_new, _REPEAT_TYPE, zip(*columns, strict=True)))
    chunk.extend(rest)
    return chunk
