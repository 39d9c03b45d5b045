"""Dead-letter records: everything needed to find, understand and replay the original."""

from __future__ import annotations

import base64
import json

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

from connectors.errors import ConnectorError
from connectors.kafka.dlq import (
    H_ERROR,
    H_OFFSET,
    H_PARTITION,
    H_STAGE,
    H_TOPIC,
    MAX_RAW_BYTES,
    MAX_RAW_TEXT_BYTES,
    DeadLetter,
    dead_letter,
    dead_letter_from,
    parse_dead_letter,
)

AT = 1736937000.25  # 2025-01-15T10:30:00.250Z
RAW = b'{"timestamp": "2025-01-15T10:30:00Z", "value": NaN}'


def test_dead_letter_keeps_key_origin_error_and_raw_bytes() -> None:
    out = dead_letter(
        RAW, b"prod-db-01", "gds.metrics.postgresql.production", 3, 1234, "value is nan", "decode", AT
    )
    assert out.key == b"prod-db-01"
    assert out.topic is None  # the sink's topic decides
    assert out.timestamp == 1736937000250
    body = json.loads(out.value)
    assert body == {
        "error": "value is nan",
        "stage": "decode",
        "origin": {"topic": "gds.metrics.postgresql.production", "partition": 3, "offset": 1234},
        "failed_at": "2025-01-15T10:30:00.250Z",
        "raw_size": len(RAW),
        "raw_base64": base64.b64encode(RAW).decode(),
        "raw_text": RAW.decode(),
    }
    assert dict(out.headers) == {
        H_TOPIC: b"gds.metrics.postgresql.production",
        H_PARTITION: b"3",
        H_OFFSET: b"1234",
        H_STAGE: b"decode",
        H_ERROR: b"value is nan",
    }
    assert all(isinstance(v, bytes) for _, v in out.headers)


def test_parse_dead_letter_round_trips() -> None:
    out = dead_letter(RAW, b"k", "t", 0, 7, "bad", "decode", AT)
    assert parse_dead_letter(out.value, out.key) == DeadLetter(
        error="bad",
        stage="decode",
        topic="t",
        partition=0,
        offset=7,
        failed_at="2025-01-15T10:30:00.250Z",
        raw=RAW,
        raw_text=RAW.decode(),
        raw_size=len(RAW),
        raw_truncated=False,
        key=b"k",
    )


def test_binary_raw_has_no_text() -> None:
    raw = b"\x00\x00\x00\x00\x07\xff\xfe\x80"
    dl = parse_dead_letter(dead_letter(raw, None, "t", 0, 1, "bad magic", "decode", AT).value)
    assert dl.raw == raw
    assert dl.raw_text is None


def test_tombstone_and_missing_origin() -> None:
    out = dead_letter(None, None, None, None, None, "empty message", "decode", AT)
    dl = parse_dead_letter(out.value)
    assert (dl.raw, dl.raw_size, dl.topic, dl.partition, dl.offset) == (None, None, None, None, None)
    assert {k for k, _ in out.headers} == {H_STAGE, H_ERROR}


def test_huge_raw_is_truncated_so_the_dead_letter_itself_fits_the_broker() -> None:
    raw = b"x" * (MAX_RAW_BYTES + 10)
    out = dead_letter(raw, b"k", "t", 0, 1, "too big", "decode", AT)
    dl = parse_dead_letter(out.value)
    assert dl.raw_truncated and dl.raw_size == len(raw)
    assert dl.raw == raw[:MAX_RAW_BYTES]
    assert dl.raw_text is None  # over MAX_RAW_TEXT_BYTES
    assert len(out.value) < 1_000_000
    assert parse_dead_letter(
        dead_letter(b"y" * MAX_RAW_TEXT_BYTES, None, "t", 0, 1, "e", "s", AT).value
    ).raw_text


def test_long_errors_are_bounded() -> None:
    out = dead_letter(b"x", None, "t", 0, 1, "e" * 10_000, "decode", AT)
    assert len(parse_dead_letter(out.value).error) == 2000
    assert len(dict(out.headers)[H_ERROR]) == 256


def test_dead_letter_from_source_message_and_explicit_topic() -> None:
    msg = KafkaSourceMessage(key=b"k", value=RAW, topic="in", partition=2, offset=99)
    out = dead_letter_from(msg, "bad", "decode", AT, dlq_topic="gds.metrics.dlq")
    assert out.topic == "gds.metrics.dlq"
    assert out == dead_letter(RAW, b"k", "in", 2, 99, "bad", "decode", AT, dlq_topic="gds.metrics.dlq")


def test_dead_letter_is_pure() -> None:
    args = (RAW, b"k", "t", 1, 2, "err", "decode", AT)
    assert dead_letter(*args) == dead_letter(*args)


@pytest.mark.parametrize(
    "value", [b"not json", b"{}", b'{"error": "x"}', b"[]", b'{"origin": 1, "error": "e"}']
)
def test_parse_rejects_what_is_not_a_dead_letter(value: bytes) -> None:
    with pytest.raises(ConnectorError, match="not a dead-letter record"):
        parse_dead_letter(value)
