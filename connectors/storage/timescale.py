"""Hot storage in PostgreSQL / TimescaleDB: raw samples (`metrics_hot`) and alert history
(`alert_events`), written by the storage flow through asyncpg.

Schema, managed at start (`ensure_schema`, idempotent, serialised by an advisory lock):
- With the `timescaledb` extension: `metrics_hot` is a hypertable (1-day chunks) with
  compression (segment by series) and a retention policy, both run by TimescaleDB's jobs.
- Without it: native declarative range partitioning by day, `metrics_hot_pYYYYMMDD`, plus a
  DEFAULT partition as a safety net. Partitions are created ahead for the coming days and
  on demand, before each COPY, for whatever day the data belongs to (historical replays
  included); `metrics_hot_ensure_partition(day)` moves rows the DEFAULT partition caught for
  that day into the new partition. `metrics_hot_drop_old_partitions(keep)` is the retention
  (the flow runs it hourly; pg_cron can too).
The choice is logged once per process. The DDL and the statements are SQL files in
`schemas/sql/` (`connectors.storage.sqlfiles` fills in the schema).

Writes are idempotent, so a replay or a resumed epoch never duplicates a row: each batch is
COPYed into a session-local staging table (`ON COMMIT DELETE ROWS`) and moved with
`INSERT ... SELECT ... ON CONFLICT DO NOTHING`, keyed by (series_id, time) for samples and
by message_id for alert events, in one transaction. `series_id` is a 128-bit hash of the
series key (`series_id(series_key)` in SQL, `series_id()` here): a btree entry has a size
limit (2704 bytes) that a long tag value (a query text) would break if the key itself were
indexed, and one such row would make every retry of its batch fail.

Failures: transient ones (connection refused or lost, admin shutdown, server starting, too
many connections, serialization failures) are retried inside `write_batch` with backoff and a
fresh connection, blocking the worker, never dropping the batch (connectors/storage/retry.py).
Data errors (SQLSTATE classes 22 data exception, 23 integrity, 54 program limit, or a value
the driver cannot encode) can never succeed: the batch is bisected down to the rows the
server refuses, the rest is written, and each refused row is handed to `on_reject` (the flow
dead-letters it). Anything else (undefined table or column) raises `StorageError` at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar

import asyncpg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.errors import ConnectorError, PoisonMessage
from connectors.ops.metrics import METRICS
from connectors.storage.retry import STORAGE_RETRY, RetryPolicy, retry_call
from connectors.storage.sqlfiles import placeholders, read, render
from rules.metric import Metric
from rules.rollup.windows import PLACEMENT_TAGS, series_key

log = logging.getLogger(__name__)

T = TypeVar("T")
DAY_S: Final = 86400

MODE_TIMESCALEDB: Final = "timescaledb"
MODE_NATIVE: Final = "native"

# SQLSTATEs worth another attempt: the server or the link is (temporarily) unavailable.
_TRANSIENT_STATES: Final = frozenset(
    {
        "57P01",  # admin_shutdown (fast stop, failover)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovery)
        "53300",  # too_many_connections
        "53400",  # configuration_limit_exceeded
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "58000",  # system_error (I/O)
    }
)


# SQLSTATE classes of errors caused by the rows themselves: a retry can never succeed.
_DATA_CLASSES: Final = frozenset({"22", "23", "54"})  # data exception, integrity, program limit


class StorageError(ConnectorError):
    """A permanent PostgreSQL failure (schema, data); retrying cannot help."""


class RowsRefusedError(StorageError):
    """The server (or the driver) refused the data of a batch; `write_*` bisects it."""


def is_transient(exc: BaseException) -> bool:
    """Connection trouble and server-side unavailability; never schema or data errors."""
    if isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError):
        return True  # refused, reset, unreachable, connect timeout
    if isinstance(exc, ValueError):  # the driver's DataError: a value it cannot encode
        return False
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return "closed" in str(exc)  # "connection is closed": the server went away mid-use
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith("08") or state in _TRANSIENT_STATES
    return False


def is_data_error(exc: BaseException) -> bool:
    """The rows are at fault (bad value, too long for an index, a constraint), not the server."""
    if isinstance(exc, ValueError | TypeError | OverflowError):  # driver-side encoding, dates
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in _DATA_CLASSES
    return False


def series_id(key: str) -> uuid.UUID:
    """The fixed-size identity of a series in `metrics_hot`: the first 16 bytes of the SHA-256
    of its key, as a uuid. PostgreSQL computes the same with `{schema}.series_id(key)`."""
    return uuid.UUID(bytes=hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:16])


@dataclass(frozen=True, slots=True)
class PgConfig:
    dsn: str
    schema: str = "public"
    batch_rows: int = 5000  # rows per COPY + INSERT transaction
    retention_days: int = 30
    compress_after_days: int = 2  # TimescaleDB only
    partitions_ahead_days: int = 2  # native only: created at start, beyond today
    retention_every_s: float = 3600.0  # native only: how often the flow runs the retention
    retry: RetryPolicy = STORAGE_RETRY
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 120.0
    mode: str = "auto"  # "auto", "timescaledb" or "native"

    def __post_init__(self) -> None:
        if self.mode not in ("auto", MODE_TIMESCALEDB, MODE_NATIVE):
            raise StorageError(f"storage mode {self.mode!r}: expected auto, timescaledb or native")
        if self.batch_rows < 1 or self.retention_days < 1:
            raise StorageError("batch_rows and retention_days must be >= 1")


def qident(name: str) -> str:
    """A quoted SQL identifier (schema names come from configuration)."""
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- schema


def _sql(name: str, schema: str, **values: str | int) -> str:
    """`schemas/sql/{name}.sql` for `schema` (as configured): `{{schema}}` is its quoted
    identifier, `{{schema_literal}}` its name as a string literal (PL/pgSQL `format('%I')`
    quotes it there), `{{metrics_hot_columns}}` the shared column list."""
    file = f"sql/{name}.sql"
    wanted = placeholders(file)
    if "schema" in wanted:
        values["schema"] = qident(schema)
    if "schema_literal" in wanted:
        values["schema_literal"] = "'" + schema.replace("'", "''") + "'"
    if "metrics_hot_columns" in wanted:
        values["metrics_hot_columns"] = read("sql/metrics_hot_columns.sql")
    return render(file, **values)


def migrate_series_id(schema: str) -> str:
    """The statements that move a `metrics_hot` of an older release (keyed by the whole series
    key) to the `series_id` key; `schema` as configured (PG_SCHEMA)."""
    return _sql("migrate_series_id", schema)


STAGE_METRIC_COLUMNS: Final = (
    "ts",
    "series_id",
    "series_key",
    "metric_name",
    "value",
    "labels",
    "instance_id",
    "database_type",
    "region",
    "environment",
)
STAGE_ALERT_COLUMNS: Final = (
    "message_id",
    "fingerprint",
    "alert_name",
    "state",
    "at",
    "active_at",
    "value",
    "threshold",
    "labels",
    "annotations",
    "severity",
    "fire_count",
    "suppressed",
)

_logged_modes: set[tuple[str, str]] = set()


async def _relkind(conn: Any, schema: str, table: str) -> str | None:
    row = await conn.fetchrow(
        "SELECT c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2",
        schema,
        table,
    )
    return None if row is None else str(row["relkind"])


async def _is_hypertable(conn: Any, schema: str) -> bool:
    try:
        async with conn.transaction():  # a savepoint: a failure must not abort the caller's transaction
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM timescaledb_information.hypertables"
                    " WHERE hypertable_schema = $1 AND hypertable_name = 'metrics_hot'",
                    schema,
                )
            )
    except asyncpg.exceptions.UndefinedTableError:  # no extension in this database
        return False


async def _try_timescaledb(conn: Any) -> str | None:
    """The reason TimescaleDB cannot be used, or None when the extension is ready."""
    available = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not available:
        return "the timescaledb extension is not installed on the server"
    try:
        async with conn.transaction():  # a savepoint, as above
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:  # e.g. not in shared_preload_libraries, no privilege
        return f"CREATE EXTENSION timescaledb failed: {exc}"
    return None


async def _choose_mode(conn: Any, cfg: PgConfig) -> tuple[str, str]:
    """(mode, why): an existing table decides; otherwise TimescaleDB when it can be used."""
    kind = await _relkind(conn, cfg.schema, "metrics_hot")
    if kind == "p":
        return MODE_NATIVE, "metrics_hot already exists, partitioned natively"
    if kind is not None:
        if await _is_hypertable(conn, cfg.schema):
            return MODE_TIMESCALEDB, "metrics_hot already is a hypertable"
        raise StorageError(
            f"{cfg.schema}.metrics_hot exists but is neither a hypertable nor partitioned by time:"
            " migrate or rename it"
        )
    if cfg.mode == MODE_NATIVE:
        return MODE_NATIVE, "native partitioning requested"
    why_not = await _try_timescaledb(conn)
    if why_not is None:
        return MODE_TIMESCALEDB, "timescaledb extension available"
    if cfg.mode == MODE_TIMESCALEDB:
        raise StorageError(f"TimescaleDB requested but {why_not}")
    return MODE_NATIVE, why_not


async def ensure_schema(conn: Any, cfg: PgConfig, now: float) -> str:
    """Create or check the schema; returns the mode. Safe to run from every worker."""
    s = qident(cfg.schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{cfg.schema}.gds schema")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(_sql("series_id_function", cfg.schema))
        mode, why = await _choose_mode(conn, cfg)
        if mode == MODE_NATIVE:
            await conn.execute(_sql("metrics_hot_native", cfg.schema))
        else:
            await _timescale_setup(conn, cfg)
        await conn.execute(_sql("alert_events", cfg.schema))
    if mode == MODE_NATIVE:
        today = math.floor(now / DAY_S)
        for day in range(today - 1, today + cfg.partitions_ahead_days + 1):
            await conn.fetchval(f"SELECT {s}.metrics_hot_ensure_partition($1)", _date(day))
    await _check_columns(conn, cfg.schema)
    if (cfg.dsn, cfg.schema) not in _logged_modes:
        _logged_modes.add((cfg.dsn, cfg.schema))
        detail = (
            f"hypertable, 1-day chunks, compression after {cfg.compress_after_days}d"
            if mode == MODE_TIMESCALEDB
            else "native daily range partitions + DEFAULT"
        )
        log.info(
            "metrics_hot in %s: %s (%s), retention %dd; because %s",
            cfg.schema,
            mode,
            detail,
            cfg.retention_days,
            why,
        )
    return mode


async def _timescale_setup(conn: Any, cfg: PgConfig) -> None:
    await conn.execute(_sql("metrics_hot_timescale", cfg.schema))
    enabled = await conn.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = $1 AND hypertable_name = 'metrics_hot'",
        cfg.schema,
    )
    if not enabled:
        await conn.execute(_sql("metrics_hot_timescale_compression", cfg.schema))
    await conn.execute(
        _sql(
            "metrics_hot_timescale_policies",
            cfg.schema,
            # integers (PgConfig): pasted as they are
            compress_after_days=int(cfg.compress_after_days),
            retention_days=int(cfg.retention_days),
        )
    )
    log.debug("TimescaleDB policies set on %s.metrics_hot", cfg.schema)


async def _check_columns(conn: Any, schema: str) -> None:
    """Fail at start, with the table named, if an older table lacks a column we write."""
    s = qident(schema)
    try:
        await conn.execute(f"SELECT series_id FROM {s}.metrics_hot LIMIT 0")
    except asyncpg.exceptions.UndefinedColumnError:
        raise StorageError(
            f"{s}.metrics_hot was created by an older release, keyed by the whole series key (which a"
            " long tag value makes too large for its index). Stop the storage flow and run, once"
            f" (docs/storage.md, 'Migrating metrics_hot'):\n{migrate_series_id(schema)}"
        ) from None
    try:
        await conn.execute(
            f"SELECT time, series_id, series_key, metric_name, value, labels, instance_id, database_type,"
            f" region, environment FROM {s}.metrics_hot LIMIT 0"
        )
        await conn.execute(
            f"SELECT message_id, fingerprint, alert_name, state, at, active_at, value, threshold, labels,"
            f" annotations, severity, fire_count, suppressed FROM {s}.alert_events LIMIT 0"
        )
    except asyncpg.exceptions.UndefinedColumnError as exc:
        raise StorageError(f"schema {s} does not match what the storage flow writes: {exc}") from exc


def _date(day: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date()


def _day_of_partition(name: str) -> int | None:
    try:
        d = datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(d.timestamp()) // DAY_S


# --------------------------------------------------------------------------- rows


# series_id, series_key, metric_name, instance_id, database_type, labels JSON, region, environment
_SeriesCols = tuple[uuid.UUID, str, str, str, str, str, str | None, str | None]


def _text(s: str) -> str:
    """PostgreSQL text and jsonb cannot hold NUL: replaced (U+FFFD), or one odd tag would make
    every retry of its batch fail and the flow crash-loop on it."""
    return s.replace("\x00", "\ufffd") if "\x00" in s else s


def _text_map(d: Mapping[str, Any]) -> dict[str, Any]:
    return {_text(str(k)): _text(v) if isinstance(v, str) else v for k, v in d.items()}


class SeriesRows:
    """Staging rows for samples; the per-series columns are computed once per series.

    Keyed by the tags in arrival order (no sort per sample); bounded, cleared when full.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.cache: dict[tuple[str, str, tuple[tuple[str, str], ...]], _SeriesCols] = {}
        self.limit = limit

    def rows(self, metrics: Iterable[Metric]) -> list[tuple[Any, ...]]:
        cache = self.cache
        out = []
        for m in metrics:
            tags = m.tags
            key = (m.instance_id, m.metric_name, tuple(tags.items()) if tags else ())
            c = cache.get(key)
            if c is None:
                if len(cache) >= self.limit:
                    cache.clear()
                c = cache[key] = self._columns(m)
            out.append((m.ts, c[0], c[1], c[2], m.value, c[5], c[3], c[4], c[6], c[7]))
        return out

    @staticmethod
    def _columns(m: Metric) -> _SeriesCols:
        iid, name, tags = _text(m.instance_id), _text(m.metric_name), _text_map(m.tags)
        key = series_key(iid, name, tags)
        return (
            series_id(key),
            key,
            name,
            iid,
            _text(m.database_type),
            json.dumps(tags, ensure_ascii=False),
            tags.get(PLACEMENT_TAGS[0]),
            tags.get(PLACEMENT_TAGS[1]),
        )


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One `alerts` topic record, validated, in `alert_events` column order."""

    message_id: str
    fingerprint: str
    alert_name: str
    state: str
    at: datetime
    active_at: datetime | None
    value: float | None
    threshold: float | None
    labels: str  # JSON
    annotations: str  # JSON
    severity: str
    fire_count: int | None
    suppressed: str | None

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.message_id,
            self.fingerprint,
            self.alert_name,
            self.state,
            self.at,
            self.active_at,
            self.value,
            self.threshold,
            self.labels,
            self.annotations,
            self.severity,
            self.fire_count,
            self.suppressed,
        )


def _ts(d: dict[str, Any], name: str, required: bool) -> datetime | None:
    v = d.get(name)
    if v is None and not required:
        return None
    if type(v) is not str:
        raise PoisonMessage(f"alert record: {name} must be an ISO 8601 string")
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise PoisonMessage(f"alert record: {name}={v!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise PoisonMessage(f"alert record: {name}={v!r} has no time zone")
    return dt


def _num(d: dict[str, Any], name: str) -> float | None:
    v = d.get(name)
    if v is None:
        return None
    if type(v) not in (int, float) or not math.isfinite(v):
        raise PoisonMessage(f"alert record: {name} must be a finite number or null")
    return float(v)


_ALERT_REQUIRED: Final = ("message_id", "fingerprint", "alert_name", "state", "at", "severity")
MAX_ALERT_ID_CHARS: Final = 512  # message_id and fingerprint are indexed (btree entries <= 2704 bytes)

SKIPPED_RECORDS = METRICS.alert_records_skipped


def _record_kind(d: dict[str, Any], headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """'heartbeat' (or 'other') for a record that is not a transition, None for a transition.

    Transitions never carry a `type` key; heartbeats have `"type": "heartbeat"` and a `type`
    header (connectors/ops/)."""
    kind = d.get("type")
    if kind is None and headers:
        for k, v in headers:
            if k == "type":
                kind = bytes(v).decode("utf-8", "replace")
                break
    if kind is None:
        return None
    return "heartbeat" if kind == "heartbeat" else "other"


def decode_alert_record(
    raw: bytes | None, headers: Iterable[tuple[str, bytes]] | None = None
) -> AlertRow | None:
    """Validate one record of the `alerts` topic (`AlertEvent.to_record()` as JSON).

    None for a record that is not a transition (a heartbeat shares the topic): it is
    counted in `gds_alert_records_skipped_total` and must be skipped, never dead-lettered.
    """
    if raw is None:
        raise PoisonMessage("empty message (tombstone)")
    try:
        d = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PoisonMessage(f"alert record is not JSON: {exc}") from None
    if type(d) is not dict:
        raise PoisonMessage("alert record is not a JSON object")
    kind = _record_kind(d, headers)
    if kind is not None:
        SKIPPED_RECORDS.labels(kind).inc()
        return None
    missing = [
        k for k in ("message_id", "fingerprint", "alert_name", "state", "at", "severity") if not d.get(k)
    ]
    if missing:
        raise PoisonMessage(f"alert record: missing field(s): {', '.join(missing)}")
    for k in ("message_id", "fingerprint", "alert_name", "state", "severity"):
        if type(d[k]) is not str:
            raise PoisonMessage(f"alert record: {k} must be a string")
    for k in ("message_id", "fingerprint"):
        if len(d[k]) > MAX_ALERT_ID_CHARS:
            raise PoisonMessage(f"alert record: {k} has {len(d[k])} characters (limit {MAX_ALERT_ID_CHARS})")
    labels, annotations = d.get("labels") or {}, d.get("annotations") or {}
    if type(labels) is not dict or type(annotations) is not dict:
        raise PoisonMessage("alert record: labels and annotations must be objects")
    fire_count = d.get("fire_count")
    at = _ts(d, "at", True)
    assert at is not None
    return AlertRow(
        message_id=_text(d["message_id"]),
        fingerprint=_text(d["fingerprint"]),
        alert_name=_text(d["alert_name"]),
        state=_text(d["state"]),
        at=at,
        active_at=_ts(d, "active_at", False),
        value=_num(d, "value"),
        threshold=_num(d, "threshold"),
        labels=json.dumps(_text_map(labels), ensure_ascii=False, sort_keys=True),
        annotations=json.dumps(_text_map(annotations), ensure_ascii=False, sort_keys=True),
        severity=_text(d["severity"]),
        fire_count=fire_count if type(fire_count) is int else None,
        suppressed=d.get("suppressed") if type(d.get("suppressed")) is str else None,
    )


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A sample or alert event PostgreSQL can never store, on its way to the dead-letter topic.

    `raw()` is the item as JSON (the original message is not at hand in a sink), `stage` the
    table it was refused by.
    """

    item: Metric | AlertRow
    error: str
    stage: str  # "metrics-hot" or "alert-events"

    def key(self) -> bytes:
        item = self.item
        return (item.instance_id if isinstance(item, Metric) else item.fingerprint).encode("utf-8", "replace")

    def raw(self) -> bytes:
        item = self.item
        if isinstance(item, Metric):
            body: dict[str, Any] = {
                "timestamp": item.ts,
                "database_type": item.database_type,
                "instance_id": item.instance_id,
                "metric_name": item.metric_name,
                "value": item.value,
                "tags": dict(item.tags),
            }
        else:
            body = {c: getattr(item, c) for c in STAGE_ALERT_COLUMNS}
            body["labels"], body["annotations"] = json.loads(item.labels), json.loads(item.annotations)
        # default=str: datetimes; "replace": a lone surrogate must not stop the dead letter too
        return json.dumps(body, default=str, ensure_ascii=False).encode("utf-8", "replace")


RejectHandler = Callable[[Sequence[RefusedRow]], None]


def log_refused(rows: Sequence[RefusedRow]) -> None:
    """The default `on_reject`: the rows are only logged (a flow passes its dead-letter sink)."""
    for r in rows:
        log.error("%s refused a row, dropped: %s", r.stage, r.error)


class PgWriter:
    """One connection and one event loop, used from one worker thread.

    A single connection rather than a pool: a sink partition writes one batch at a time, so a
    pool would only add idle connections. "Reconnect" means: after a transient failure the
    connection is dropped and the next attempt opens (and prepares) a new one.

    Rows the server refuses for their data (see `is_data_error`) are found by bisecting the
    batch; the others are written and the refused ones go to `on_reject`.
    """

    def __init__(
        self,
        cfg: PgConfig,
        *,
        wall: Callable[[], float] = time.time,
        maintain: bool = False,
        on_reject: RejectHandler = log_refused,
    ):
        self.cfg = cfg
        self.wall = wall
        self.maintain = maintain  # this writer runs the native retention
        self.on_reject = on_reject
        self.rows_refused = 0
        self.mode: str | None = None
        self._s = qident(cfg.schema)
        self._move_metrics = _sql("move_metrics", cfg.schema)
        self._move_alerts = _sql("move_alert_events", cfg.schema)
        self._loop = asyncio.new_event_loop()
        self._conn: Any = None
        self._days: set[int] = set()  # partitions known to exist (native mode)
        self._next_retention = 0.0
        self._rows = SeriesRows()
        self.rows_written = 0

    # -- plumbing -------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def _retry(self, what: str, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            return retry_call(
                lambda: self._run(fn()),
                what=what,
                is_transient=is_transient,
                policy=self.cfg.retry,
                on_retry=lambda _exc: self._drop_connection(),
                store="timescaledb",  # gds_store_up -> timescaledb_up (connectors.ops.selfmetrics)
            )
        except ConnectorError:  # StorageError, RetryExhaustedError
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if is_data_error(exc):
                raise RowsRefusedError(f"{what}: the data was refused: {detail}") from exc
            raise StorageError(f"{what}: permanent error (not retried): {detail}") from exc

    def _write_all(
        self,
        records: Sequence[tuple[Any, ...]],
        what: str,
        write: Callable[[list[tuple[Any, ...]]], Coroutine[Any, Any, int]],
    ) -> tuple[int, list[tuple[int, str]]]:
        """Write in chunks of `batch_rows`; returns (rows inserted, [(index, error) of refused rows])."""
        inserted = 0
        refused: list[tuple[int, str]] = []
        step = self.cfg.batch_rows
        for i in range(0, len(records), step):
            inserted += self._bisect(records, i, min(i + step, len(records)), what, write, refused)
        return inserted, refused

    def _bisect(
        self,
        records: Sequence[tuple[Any, ...]],
        lo: int,
        hi: int,
        what: str,
        write: Callable[[list[tuple[Any, ...]]], Coroutine[Any, Any, int]],
        refused: list[tuple[int, str]],
    ) -> int:
        """Write records[lo:hi]; on a data error, each half on its own, down to single rows
        (about 2 log2(n) extra transactions per refused row). Outages are still retried."""
        chunk = list(records[lo:hi])
        try:
            return self._retry(f"write {len(chunk)} {what}", partial(write, chunk))
        except RowsRefusedError as exc:
            if hi - lo == 1:
                cause = exc.__cause__
                refused.append((lo, f"{type(cause).__name__}: {cause}" if cause else str(exc)))
                return 0
        mid = (lo + hi) // 2
        return self._bisect(records, lo, mid, what, write, refused) + self._bisect(
            records, mid, hi, what, write, refused
        )

    def _refuse(self, items: Sequence[Metric | AlertRow], refused: list[tuple[int, str]], stage: str) -> None:
        if refused:
            self.rows_refused += len(refused)
            self.on_reject([RefusedRow(items[i], err, stage) for i, err in refused])

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # no goodbye over a socket that may be dead

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self.cfg.dsn, timeout=self.cfg.connect_timeout_s, command_timeout=self.cfg.command_timeout_s
            )
            try:
                if self.mode is None:
                    self.mode = await ensure_schema(conn, self.cfg, self.wall())
                if self.mode == MODE_NATIVE:
                    self._days = await self._existing_days(conn)
                await conn.execute(read("sql/staging.sql"))
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def _existing_days(self, conn: Any) -> set[int]:
        names = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = $1::regclass",
            f"{self._s}.metrics_hot",
        )
        days = (_day_of_partition(r["relname"]) for r in names if r["relname"].startswith("metrics_hot_p"))
        return {d for d in days if d is not None}

    # -- public ---------------------------------------------------------------------
    def open(self) -> str:
        """Connect and ensure the schema (retried like a write); returns the storage mode."""
        self._retry(f"connect to PostgreSQL ({self.cfg.schema})", self._connection)
        assert self.mode is not None
        return self.mode

    def write_metrics(self, metrics: Sequence[Metric]) -> int:
        """Insert samples idempotently; returns rows actually inserted (new ones)."""
        if not metrics:
            return 0
        rows = self._rows.rows(metrics)
        inserted, refused = self._write_all(
            rows, f"rows to {self.cfg.schema}.metrics_hot", self._write_metrics
        )
        self._refuse(metrics, refused, "metrics-hot")
        self.rows_written += inserted
        if self.maintain and self.mode == MODE_NATIVE and self.wall() >= self._next_retention:
            self.run_retention()
        return inserted

    def write_alert_rows(self, rows: Sequence[AlertRow]) -> int:
        if not rows:
            return 0
        records = [r.as_tuple() for r in rows]
        inserted, refused = self._write_all(
            records, f"alert events to {self.cfg.schema}.alert_events", self._write_alerts
        )
        self._refuse(rows, refused, "alert-events")
        return inserted

    def run_retention(self) -> list[str]:
        """Drop partitions past the retention (native mode); returns the dropped names."""
        self._next_retention = self.wall() + self.cfg.retention_every_s
        if self.mode != MODE_NATIVE:
            return []
        dropped: list[str] = self._retry(f"retention of {self.cfg.schema}.metrics_hot", self._retention)
        for name in dropped:
            day = _day_of_partition(name)
            self._days.discard(day if day is not None else -1)
        if dropped:
            log.info("retention dropped %s.metrics_hot partitions %s", self.cfg.schema, dropped)
        return dropped

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._run(conn.close(timeout=5))
            except Exception:  # closing a dead connection: nothing left to save
                conn.terminate()
        self._loop.close()

    # -- transactions ---------------------------------------------------------------
    async def _write_metrics(self, rows: list[tuple[Any, ...]]) -> int:
        conn = await self._connection()
        if self.mode == MODE_NATIVE:
            days = {int(r[0] // DAY_S) for r in rows}  # per chunk: a bisected half needs only its own
            for day in sorted(days - self._days):
                await conn.fetchval(f"SELECT {self._s}.metrics_hot_ensure_partition($1)", _date(day))
                self._days.add(day)
        async with conn.transaction():
            await conn.copy_records_to_table("metrics_hot_stage", records=rows, columns=STAGE_METRIC_COLUMNS)
            status = await conn.execute(self._move_metrics)
        return int(status.rsplit(" ", 1)[-1])

    async def _write_alerts(self, records: list[tuple[Any, ...]]) -> int:
        conn = await self._connection()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "alert_events_stage", records=records, columns=STAGE_ALERT_COLUMNS
            )
            status = await conn.execute(self._move_alerts)
        return int(status.rsplit(" ", 1)[-1])

    async def _retention(self) -> list[str]:
        conn = await self._connection()
        rows = await conn.fetch(
            f"SELECT * FROM {self._s}.metrics_hot_drop_old_partitions($1::interval)",
            timedelta(days=self.cfg.retention_days),
        )
        return [r[0] for r in rows]


# --------------------------------------------------------------------------- sinks


@dataclass(frozen=True, slots=True)
class Rejects:
    """Where a sink sends the rows PostgreSQL refuses: a sink of the flow (its dead-letter
    sink) built once more inside each partition, and how a `RefusedRow` becomes its item."""

    sink: DynamicSink[Any]
    to_item: Callable[[RefusedRow], Any]

    def handler(self, step_id: str, worker_index: int, worker_count: int) -> tuple[RejectHandler, Any]:
        part = self.sink.build(f"{step_id}-refused", worker_index, worker_count)

        def send(rows: Sequence[RefusedRow]) -> None:
            # written before write_batch returns, so within the epoch of the batch
            part.write_batch([self.to_item(r) for r in rows])

        return send, part


class _MetricsPartition(StatelessSinkPartition[Metric]):
    def __init__(self, writer: PgWriter, rejects: Any = None) -> None:
        self.writer = writer
        self.rejects = rejects

    def write_batch(self, items: list[Metric]) -> None:
        self.writer.write_metrics(items)

    def close(self) -> None:
        self.writer.close()
        if self.rejects is not None:
            self.rejects.close()


class MetricsHotSink(DynamicSink[Metric]):
    """Samples -> `metrics_hot`; worker 0 also runs the native retention. Refused rows go to
    `rejects` (None: logged and dropped)."""

    def __init__(self, cfg: PgConfig, rejects: Rejects | None = None) -> None:
        self.cfg = cfg
        self.rejects = rejects

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MetricsPartition:
        on_reject, part = (
            self.rejects.handler(step_id, worker_index, worker_count) if self.rejects else (log_refused, None)
        )
        writer = PgWriter(self.cfg, maintain=worker_index == 0, on_reject=on_reject)
        writer.open()
        if worker_index == 0:
            writer.run_retention()
        return _MetricsPartition(writer, part)


class _AlertsPartition(StatelessSinkPartition[AlertRow]):
    def __init__(self, writer: PgWriter, rejects: Any = None) -> None:
        self.writer = writer
        self.rejects = rejects

    def write_batch(self, items: list[AlertRow]) -> None:
        self.writer.write_alert_rows(items)

    def close(self) -> None:
        self.writer.close()
        if self.rejects is not None:
            self.rejects.close()


class AlertEventsSink(DynamicSink[AlertRow]):
    """Alert transitions -> `alert_events`, idempotent by message_id; refused rows as above."""

    def __init__(self, cfg: PgConfig, rejects: Rejects | None = None) -> None:
        self.cfg = cfg
        self.rejects = rejects

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertsPartition:
        on_reject, part = (
            self.rejects.handler(step_id, worker_index, worker_count) if self.rejects else (log_refused, None)
        )
        writer = PgWriter(self.cfg, on_reject=on_reject)
        writer.open()
        return _AlertsPartition(writer, part)
