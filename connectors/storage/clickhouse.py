"""ClickHouse for the rollups: a ClickHouse server through clickhouse-connect when
CLICKHOUSE_URL is set, the embedded engine (chdb) otherwise. Same DDL for both, in
`schemas/clickhouse/`.

Tables `metrics_1m`, `metrics_5m`, `metrics_1h`: ReplacingMergeTree ordered by
(metric_name, instance_id, series_key, window_start). The series key determines the metric
and the instance, so a row's identity is (series_key, window_start): a replay, or an epoch
re-run after a restart, inserts the same row again and the merge keeps one. Until parts are
merged both copies exist, so exact reads use `FINAL` (docs/storage.md). Each table has a TTL
on window_start; note that ClickHouse applies it on insert too, so replaying history older
than the TTL stores nothing.

chdb runs one embedded server per process with one data path: sessions on that path are
shared and reference counted (`EmbeddedClickHouse`), and opening a second path while the
first is open fails with a clear error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlparse

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.errors import ConnectorError
from connectors.storage.retry import STORAGE_RETRY, RetryPolicy, retry_call
from connectors.storage.sqlfiles import render
from rules.rollup.windows import DEFAULT_RESOLUTIONS, PLACEMENT_TAGS, Resolution, Rollup

log = logging.getLogger(__name__)

DEFAULT_DATABASE: Final = "gds"
DEFAULT_TTL_DAYS: Final = {"1m": 30, "5m": 180, "1h": 730}

ROLLUP_COLUMNS: Final = (
    "series_key",
    "window_start",
    "instance_id",
    "database_type",
    "metric_name",
    "region",
    "environment",
    "labels",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "p50",
    "p95",
    "p99",
)


class ClickHouseError(ConnectorError):
    """A ClickHouse failure that retrying cannot fix (DDL, types), or a misconfiguration."""


class ClickHouse(Protocol):
    """The few operations the rollups need, identical for a server and the embedded engine."""

    def command(self, sql: str) -> None: ...

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """`table` is `db.name`; every row has the same keys (the column names)."""
        ...

    def query(self, sql: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def table_name(database: str, res: Resolution | str) -> str:
    name = res.name if isinstance(res, Resolution) else res
    return f"{database}.metrics_{name}"


def rollup_ddl(database: str, res: Resolution, ttl_days: int) -> str:
    """`schemas/clickhouse/rollup_table.sql` for one resolution."""
    # 1m rows expire by day: daily partitions let the TTL drop whole parts
    part = "toYYYYMMDD(window_start)" if res.width_s < 300 else "toYYYYMM(window_start)"
    return render(
        "clickhouse/rollup_table.sql",
        table=table_name(database, res),
        partition_by=part,
        ttl_days=int(ttl_days),
    )


def ensure_tables(
    ch: ClickHouse,
    database: str = DEFAULT_DATABASE,
    resolutions: Sequence[Resolution] = DEFAULT_RESOLUTIONS,
    ttl_days: Mapping[str, int] = DEFAULT_TTL_DAYS,
) -> None:
    ch.command(render("clickhouse/database.sql", database=database))
    for res in resolutions:
        ch.command(rollup_ddl(database, res, ttl_days.get(res.name, 365)))


def rollup_row(r: Rollup) -> dict[str, Any]:
    s = r.series
    return {
        "series_key": s.key,
        "window_start": r.start,
        "instance_id": s.instance_id,
        "database_type": s.database_type,
        "metric_name": s.metric_name,
        "region": s.tag(PLACEMENT_TAGS[0]),
        "environment": s.tag(PLACEMENT_TAGS[1]),
        "labels": dict(s.tags),
        "count": r.count,
        "sum": r.sum,
        "min": r.min,
        "max": r.max,
        "avg": r.avg,
        "p50": r.p50,
        "p95": r.p95,
        "p99": r.p99,
    }


# --------------------------------------------------------------------------- server


class ServerClickHouse:
    """clickhouse-connect over HTTP(S); `url` as in CLICKHOUSE_URL (user:password@host:port)."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0, send_receive_timeout_s: float = 120.0):
        import clickhouse_connect

        u = urlparse(url)
        try:
            self.client = clickhouse_connect.get_client(
                host=u.hostname or "localhost",
                port=u.port or (8443 if u.scheme == "https" else 8123),
                username=u.username or "default",
                password=u.password or "",
                secure=u.scheme == "https",
                connect_timeout=connect_timeout_s,
                send_receive_timeout=send_receive_timeout_s,
            )
        except Exception as exc:
            raise _server_error(exc, f"connect to ClickHouse at {u.hostname}:{u.port}") from exc

    def command(self, sql: str) -> None:
        self.client.command(sql)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        database, _, name = table.rpartition(".")
        self.client.insert(
            name,
            [[row[c] for c in columns] for row in rows],
            column_names=columns,
            database=database or None,
        )

    def query(self, sql: str) -> list[dict[str, Any]]:
        return list(self.client.query(sql).named_results())

    def close(self) -> None:
        self.client.close()


def _server_error(exc: Exception, what: str) -> Exception:
    """Network trouble stays as it is (retried); the rest becomes a ClickHouseError."""
    if is_transient(exc):
        return exc
    return ClickHouseError(f"{what}: {exc}")


def is_transient(exc: BaseException) -> bool:
    """Server unreachable or overloaded; chdb errors are never transient (no network)."""
    try:
        from clickhouse_connect.driver.exceptions import OperationalError
    except ImportError:  # pragma: no cover - dependency of the project
        return False
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return True
    text = str(exc)
    # TOO_MANY_PARTS (252), TOO_MANY_SIMULTANEOUS_QUERIES (202), TIMEOUT_EXCEEDED (159)
    return any(f"Code: {code}." in text for code in (159, 202, 252))


# --------------------------------------------------------------------------- embedded


class _Embedded:
    """The process' single chdb session, shared by every worker thread (chdb is thread-safe)."""

    lock = threading.Lock()
    session: Any = None
    path: str | None = None
    refs = 0


class EmbeddedClickHouse:
    """chdb (ClickHouse in-process) on a data directory; see the module docstring."""

    def __init__(self, path: Path | str) -> None:
        path = str(Path(path).resolve())
        with _Embedded.lock:
            if _Embedded.session is not None and _Embedded.path != path:
                raise ClickHouseError(
                    f"embedded ClickHouse is already open on {_Embedded.path}; chdb allows one data"
                    f" path per process (asked for {path})"
                )
            if _Embedded.session is None:
                import chdb.session

                Path(path).mkdir(parents=True, exist_ok=True)
                _Embedded.session = chdb.session.Session(path)
                _Embedded.path = path
            _Embedded.refs += 1
        self.path = path
        self._closed = False

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        if self._closed:
            raise ClickHouseError("embedded ClickHouse used after close()")
        try:
            return _Embedded.session.query(sql, fmt)
        except Exception as exc:  # ChdbError / RuntimeError: SQL or engine errors
            raise ClickHouseError(f"chdb: {exc}") from exc

    def command(self, sql: str) -> None:
        self._run(sql)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        body = "\n".join(dumps([row[c] for c in columns]) for row in rows)
        # precise parsing: Float64 values must round-trip bit for bit (sum, avg)
        self._run(
            f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS precise_float_parsing = 1"
            f" FORMAT JSONCompactEachRow\n{body}"
        )

    def query(self, sql: str) -> list[dict[str, Any]]:
        text = str(self._run(sql, "JSONEachRow"))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _Embedded.lock:
            _Embedded.refs -= 1
            if _Embedded.refs == 0 and _Embedded.session is not None:
                _Embedded.session.close()
                _Embedded.session = None
                _Embedded.path = None


def open_clickhouse(url: str | None, path: Path | str) -> ClickHouse:
    """The server when `url` is set, else the embedded engine on `path`."""
    if url:
        return ServerClickHouse(url)
    return EmbeddedClickHouse(path)


# --------------------------------------------------------------------------- sink


class RollupWriter:
    """Groups a batch by resolution and inserts each group into its table, with retries."""

    def __init__(self, ch: ClickHouse, database: str = DEFAULT_DATABASE, retry: RetryPolicy = STORAGE_RETRY):
        self.ch = ch
        self.database = database
        self.retry = retry

    def write(self, rollups: Sequence[Rollup]) -> int:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rollups:
            groups.setdefault(r.resolution, []).append(rollup_row(r))
        for res, rows in groups.items():
            table = table_name(self.database, res)
            try:
                retry_call(
                    partial(self.ch.insert_rows, table, rows),
                    what=f"insert {len(rows)} rows into {table}",
                    is_transient=is_transient,
                    policy=self.retry,
                    store="clickhouse",  # -> clickhouse_insert_error_rate (connectors.ops.selfmetrics)
                )
            except ConnectorError:
                raise
            except Exception as exc:
                raise ClickHouseError(f"insert into {table} failed (not retried): {exc}") from exc
        return len(rollups)


class _RollupPartition(StatelessSinkPartition[list[Rollup]]):
    def __init__(self, writer: RollupWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[list[Rollup]]) -> None:
        self.writer.write([r for batch in items for r in batch])

    def close(self) -> None:
        self.writer.ch.close()


class ClickHouseRollupSink(DynamicSink[list[Rollup]]):
    """Lists of rollups (the flow collects them: few, large inserts) -> metrics_{1m,5m,1h}.
    Tables are ensured when each worker's partition starts.

    `factory` opens a connection per worker (`partial(open_clickhouse, url, path)`); the
    partition closes it at the end (embedded sessions are reference counted).
    """

    def __init__(
        self,
        factory: Callable[[], ClickHouse],
        *,
        database: str = DEFAULT_DATABASE,
        resolutions: Sequence[Resolution] = DEFAULT_RESOLUTIONS,
        ttl_days: Mapping[str, int] = DEFAULT_TTL_DAYS,
        retry: RetryPolicy = STORAGE_RETRY,
    ) -> None:
        self.factory = factory
        self.database = database
        self.resolutions = tuple(resolutions)
        self.ttl_days = dict(ttl_days)
        self.retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RollupPartition:
        ch = retry_call(
            self.factory, what="connect to ClickHouse", is_transient=is_transient, policy=self.retry
        )
        retry_call(
            lambda: ensure_tables(ch, self.database, self.resolutions, self.ttl_days),
            what=f"create the rollup tables in {self.database}",
            is_transient=is_transient,
            policy=self.retry,
        )
        return _RollupPartition(RollupWriter(ch, self.database, self.retry))
