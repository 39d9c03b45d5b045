"""Metric decoding: every timestamp form, every bad-input class, Avro wire format and schema evolution."""

from __future__ import annotations

import io
import json
import struct
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connectors.errors import ConnectorError, PoisonMessage
from connectors.kafka.serde import (
    MAX_ABS_VALUE,
    MAX_IDENTITY_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    SCHEMA_DIR,
    AvroCodec,
    decode_any,
    decode_json,
    encode_json,
    load_schema,
    make_decoder,
)
from rules.metric import Metric

T0 = 1736937000.0  # 2025-01-15T10:30:00Z
NOW = T0 + 60.0
SEED: dict[str, Any] = {
    "timestamp": "2025-01-15T10:30:00Z",
    "database_type": "postgresql",
    "instance_id": "prod-db-01",
    "metric_name": "cpu_usage_percent",
    "value": 85.5,
    "tags": {"environment": "production", "region": "us-east-1"},
    "metadata": {"collector": "pg-exporter", "version": "1.2"},
}


def msg(**changes: Any) -> bytes:
    """The seed message with fields replaced; `_drop` removes fields."""
    body = {**SEED, **changes}
    for name in changes.get("_drop", ()):
        del body[name]
    body.pop("_drop", None)
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- JSON: good input

GOOD = [
    pytest.param(msg(), T0, id="iso-z"),
    pytest.param(msg(timestamp="2025-01-15T12:30:00+02:00"), T0, id="iso-offset"),
    pytest.param(msg(timestamp="2025-01-15T05:30:00-05:00"), T0, id="iso-negative-offset"),
    pytest.param(msg(timestamp="2025-01-15T10:30:00.250Z"), T0 + 0.25, id="iso-fraction"),
    pytest.param(msg(timestamp="2025-01-15 10:30:00+00:00"), T0, id="iso-space-separator"),
    pytest.param(msg(timestamp=1736937000), T0, id="epoch-seconds-int"),
    pytest.param(msg(timestamp=1736937000.5), T0 + 0.5, id="epoch-seconds-float"),
    pytest.param(msg(timestamp=1736937000000), T0, id="epoch-millis"),
    pytest.param(msg(timestamp=1736937000250), T0 + 0.25, id="epoch-millis-fraction"),
    pytest.param(msg(timestamp=NOW + 600), NOW + 600, id="exactly-max-future"),
]


@pytest.mark.parametrize(("raw", "ts"), GOOD)
def test_decode_json_timestamp_forms(raw: bytes, ts: float) -> None:
    m = decode_json(raw, NOW)
    assert m == Metric(ts, "postgresql", "prod-db-01", "cpu_usage_percent", 85.5, SEED["tags"])
    assert type(m.ts) is float


def test_decode_json_returns_the_tags_dict_and_float_values() -> None:
    m = decode_json(msg(value=85), NOW)
    assert m.value == 85.0 and type(m.value) is float
    assert m.tags == {"environment": "production", "region": "us-east-1"}


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        pytest.param(msg(_drop=["tags"]), {}, id="absent"),
        pytest.param(msg(tags=None), {}, id="null"),
        pytest.param(msg(tags={}), {}, id="empty"),
        pytest.param(
            msg(tags={"port": 5432, "ratio": 0.5, "primary": True, "zone": "a"}),
            {"port": "5432", "ratio": "0.5", "primary": "true", "zone": "a"},
            id="scalars-stringified",
        ),
        pytest.param(msg(tags={"region": None, "zone": "a"}), {"zone": "a"}, id="null-tag-dropped"),
    ],
)
def test_decode_json_tags(raw: bytes, tags: dict[str, str]) -> None:
    assert decode_json(raw, NOW).tags == tags


def test_decode_json_max_future_is_a_parameter() -> None:
    raw = msg(timestamp=NOW + 30)
    assert decode_json(raw, NOW).ts == NOW + 30
    with pytest.raises(PoisonMessage, match="in the future"):
        decode_json(raw, NOW, max_future_s=10)


def test_decode_json_without_a_clock_accepts_any_future() -> None:
    """Backtests pass now=inf: event time only."""
    assert decode_json(msg(timestamp="2099-01-01T00:00:00Z"), float("inf")).ts == 4070908800.0


# --------------------------------------------------------------------------- JSON: bad input

BAD = [
    pytest.param(b"", "empty message", id="empty"),
    pytest.param(b"not json", "invalid JSON", id="not-json"),
    pytest.param(b'{"timestamp": ', "invalid JSON", id="truncated-json"),
    pytest.param(b'{"instance_id": "\xff"}', "not UTF-8", id="not-utf8"),
    pytest.param(b"[1, 2]", "not a JSON object (got array)", id="array"),
    pytest.param(b'"text"', "not a JSON object (got string)", id="string"),
    pytest.param(b"null", "not a JSON object (got null)", id="null"),
    pytest.param(msg(_drop=["value"]), "missing field(s): value", id="missing-value"),
    pytest.param(
        msg(_drop=["timestamp", "instance_id", "value"]),
        "missing field(s): timestamp, instance_id, value",
        id="missing-several-listed",
    ),
    pytest.param(
        b"{}", "missing field(s): timestamp, database_type, instance_id, metric_name, value", id="{}"
    ),
    pytest.param(msg(value=float("nan")), "NaN/Infinity", id="value-nan"),
    pytest.param(msg(value=float("inf")), "NaN/Infinity", id="value-infinity"),
    pytest.param(msg(value=float("-inf")), "NaN/Infinity", id="value-minus-infinity"),
    pytest.param(msg().replace(b"85.5", b"1e999"), "NaN/Infinity", id="value-overflows-to-inf"),
    pytest.param(msg(value=10**400), "out of the float range", id="value-huge-int"),
    pytest.param(msg(value=True), "value must be a number (got a bool)", id="value-bool"),
    pytest.param(msg(value="85.5"), "value must be a number (got string)", id="value-string"),
    pytest.param(msg(value=None), "value must be a number (got null)", id="value-null"),
    pytest.param(msg(value=[1]), "value must be a number (got array)", id="value-array"),
    pytest.param(msg(timestamp="2025-01-15T10:30:00"), "has no timezone", id="ts-naive"),
    pytest.param(msg(timestamp="2025-01-15"), "has no timezone", id="ts-date-only"),
    pytest.param(msg(timestamp="yesterday"), "is not ISO 8601", id="ts-garbage"),
    pytest.param(msg(timestamp=""), "is not ISO 8601", id="ts-empty"),
    pytest.param(msg(timestamp=True), "(got bool)", id="ts-bool"),
    pytest.param(msg(timestamp=None), "(got null)", id="ts-null"),
    pytest.param(msg(timestamp={"s": 1}), "(got object)", id="ts-object"),
    pytest.param(msg(timestamp=NOW + 601), "more than 600s in the future", id="ts-future-seconds"),
    pytest.param(msg(timestamp=(NOW + 3600) * 1000), "more than 600s in the future", id="ts-future-millis"),
    pytest.param(msg(timestamp="2999-01-01T00:00:00Z"), "in the future", id="ts-future-iso"),
    pytest.param(msg(timestamp="1999-12-31T23:59:59Z"), "before 2000", id="ts-1999"),
    pytest.param(msg(timestamp=0), "before 2000", id="ts-epoch-zero"),
    pytest.param(msg(timestamp=-5), "before 2000", id="ts-negative"),
    pytest.param(msg(timestamp=1e30), "not a plausible epoch number", id="ts-absurd-number"),
    pytest.param(msg().replace(b'"2025-01-15T10:30:00Z"', b"NaN"), "not a plausible epoch", id="ts-nan"),
    pytest.param(msg(instance_id=""), "instance_id is empty", id="instance-empty"),
    pytest.param(msg(instance_id=7), "instance_id must be a string (got number)", id="instance-number"),
    pytest.param(msg(metric_name=""), "metric_name is empty", id="metric-empty"),
    pytest.param(msg(metric_name=None), "metric_name must be a string (got null)", id="metric-null"),
    pytest.param(msg(database_type=["pg"]), "database_type must be a string (got array)", id="dbtype-array"),
    pytest.param(msg(tags=["a", "b"]), "tags must be an object of strings (got array)", id="tags-array"),
    pytest.param(msg(tags="env=prod"), "tags must be an object of strings (got string)", id="tags-string"),
    pytest.param(msg(tags={"a": {"b": "c"}}), "tag 'a' must be a string (got object)", id="tags-nested"),
    pytest.param(msg(tags={"a": ["b"]}), "tag 'a' must be a string (got array)", id="tags-list-value"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_decode_json_rejects_with_a_reason_naming_the_problem(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as info:
        decode_json(raw, NOW)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, ConnectorError)


def test_decode_json_none_is_an_empty_message() -> None:
    with pytest.raises(PoisonMessage, match="empty message"):
        decode_json(None, NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- JSON: encode


@pytest.mark.parametrize("ts", [T0, T0 + 0.5, T0 + 0.123, T0 + 0.123456, 946684800.0])
def test_encode_json_round_trips(ts: float) -> None:
    m = Metric(ts, "mysql", "db-7", "connections", 12.0, {"region": "eu-west-1", "é": "ü"})
    raw = encode_json(m)
    assert json.loads(raw)["timestamp"].endswith("Z")
    assert decode_json(raw, NOW) == m


def test_encode_json_renders_seconds_without_fraction() -> None:
    m = Metric(T0, "postgresql", "prod-db-01", "cpu_usage_percent", 85.5, {})
    assert json.loads(encode_json(m))["timestamp"] == "2025-01-15T10:30:00Z"


def test_encode_json_refuses_nan() -> None:
    with pytest.raises(ConnectorError, match="cpu"):
        encode_json(Metric(T0, "postgresql", "db", "cpu", float("nan"), {}))


# --------------------------------------------------------------------------- limits (README, "Bad input")


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


LIMIT_BAD = [
    # orjson stops at 1024 levels; the stdlib fallback used to recurse into a RecursionError
    pytest.param(
        msg(tags=None).replace(b'"tags": null', b'"tags": ' + deep(3000).encode()), "deeper", id="deep-tags"
    ),
    pytest.param(
        msg(tags=None).replace(b'"tags": null', b'"tags": ' + deep(3000).encode() + b', "x": NaN'),
        "deeper",
        id="deep-and-nan",
    ),
    pytest.param(msg(value=1e301), "outside the accepted range", id="value-above-range"),
    pytest.param(msg(value=-1.7e308), "outside the accepted range", id="value-below-range"),
    pytest.param(msg(value=10**306), "outside the accepted range", id="int-value-above-range"),
    pytest.param(msg(metadata="x" * MAX_MESSAGE_BYTES), "larger than the limit", id="message-size"),
    pytest.param(msg(tags={f"k{i}": "v" for i in range(MAX_TAGS + 1)}), f"limit {MAX_TAGS}", id="tag-count"),
    pytest.param(msg(tags={"q": "x" * (MAX_TAG_VALUE_CHARS + 1)}), "tag 'q' has", id="tag-value-length"),
    pytest.param(msg(tags={"k" * (MAX_TAG_KEY_CHARS + 1): "v"}), "a tag name has", id="tag-key-length"),
    pytest.param(msg(instance_id="i" * (MAX_IDENTITY_CHARS + 1)), "instance_id has", id="instance-length"),
    pytest.param(msg(metric_name="m" * (MAX_IDENTITY_CHARS + 1)), "metric_name has", id="metric-length"),
    # orjson refuses a lone surrogate, the stdlib fallback accepted it: no sink could encode it
    pytest.param(msg().replace(b"us-east-1", b"\\ud800"), "surrogate", id="lone-surrogate"),
    pytest.param(msg(timestamp="2150-01-01T00:00:00Z"), "after 2100-01-01", id="after-2100-without-clock"),
]


@pytest.mark.parametrize(("raw", "reason"), LIMIT_BAD)
def test_decode_json_limits_are_poison_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as info:
        decode_json(raw, float("inf"))
    assert reason in info.value.reason


def test_decode_json_accepts_up_to_the_limits() -> None:
    query = "SELECT * FROM orders WHERE id = $1 -- " + "x" * 3000  # a query text as a tag
    tags = {f"k{i}": "v" for i in range(MAX_TAGS - 2)}
    tags |= {"query": query, "k" * MAX_TAG_KEY_CHARS: "y" * MAX_TAG_VALUE_CHARS}
    m = decode_json(msg(tags=tags, value=MAX_ABS_VALUE, instance_id="i" * MAX_IDENTITY_CHARS), NOW)
    assert m.tags == tags and m.value == MAX_ABS_VALUE and len(m.instance_id) == MAX_IDENTITY_CHARS
    assert decode_json(msg(value=-MAX_ABS_VALUE), NOW).value == -MAX_ABS_VALUE
    assert decode_json(msg(tags={"q": "z" * 10_000}), NOW).tags == {"q": "z" * 10_000}


def test_avro_limits(registry: SchemaRegistryClient) -> None:
    sid = register(registry, "l-value", V2)
    codec = AvroCodec(registry)
    for rec, reason in (
        (record(value=1e301), "outside the accepted range"),
        (record(tags={f"k{i}": "v" for i in range(MAX_TAGS + 1)}), f"limit {MAX_TAGS}"),
        (record(tags={"q": "x" * (MAX_TAG_VALUE_CHARS + 1)}), "tag 'q' has"),
        (record(instance_id="i" * (MAX_IDENTITY_CHARS + 1)), "instance_id has"),
        (record(tags={"q": "x" * MAX_MESSAGE_BYTES}), "larger than the limit"),
    ):
        with pytest.raises(PoisonMessage, match=reason):
            codec.decode(frame(sid, V2, rec), NOW)
    assert codec.decode(frame(sid, V2, record(tags={"q": "x" * 3000})), NOW).tags == {"q": "x" * 3000}


# --------------------------------------------------------------------------- Avro

V1 = load_schema("metric.avsc")
V2 = load_schema("metric.v2.avsc")
M = Metric(T0, "postgresql", "prod-db-01", "cpu_usage_percent", 85.5, {"environment": "production"})


@pytest.fixture()
def registry() -> SchemaRegistryClient:
    # In confluent-kafka 2.16 only `new_client` maps mock:// to the in-memory registry;
    # `SchemaRegistryClient({"url": "mock://..."})` would try HTTP.
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


def frame(schema_id: int, schema: str | dict[str, Any], record: dict[str, Any]) -> bytes:
    """Confluent framing written by hand with fastavro (what any other producer does)."""
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else schema)
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def register(registry: SchemaRegistryClient, subject: str, schema: str | dict[str, Any]) -> int:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return int(registry.register_schema(subject, Schema(text, "AVRO")))


def record(**changes: Any) -> dict[str, Any]:
    base = {
        "timestamp": int(T0 * 1000),
        "database_type": "postgresql",
        "instance_id": "prod-db-01",
        "metric_name": "cpu_usage_percent",
        "value": 85.5,
        "tags": {"environment": "production"},
    }
    return {**base, **changes}


@pytest.mark.parametrize("writer", [V1, V2], ids=["v1", "v2"])
def test_avro_round_trip(registry: SchemaRegistryClient, writer: str) -> None:
    codec = AvroCodec(registry, writer_schema=writer)
    raw = codec.encode(M, "gds.metrics.postgresql.production-value")
    assert raw[0] == 0
    assert codec.decode(raw, NOW) == M
    m2 = M._replace(ts=T0 + 0.125, tags={})
    assert codec.decode(codec.encode(m2, "gds.metrics.postgresql.production-value"), NOW) == m2


def test_v1_written_message_decodes_with_the_v2_reader(registry: SchemaRegistryClient) -> None:
    producer = AvroCodec(registry, writer_schema=V1)  # an old producer
    consumer = AvroCodec(registry)  # reader = latest (v2)
    raw = producer.encode(M, "s-value")
    (schema_id,) = struct.unpack_from(">I", raw, 1)
    assert json.loads(registry.get_schema(schema_id).schema_str or "") == json.loads(V1)
    assert consumer.decode(raw, NOW) == M


def test_confluent_framing_reads_with_plain_fastavro(registry: SchemaRegistryClient) -> None:
    raw = AvroCodec(registry).encode(M, "wire-value")
    magic, schema_id = struct.unpack_from(">bI", raw, 0)
    assert magic == 0
    assert schema_id == registry.get_latest_version("wire-value").schema_id
    rec: Any = fastavro.schemaless_reader(io.BytesIO(raw[5:]), fastavro.parse_schema(json.loads(V2)))
    assert rec["timestamp"].timestamp() == T0  # timestamp-millis logical type -> aware datetime
    assert rec["instance_id"] == "prod-db-01" and rec["value"] == 85.5
    assert rec["unit"] is None and rec["metadata"] == {}


def test_v2_reader_resolves_v1_data_with_fastavro() -> None:
    """The compatibility claim itself, independent of our codec: v2 reads what v1 wrote."""
    v1, v2 = json.loads(V1), json.loads(V2)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), record())
    buf.seek(0)
    got: Any = fastavro.schemaless_reader(buf, fastavro.parse_schema(v1), fastavro.parse_schema(v2))
    assert got["unit"] is None and got["metadata"] == {}
    assert got["value"] == 85.5 and got["tags"] == {"environment": "production"}
    # BACKWARD compatibility by construction: v1's fields unchanged, additions have defaults.
    v1_fields = {f["name"]: f["type"] for f in v1["fields"]}
    for f in v2["fields"]:
        if f["name"] in v1_fields:
            assert f["type"] == v1_fields[f["name"]], f["name"]
        else:
            assert "default" in f, f["name"]
    assert set(v1_fields) <= {f["name"] for f in v2["fields"]}
    assert (v1["namespace"], v1["name"]) == (v2["namespace"], v2["name"])


def test_older_writer_goes_through_schema_resolution(registry: SchemaRegistryClient) -> None:
    """A writer without `tags` and with a float value: the v2 reader fills and promotes."""
    v0 = json.loads(V1)
    v0["fields"] = [f for f in v0["fields"] if f["name"] != "tags"]
    for f in v0["fields"]:
        if f["name"] == "value":
            f["type"] = "float"
    sid = register(registry, "v0-value", v0)
    raw = frame(sid, v0, {k: v for k, v in record(value=0.5).items() if k != "tags"})
    assert AvroCodec(registry).decode(raw, NOW) == M._replace(value=0.5, tags={})


def test_timestamp_micros_writer(registry: SchemaRegistryClient) -> None:
    schema = json.loads(V1)
    schema["fields"][0]["type"] = {"type": "long", "logicalType": "timestamp-micros"}
    sid = register(registry, "micros-value", schema)
    raw = frame(sid, schema, record(timestamp=int(T0 * 1_000_000) + 250_000))
    assert AvroCodec(registry).decode(raw, NOW).ts == T0 + 0.25


def _avro_poison(registry: SchemaRegistryClient) -> list[Any]:
    sid = register(registry, "p-value", V2)
    good = frame(sid, V2, record())
    return [
        pytest.param(b"", "empty message", id="empty"),
        pytest.param(b"\x00\x00\x01", "shorter than the 5-byte header", id="short-header"),
        pytest.param(b"\x01" + good[1:], "bad magic byte 1", id="bad-magic"),
        pytest.param(b"{" + good[1:], "bad magic byte 123", id="json-to-avro-decoder"),
        pytest.param(struct.pack(">bI", 0, 4242) + good[5:], "unknown schema id 4242", id="unknown-id"),
        pytest.param(good[:-4], "does not decode with schema id", id="truncated-body"),
        pytest.param(good[:5], "does not decode with schema id", id="header-only"),
        pytest.param(good + b"\x00", "1 trailing byte(s)", id="trailing-bytes"),
        pytest.param(frame(sid, V2, record(value=float("nan"))), "NaN/Infinity", id="nan"),
        pytest.param(frame(sid, V2, record(value=float("-inf"))), "NaN/Infinity", id="-inf"),
        pytest.param(frame(sid, V2, record(timestamp=int((NOW + 700) * 1000))), "in the future", id="future"),
        pytest.param(frame(sid, V2, record(timestamp=0)), "before 2000", id="1970"),
        pytest.param(frame(sid, V2, record(instance_id="")), "instance_id is empty", id="empty-instance"),
        pytest.param(frame(sid, V2, record(metric_name="")), "metric_name is empty", id="empty-metric"),
    ]


def test_avro_decode_rejects_every_bad_input(registry: SchemaRegistryClient) -> None:
    codec = AvroCodec(registry)
    for case in _avro_poison(registry):
        raw, reason = case.values
        with pytest.raises(PoisonMessage) as info:
            codec.decode(raw, NOW)
        assert reason in info.value.reason, (case.id, info.value.reason)


def test_avro_unknown_schema_id_stays_unknown_without_asking_again(registry: SchemaRegistryClient) -> None:
    codec = AvroCodec(registry)
    raw = struct.pack(">bI", 0, 99) + b"\x00"
    for _ in range(2):
        with pytest.raises(PoisonMessage, match="unknown schema id 99"):
            codec.decode(raw, NOW)


def test_avro_incompatible_writer_is_poison(registry: SchemaRegistryClient) -> None:
    schema = json.loads(V1)
    schema["fields"][4]["type"] = "string"  # value as text: v2 cannot read it
    sid = register(registry, "bad-value", schema)
    with pytest.raises(PoisonMessage, match=f"does not decode with schema id {sid}"):
        AvroCodec(registry).decode(frame(sid, schema, record(value="85.5")), NOW)


def test_avro_schema_id_of_another_format_is_poison(registry: SchemaRegistryClient) -> None:
    sid = int(registry.register_schema("j-value", Schema('{"type": "object"}', "JSON")))
    with pytest.raises(PoisonMessage, match="is JSON, not Avro"):
        AvroCodec(registry).decode(struct.pack(">bI", 0, sid) + b"{}", NOW)


# --------------------------------------------------------------------------- dispatch


def test_decode_any_dispatches_on_the_first_byte(registry: SchemaRegistryClient) -> None:
    codec = AvroCodec(registry)
    avro = codec.encode(M, "any-value")
    assert decode_any(avro, NOW, codec) == M
    assert decode_any(encode_json(M), NOW, codec) == M
    assert decode_any(b"  " + encode_json(M), NOW, codec) == M  # JSON may start with whitespace
    with pytest.raises(PoisonMessage, match="no schema registry is configured"):
        decode_any(avro, NOW, None)
    with pytest.raises(PoisonMessage, match="empty message"):
        decode_any(b"", NOW, codec)


def test_make_decoder() -> None:
    assert make_decoder("json", None) is decode_json
    assert make_decoder("JSON")(encode_json(M), NOW) == M
    with pytest.raises(PoisonMessage, match="in the future"):
        make_decoder("json", max_future_s=1.0)(encode_json(M._replace(ts=NOW + 5)), NOW)
    # A fresh mock registry knows no ids: Avro decoding is wired, and says so.
    with pytest.raises(PoisonMessage, match="unknown schema id 1"):
        make_decoder("avro", "mock://fresh")(struct.pack(">bI", 0, 1) + b"\x00", NOW)
    auto = make_decoder("auto", "mock://fresh")
    assert auto(encode_json(M), NOW) == M
    with pytest.raises(PoisonMessage, match="no schema registry"):
        make_decoder("auto", None)(b"\x00\x00\x00\x00\x01", NOW)


@pytest.mark.parametrize(
    ("fmt", "url", "match"), [("avro", None, "needs a schema registry"), ("xml", None, "unknown")]
)
def test_make_decoder_configuration_errors(fmt: str, url: str | None, match: str) -> None:
    with pytest.raises(ConnectorError, match=match):
        make_decoder(fmt, url)


# --------------------------------------------------------------------------- schema files


def test_schema_files_parse() -> None:
    for name in ("metric.avsc", "metric.v2.avsc"):
        parsed: Any = fastavro.parse_schema(json.loads(load_schema(name)))
        assert parsed["name"] == "com.gds.metrics.Metric"
    alert = json.loads((SCHEMA_DIR / "alert.schema.json").read_text())
    assert alert["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    payload_fields = {
        "alert_name", "db_instance_id", "subject", "body_text", "message_id", "severity", "runbook_url",
        "dashboard_url", "labels", "routing_key", "correlation_id", "state", "environment", "context",
    }  # fmt: skip
    assert set(alert["required"]) == payload_fields == set(alert["properties"])
    context = alert["properties"]["context"]
    assert set(context["required"]) == {"metric_value", "threshold", "region", "alert_fired_at", "fire_count"}
