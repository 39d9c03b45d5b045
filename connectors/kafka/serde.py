"""Metric message decoding: JSON (seed format) and Confluent-framed Avro.

Decoding runs once per message, so the happy path is written for speed: exact type
checks (`type(x) is str`), no intermediate objects, errors built only when something is
wrong. Every bad input raises `PoisonMessage` with a reason that names the problem; the
flow sends it to the dead-letter topic (connectors/kafka/dlq.py) and goes on.

Functions are pure: the current time is passed in (`now`, epoch seconds) so tests and
replays decide what "in the future" means.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import orjson
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader

from connectors.errors import ConnectorError, PoisonMessage
from rules.metric import Metric

Decoder = Callable[[bytes, float], Metric]
"""`decoder(raw_value, now) -> Metric`; raises `PoisonMessage` for bad input."""

DEFAULT_MAX_FUTURE_S: Final = 600.0
MIN_TS: Final = 946684800.0  # 2000-01-01T00:00:00Z: anything older is a broken clock or unit
# 2100-01-01T00:00:00Z, even in replays (no clock): partitions, dates and every sink stay in range
MAX_TS: Final = 4102444800.0
_MS_EPOCH_ABOVE: Final = 1e11  # an epoch number above this is milliseconds (1e11 s is year 5138)
_MAX_EPOCH_NUMBER: Final = 1e18  # bounds int -> float conversion before the range checks

SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "schemas"
REQUIRED_FIELDS: Final = ("timestamp", "database_type", "instance_id", "metric_name", "value")
METRIC_RECORD: Final = "com.gds.metrics.Metric"

# Limits on what one message may carry (README, "Bad input"). They keep one hostile or broken
# producer from stopping a flow: every sink can store what passes them (the PostgreSQL index
# on (instance_id, metric_name) has a 2704-byte row limit: 2 x 256 chars x 4 UTF-8 bytes fits).
MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_TAGS: Final = 128
MAX_TAG_KEY_CHARS: Final = 256
MAX_TAG_VALUE_CHARS: Final = 16 * 1024  # a query text as a tag still fits
MAX_IDENTITY_CHARS: Final = 256  # instance_id, metric_name, database_type
MAX_ABS_VALUE: Final = 1e300  # a sum of 10^8 such values is still a finite double
MAX_DEPTH: Final = 1024  # orjson's nesting limit; tags themselves must be flat
# A string is never longer (in characters) than the raw message (in bytes), and every tag costs
# at least 2 bytes (Avro) or 6 (JSON): a message this short cannot break a length or count
# limit, so the common small message skips those checks.
_SMALL_BYTES: Final = min(MAX_TAG_KEY_CHARS, MAX_IDENTITY_CHARS, 2 * MAX_TAGS)

# orjson parses bytes ~3x faster than the stdlib; the stdlib still reads what orjson refuses
# (NaN, Infinity) so those get the precise reason instead of "invalid JSON".
_loads = orjson.loads
_slow_loads = json.loads


_Name = Annotated[str, msgspec.Meta(min_length=1)]


class _SeedRecord(msgspec.Struct):
    """The seed format's fields with their usual types: msgspec decodes a message straight into
    this (~2x orjson's dict, measured) and checks the types, non-empty names and the value's
    range in C; anything else (a missing field, a number as a string, NaN, non-string tags, an
    empty name) fails here and takes the general path, which says exactly what is wrong."""

    timestamp: str | int | float
    database_type: _Name
    instance_id: _Name
    metric_name: _Name
    value: Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
    tags: dict[str, str] | None = None


_decode_struct = msgspec.json.Decoder(_SeedRecord).decode
_StructError = (msgspec.MsgspecError, ValueError)  # ValueError: invalid UTF-8
_isfinite = math.isfinite
_fromisoformat = datetime.fromisoformat
# `Metric(...)` runs the NamedTuple's Python-level __new__ (~0.5 us); `tuple.__new__` builds
# the identical object in ~0.2 us. Guarded: a NamedTuple cannot override __new__, so only
# the field order can change under us.
_new_tuple = tuple.__new__
assert Metric._fields == ("ts", "database_type", "instance_id", "metric_name", "value", "tags")

# Timestamps repeat: a collector stamps a whole scrape with one time. Remembering recent
# parses saves ~0.7 us per message; bounded and cleared wholesale (dict ops are atomic
# under the GIL, so worker threads may share it).
_ts_cache: dict[str, float] = {}
_TS_CACHE_MAX: Final = 4096


# --------------------------------------------------------------------------- JSON


def decode_json(raw: bytes, now: float, max_future_s: float = DEFAULT_MAX_FUTURE_S) -> Metric:
    """Decode and validate one seed-format JSON message.

    `tags` may be absent or null (no labels); `metadata` is accepted and ignored (it is
    not part of the series identity).
    """
    if raw is None:
        raise PoisonMessage("empty message")
    n = len(raw)
    if n > MAX_MESSAGE_BYTES:
        raise PoisonMessage(f"message of {n} bytes is larger than the limit of {MAX_MESSAGE_BYTES}")
    try:
        r = _decode_struct(raw)
    except _StructError:  # anything unusual: the general path gives the exact reason
        return _decode_json_dict(raw, n, now, max_future_s)
    # the common case: msgspec checked the types, names and value; a timestamp seen before
    # needs its range only (any other takes `_checked`, which raises with the reason), and a
    # long message its sizes, the last of `_checked`'s checks
    ts_in = r.timestamp
    ts = _ts_cache.get(ts_in) if ts_in.__class__ is str else None
    if ts is None or not MIN_TS <= ts < MAX_TS or ts > now + max_future_s:
        return _checked(ts_in, r.database_type, r.instance_id, r.metric_name, r.value, r.tags,
                        n, now, max_future_s, False)  # fmt: skip
    tags = {} if r.tags is None else r.tags
    if n > _SMALL_BYTES:
        _check_sizes(r.instance_id, r.metric_name, r.database_type, tags)
    return _new_tuple(Metric, (ts, r.database_type, r.instance_id, r.metric_name, r.value, tags))


def _decode_json_dict(raw: bytes, n: int, now: float, max_future_s: float) -> Metric:
    """Any JSON: orjson, or the stdlib for what orjson refuses, then the same checks."""
    slow = False
    try:
        d = _loads(raw)
    except (ValueError, TypeError) as fast_exc:
        slow = True
        if "depth limit" in str(fast_exc):  # the stdlib would recurse until RecursionError
            raise PoisonMessage(f"JSON nests deeper than {MAX_DEPTH} levels") from None
        try:
            d = _slow_loads(raw)
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, None
            raise PoisonMessage(_json_error(raw, exc)) from None
        except RecursionError:
            raise PoisonMessage(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    if type(d) is not dict:
        raise PoisonMessage(f"message is not a JSON object (got {_json_type(d)})")
    try:
        ts_in = d["timestamp"]
        database_type = d["database_type"]
        instance_id = d["instance_id"]
        metric_name = d["metric_name"]
        value = d["value"]
    except KeyError:
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        raise PoisonMessage(f"missing field(s): {', '.join(missing)}") from None
    return _checked(ts_in, database_type, instance_id, metric_name, value, d.get("tags"), n, now,
                    max_future_s, slow)  # fmt: skip


def _checked(
    ts_in: object,
    database_type: object,
    instance_id: object,
    metric_name: object,
    value: object,
    tags: object,
    n: int,
    now: float,
    max_future_s: float,
    slow: bool,
) -> Metric:
    """The checks every decoded message passes, whichever parser read it."""
    # a producer's timestamps repeat: the cache first, without a call per message
    ts = _ts_cache.get(ts_in) if type(ts_in) is str else None
    if ts is None:
        ts = _parse_ts(ts_in)
    if ts < MIN_TS:
        raise PoisonMessage(f"timestamp {_iso_z(ts)} is before 2000-01-01")
    if ts > now + max_future_s or ts >= MAX_TS:
        raise PoisonMessage(_future(ts, now, max_future_s))

    if type(value) is not float:
        value = _coerce_value(value)
    if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # also false for NaN
        raise PoisonMessage(_bad_value(value))

    if type(instance_id) is not str or not instance_id:
        raise PoisonMessage(_bad_identity("instance_id", instance_id))
    if type(metric_name) is not str or not metric_name:
        raise PoisonMessage(_bad_identity("metric_name", metric_name))
    if type(database_type) is not str or not database_type:
        raise PoisonMessage(_bad_identity("database_type", database_type))

    if type(tags) is dict:
        for v in tags.values():
            if type(v) is not str:
                tags = _coerce_tags(tags)
                break
    elif tags is None:
        tags = {}
    else:
        raise PoisonMessage(f"tags must be an object of strings (got {_json_type(tags)})")
    if n > _SMALL_BYTES:
        _check_sizes(instance_id, metric_name, database_type, tags)
    if slow:  # the stdlib lets lone surrogates through (orjson does not); no sink could store them
        try:
            "".join((instance_id, metric_name, database_type, *tags, *tags.values())).encode()
        except UnicodeEncodeError:
            raise PoisonMessage("a string holds a lone UTF-16 surrogate escape (not valid Unicode)") from None
    return _new_tuple(Metric, (ts, database_type, instance_id, metric_name, value, tags))


def _future(ts: float, now: float, max_future_s: float) -> str:
    if ts > now + max_future_s:
        return f"timestamp {_iso_z(ts)} is more than {max_future_s:g}s in the future"
    return f"timestamp {_iso_z(ts)} is after 2100-01-01"


def _bad_value(value: float) -> str:
    if not _isfinite(value):
        return f"value is {value} (NaN/Infinity are not allowed)"
    return f"value {value!r} is outside the accepted range [-{MAX_ABS_VALUE:g}, {MAX_ABS_VALUE:g}]"


def _check_sizes(instance_id: str, metric_name: str, database_type: str, tags: dict[str, str]) -> None:
    """The size limits (MAX_*); only called for messages long enough to break one."""
    for name, v in (
        ("instance_id", instance_id),
        ("metric_name", metric_name),
        ("database_type", database_type),
    ):
        if len(v) > MAX_IDENTITY_CHARS:
            raise PoisonMessage(f"{name} has {len(v)} characters (limit {MAX_IDENTITY_CHARS})")
    if len(tags) > MAX_TAGS:
        raise PoisonMessage(f"{len(tags)} tags (limit {MAX_TAGS})")
    for k, v in tags.items():
        if len(k) > MAX_TAG_KEY_CHARS:
            raise PoisonMessage(
                f"a tag name has {len(k)} characters (limit {MAX_TAG_KEY_CHARS}): {k[:64]!r}..."
            )
        if len(v) > MAX_TAG_VALUE_CHARS:
            raise PoisonMessage(f"tag {k[:64]!r} has {len(v)} characters (limit {MAX_TAG_VALUE_CHARS})")


def encode_json(metric: Metric) -> bytes:
    """The seed JSON for `metric` (timestamp as ISO 8601 `Z`); `decode_json` reads it back.

    Refuses NaN/Infinity: they are not JSON, and our own decoder would dead-letter them.
    """
    try:
        text = json.dumps(
            {
                "timestamp": _iso_z(metric.ts),
                "database_type": metric.database_type,
                "instance_id": metric.instance_id,
                "metric_name": metric.metric_name,
                "value": metric.value,
                "tags": dict(metric.tags),
            },
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
        )
    except ValueError as exc:
        raise ConnectorError(f"cannot encode {metric.metric_name} of {metric.instance_id}: {exc}") from exc
    return text.encode()


def _parse_ts(v: object) -> float:
    """ISO 8601 string with a zone, or an epoch number in seconds or milliseconds."""
    if type(v) is str:
        ts = _ts_cache.get(v)
        if ts is None:
            ts = _parse_iso(v)
            if len(_ts_cache) >= _TS_CACHE_MAX:
                _ts_cache.clear()
            _ts_cache[v] = ts
        return ts
    if type(v) is int or type(v) is float:
        if not -_MAX_EPOCH_NUMBER < v < _MAX_EPOCH_NUMBER:  # also false for NaN
            raise PoisonMessage(f"timestamp {v!r} is not a plausible epoch number")
        return v / 1000.0 if v > _MS_EPOCH_ABOVE else float(v)
    raise PoisonMessage(f"timestamp must be an ISO 8601 string or an epoch number (got {_json_type(v)})")


def _parse_iso(text: str) -> float:
    try:
        dt = _fromisoformat(text)
    except ValueError:
        raise PoisonMessage(f"timestamp {text[:64]!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise PoisonMessage(f"timestamp {text[:64]!r} has no timezone (use Z or an offset)")
    try:
        return dt.timestamp()
    except (OverflowError, ValueError):
        raise PoisonMessage(f"timestamp {text[:64]!r} is out of range") from None


def _coerce_value(value: object) -> float:
    """Ints become floats; bools, strings, null and containers are refused."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise PoisonMessage("value is out of the float range") from None
    if type(value) is bool:
        raise PoisonMessage("value must be a number (got a bool)")
    raise PoisonMessage(f"value must be a number (got {_json_type(value)})")


def _coerce_tags(tags: dict[str, object]) -> dict[str, str]:
    """Numbers and bools are stringified as JSON spells them; null drops the tag
    (Prometheus treats an empty label as an absent one); nested values are refused."""
    out: dict[str, str] = {}
    for k, v in tags.items():
        if type(v) is str:
            out[k] = v
        elif v is None:
            continue
        elif type(v) is bool:
            out[k] = "true" if v else "false"
        elif type(v) is int or type(v) is float:
            out[k] = json.dumps(v)
        else:
            raise PoisonMessage(f"tag {k!r} must be a string (got {_json_type(v)})")
    return out


def _bad_identity(name: str, v: object) -> str:
    if type(v) is str:
        return f"{name} is empty"
    return f"{name} must be a string (got {_json_type(v)})"


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _json_error(raw: object, exc: Exception) -> str:
    if raw is None or raw == b"":
        return "empty message"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
    return f"invalid JSON: {exc}"


def _iso_z(ts: float) -> str:
    """ISO 8601 UTC with `Z`, with only as many fraction digits as the time needs (lossless to 1 us)."""
    try:
        dt = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return repr(ts)
    us = dt.microsecond
    spec = "seconds" if us == 0 else "milliseconds" if us % 1000 == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


# --------------------------------------------------------------------------- Avro

_HEADER = struct.Struct(">bI").unpack_from  # Confluent framing: magic byte 0, schema id (big endian)
_TS_DIVISOR = {"timestamp-millis": 1000.0, "timestamp-micros": 1_000_000.0, None: 1000.0}
_EXPECTED_TYPES: Final[dict[str, object]] = {
    "timestamp": "long",  # after the logical type is stripped, see _writer_entry
    "database_type": "string",
    "instance_id": "string",
    "metric_name": "string",
    "value": "double",
    "tags": {"type": "map", "values": "string"},
}


def load_schema(name: str) -> str:
    """The text of a schema in schemas/ (`metric.avsc`, `metric.v2.avsc`)."""
    return (SCHEMA_DIR / name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _WriterEntry:
    """How to read bodies written with one registry schema id.

    `reader` is None when the writer's Metric fields are exactly ours: reading with the
    writer schema alone is then equivalent to resolving against the v2 reader (the only
    differences are fields Metric does not carry) and 2-3x faster in fastavro.
    """

    schema_id: int
    writer: Any
    reader: Any
    ts_divisor: float


class AvroCodec:
    """Confluent-framed Avro (magic byte 0 + 4-byte schema id + schemaless body).

    Encoding goes through confluent-kafka's `AvroSerializer` (schema registration, framing);
    decoding is done here with fastavro because it is the per-message hot path: writer
    schemas are fetched once per id and cached parsed, and timestamps are read as plain
    longs (no datetime per message).
    """

    def __init__(
        self,
        client: SchemaRegistryClient,
        *,
        writer_schema: str | None = None,
        reader_schema: str | None = None,
        auto_register: bool = True,
    ) -> None:
        """`writer_schema` is what `encode` writes (default v2); `reader_schema` what `decode`
        resolves to (default v2, so v1 data reads)."""
        self._client = client
        self._writer_schema = writer_schema or load_schema("metric.v2.avsc")
        reader_text = reader_schema or load_schema("metric.v2.avsc")
        self._reader_json = json.loads(reader_text)
        reader_stripped, _ = _strip_timestamp_logical_type(json.loads(reader_text))
        self._reader = parse_schema(reader_stripped)
        self._auto_register = auto_register
        self._serializers: dict[str, AvroSerializer] = {}
        self._writers: dict[int, _WriterEntry] = {}
        self._unknown: set[int] = set()

    # -- encode (producers, tests, the collector flow) -----------------------

    def encode(self, metric: Metric, subject: str) -> bytes:
        """Frame `metric` for `subject` (registering the writer schema if allowed).

        Writes what it is given, NaN included (valid Avro); validation is `decode`'s job.
        """
        ser = self._serializers.get(subject)
        if ser is None:
            conf = {
                "auto.register.schemas": self._auto_register,
                "subject.name.strategy": lambda _ctx, _record: subject,
            }
            ser = AvroSerializer(self._client, self._writer_schema, conf=conf)
            self._serializers[subject] = ser
        record = {
            "timestamp": round(metric.ts * 1000),
            "database_type": metric.database_type,
            "instance_id": metric.instance_id,
            "metric_name": metric.metric_name,
            "value": float(metric.value),
            "tags": dict(metric.tags),
        }
        try:
            out = ser(record, None)
        except SchemaRegistryError as exc:
            raise ConnectorError(f"schema registry refused subject {subject!r}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            what = f"{metric.metric_name} of {metric.instance_id}"
            raise ConnectorError(f"cannot Avro-encode {what}: {exc}") from exc
        assert out is not None
        return out

    # -- decode (hot path) ----------------------------------------------------

    def decode(self, raw: bytes, now: float, max_future_s: float = DEFAULT_MAX_FUTURE_S) -> Metric:
        """Decode and validate one framed message; bad framing, unknown schema ids and
        undecodable bodies are `PoisonMessage`, registry outages `ConnectorError`."""
        n = len(raw)
        if n > MAX_MESSAGE_BYTES:
            raise PoisonMessage(f"message of {n} bytes is larger than the limit of {MAX_MESSAGE_BYTES}")
        try:
            magic, schema_id = _HEADER(raw)
        except (struct.error, TypeError):
            raise PoisonMessage(
                "empty message" if not raw else "truncated Avro message (shorter than the 5-byte header)"
            ) from None
        if magic != 0:
            raise PoisonMessage(f"bad magic byte {raw[0]} (Confluent Avro framing starts with 0)")
        entry = self._writers.get(schema_id)
        if entry is None:
            entry = self._load_writer(schema_id)
        fo = BytesIO(raw)
        fo.seek(5)
        try:
            rec: Any = schemaless_reader(fo, entry.writer, entry.reader)
        except Exception as exc:  # untrusted bytes: any decoder failure is poison
            detail = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise PoisonMessage(f"Avro body does not decode with schema id {schema_id}: {detail}") from None
        if fo.tell() != len(raw):
            raise PoisonMessage(f"{len(raw) - fo.tell()} trailing byte(s) after the Avro record")

        ts = rec["timestamp"] / entry.ts_divisor
        if ts < MIN_TS:
            raise PoisonMessage(f"timestamp {_iso_z(ts)} is before 2000-01-01")
        if ts > now + max_future_s or ts >= MAX_TS:
            raise PoisonMessage(_future(ts, now, max_future_s))
        value = rec["value"]
        if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # also false for NaN
            raise PoisonMessage(_bad_value(value))
        instance_id = rec["instance_id"]
        metric_name = rec["metric_name"]
        database_type = rec["database_type"]
        if not instance_id:
            raise PoisonMessage("instance_id is empty")
        if not metric_name:
            raise PoisonMessage("metric_name is empty")
        if not database_type:
            raise PoisonMessage("database_type is empty")
        tags = rec["tags"]
        if n > _SMALL_BYTES:
            _check_sizes(instance_id, metric_name, database_type, tags)
        return _new_tuple(Metric, (ts, database_type, instance_id, metric_name, value, tags))

    def _load_writer(self, schema_id: int) -> _WriterEntry:
        if schema_id in self._unknown:
            raise PoisonMessage(f"unknown schema id {schema_id}")
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown.add(schema_id)  # a flood of bad ids must not hammer the registry
                raise PoisonMessage(f"unknown schema id {schema_id}") from None
            raise ConnectorError(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
        except Exception as exc:  # transport errors of the registry client
            raise ConnectorError(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
        entry = self._writer_entry(schema_id, schema)
        self._writers[schema_id] = entry
        return entry

    def _writer_entry(self, schema_id: int, schema: Schema) -> _WriterEntry:
        if (schema.schema_type or "AVRO") != "AVRO":
            raise PoisonMessage(f"schema id {schema_id} is {schema.schema_type}, not Avro")
        if schema.references:
            raise PoisonMessage(f"schema id {schema_id} uses schema references (not supported)")
        try:
            writer_json = json.loads(schema.schema_str or "")
            stripped, logical = _strip_timestamp_logical_type(writer_json)
            writer = parse_schema(stripped)
        except Exception as exc:  # the registry holds a schema fastavro refuses
            raise PoisonMessage(f"schema id {schema_id} is not a usable Avro schema: {exc}") from None
        divisor = _TS_DIVISOR.get(logical)
        if divisor is None:
            raise PoisonMessage(f"schema id {schema_id}: timestamp has unsupported logicalType {logical}")
        same = _record_name(writer_json) == _record_name(self._reader_json) and _fields_match(stripped)
        return _WriterEntry(schema_id, writer, None if same else self._reader, divisor)


def _record_name(schema: object) -> str:
    if not isinstance(schema, dict):
        return ""
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _norm_type(t: object) -> object:
    """`{"type": "string"}` -> `"string"`, maps with normalised values; others unchanged."""
    if isinstance(t, dict):
        if t.get("type") == "map":
            return {"type": "map", "values": _norm_type(t.get("values"))}
        if set(t) == {"type"}:
            return _norm_type(t["type"])
    return t


def _fields_match(stripped_writer: dict[str, Any]) -> bool:
    """True when the writer has all Metric fields with exactly the reader's types."""
    got = {f.get("name"): _norm_type(f.get("type")) for f in stripped_writer.get("fields", [])}
    return all(got.get(name, _MISSING) == want for name, want in _EXPECTED_TYPES.items())


_MISSING = object()


def _strip_timestamp_logical_type(schema: Any) -> tuple[Any, str | None]:
    """Read `timestamp` as a plain long: same bytes, no datetime allocation per message.

    Returns the schema (modified in place) and the logical type removed, so the caller
    knows the unit. Only the top-level `timestamp` field is touched.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("top-level schema is not a record")
    for f in schema.get("fields", []):
        if f.get("name") == "timestamp" and isinstance(f.get("type"), dict):
            t = f["type"]
            logical = t.get("logicalType")
            if t.get("type") == "long" and logical is not None:
                f["type"] = "long"
                return schema, str(logical)
    return schema, None


# --------------------------------------------------------------------------- dispatch


def decode_any(
    raw: bytes,
    now: float,
    codec: AvroCodec | None = None,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
) -> Metric:
    """Decode a topic that holds both formats (e.g. during a JSON -> Avro migration).

    The first byte decides, unambiguously: Confluent framing always starts with 0, a JSON
    text never does (it starts with `{` or whitespace). Costs one byte comparison.
    """
    if raw and raw[0] == 0:
        if codec is None:
            raise PoisonMessage("Avro-framed message (magic byte 0) but no schema registry is configured")
        return codec.decode(raw, now, max_future_s)
    return decode_json(raw, now, max_future_s)


def make_decoder(
    fmt: str, registry_url: str | None = None, *, max_future_s: float = DEFAULT_MAX_FUTURE_S
) -> Decoder:
    """The decoder for a deployment's `fmt`: "json", "avro" or "auto" (both, see `decode_any`).

    "avro" needs `registry_url` (a `mock://` URL gives the in-memory registry, for tests);
    "auto" without one decodes JSON and dead-letters Avro-framed messages.
    """
    kind = fmt.strip().lower()
    if kind == "json":
        if max_future_s == DEFAULT_MAX_FUTURE_S:
            return decode_json
        return partial(decode_json, max_future_s=max_future_s)
    if kind in ("avro", "auto"):
        if kind == "avro" and not registry_url:
            raise ConnectorError("message format 'avro' needs a schema registry URL")
        codec = AvroCodec(SchemaRegistryClient.new_client({"url": registry_url})) if registry_url else None
        if codec is not None and kind == "avro":
            return partial(codec.decode, max_future_s=max_future_s)
        return partial(decode_any, codec=codec, max_future_s=max_future_s)
    raise ConnectorError(f"unknown message format {fmt!r}: expected 'json', 'avro' or 'auto'")
