"""Raw messages cross the worker exchange pickled: connectors.kafka.source registers a compact
reducer for bytewax's KafkaSourceMessage."""

from __future__ import annotations

import pickle

import connectors.kafka.source  # noqa: F401 - registers the reducer
from connectors.kafka.replay import source_message


def test_a_message_pickles_as_its_values_and_comes_back_equal() -> None:
    m = source_message(
        b"db-1", b'{"v": 1}', "gds.metrics.x", 3, 42, (1, 1736935200000), [("traceparent", b"00-a")]
    )
    blob = pickle.dumps(("s001", m), protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(blob)[1]
    assert back == m and type(back) is type(m)
    assert back.headers == [("traceparent", b"00-a")] and back.latency is None
    # the field names are not in the blob: the dataclass's own pickling would write them all
    assert b"partition" not in blob and b"timestamp" not in blob
