"""Raw messages cross the worker exchange pickled: our sources' `SourceMessage` as a tuple, and
bytewax's `KafkaSourceMessage` (a `TestingSource`'s) through the compact reducer that
connectors.kafka.source registers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

import connectors.kafka.source  # noqa: F401 - registers the reducer
from connectors.kafka.message import NO_HEADERS, MessageChunk, SourceMessage, is_message, source_message
from connectors.kafka.source import SourceProgress

FIELDS: dict[str, Any] = {
    "key": b"db-1",
    "value": b'{"v": 1}',
    "topic": "gds.metrics.x",
    "headers": [("traceparent", b"00-a")],
    "partition": 3,
    "offset": 42,
    "timestamp": (1, 1736935200000),
}


@pytest.mark.parametrize("kind", [SourceMessage, KafkaSourceMessage])
def test_a_message_pickles_as_its_values_and_comes_back_equal(kind: Any) -> None:
    m = kind(**FIELDS)
    blob = pickle.dumps(("s001", m), protocol=pickle.HIGHEST_PROTOCOL)
    back: Any = pickle.loads(blob)[1]
    assert back == m and type(back) is kind
    assert back.headers == [("traceparent", b"00-a")] and back.latency is None
    # the field names are not in the blob: the dataclass's own pickling would write them all
    assert b"partition" not in blob and b"timestamp" not in blob


def test_source_message_builds_what_the_named_tuple_would() -> None:
    built = source_message(
        b"db-1", b'{"v": 1}', "gds.metrics.x", 3, 42, (1, 1736935200000), [("traceparent", b"00-a")]
    )
    assert built == SourceMessage(**FIELDS) and type(built) is SourceMessage
    bare = source_message(None, b"x", "t", 0, 7)
    assert bare.headers is NO_HEADERS and bare.timestamp is None and bare.latency is None


def test_both_message_types_are_messages_and_markers_are_not() -> None:
    assert is_message(SourceMessage(**FIELDS)) and is_message(KafkaSourceMessage(**FIELDS))
    assert not is_message(("s001", []))
    # the same attribute names, in the same order: code reads either type alike
    a, b = SourceMessage(**FIELDS), KafkaSourceMessage(**FIELDS)
    assert [getattr(a, f) for f in SourceMessage._fields] == [getattr(b, f) for f in SourceMessage._fields]


def _messages(n: int) -> list[SourceMessage]:
    return [
        source_message(b"db-%d" % i, b'{"v": %d}' % i, "gds.metrics.x", i % 4, i, (1, i)) for i in range(n)
    ]


def _round_trip(chunk: MessageChunk) -> Any:
    return pickle.loads(pickle.dumps(("s001", chunk), protocol=pickle.HIGHEST_PROTOCOL))[1]


def test_a_chunk_crosses_as_columns_and_comes_back_as_it_was() -> None:
    msgs = _messages(16)
    msgs[3] = msgs[3]._replace(headers=[("traceparent", b"00-a")])
    marker = SourceProgress("0-gds.metrics.x", 12.5, 4)
    chunk = MessageChunk([*msgs, marker])
    blob = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(blob)
    assert back == chunk and type(back) is MessageChunk
    assert [type(m) for m in back] == [SourceMessage] * 16 + [SourceProgress]
    # columns: the message class is not written once per message
    assert blob.count(b"SourceMessage") == 0


def test_chunks_that_are_not_all_our_messages_cross_item_by_item() -> None:
    theirs = KafkaSourceMessage(**FIELDS)
    marker = SourceProgress("0-gds.metrics.x", 12.5, 4)
    mixed = MessageChunk([*_messages(2), theirs, *_messages(1)])
    for chunk in (mixed, MessageChunk([marker]), MessageChunk()):
        back = _round_trip(chunk)
        assert back == chunk and type(back) is MessageChunk
        assert [type(m) for m in back] == [type(m) for m in chunk]
