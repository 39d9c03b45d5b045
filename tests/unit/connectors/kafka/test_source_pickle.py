"""Raw messages cross the worker exchange pickled: our sources' `SourceMessage` as a tuple, and
bytewax's `KafkaSourceMessage` (a `TestingSource`'s) through the compact reducer that
connectors.kafka.source registers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

import connectors.kafka.source  # noqa: F401 - registers the reducer
from connectors.kafka.message import NO_HEADERS, SourceMessage, is_message, source_message

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
