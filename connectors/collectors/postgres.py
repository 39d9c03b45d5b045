"""PostgreSQL instance metrics through asyncpg.

One long-lived connection per target (a connection per poll would itself move
`connection_usage_percent` and cost a backend start each time); it is dropped on any
error and re-opened at the next poll. The SQL reads only statistics views and settings:
a role with `pg_monitor` sees everything (without it, other users' `state` is hidden and
`active_connections` / `long_running_queries` undercount).

Counters (transactions, deadlocks, block reads) become rates and deltas between two polls,
timed by the *server's* clock read in the same statement as the counters, so neither our
clock (injected, possibly fake) nor network latency skews them. The first poll after a
(re)start emits no rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

from connectors.collectors.base import BaseCollector, CollectorError, Target, register
from connectors.collectors.redact import password_of, redact_text
from rules.duration import parse_duration
from rules.metric import Metric

APPLICATION_NAME: Final = "gds-collector"
DEFAULT_LONG_QUERY_S: Final = 300.0
LOCK_MODES: Final = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
_OPTIONS: Final = {"dsn", "long_query_threshold"}

# One statement, so the counters and the server time they are divided by are one snapshot.
MAIN_SQL: Final = """
SELECT
  extract(epoch FROM clock_timestamp())::float8 AS server_time,
  current_setting('max_connections')::int AS max_connections,
  pg_is_in_recovery() AS in_recovery,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
  (SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()) AS active,
  (SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid()
      AND clock_timestamp() - query_start > make_interval(secs => $1)) AS long_running,
  d.xacts, d.blks_hit, d.blks_read, d.deadlocks
FROM (SELECT sum(xact_commit + xact_rollback)::float8 AS xacts, sum(blks_hit)::float8 AS blks_hit,
             sum(blks_read)::float8 AS blks_read, sum(deadlocks)::float8 AS deadlocks
      FROM pg_stat_database) AS d
"""
LOCKS_SQL: Final = """
SELECT mode, count(*) AS held, count(*) FILTER (WHERE NOT granted) AS waiting FROM pg_locks GROUP BY mode
"""
SIZES_SQL: Final = """
SELECT datname, pg_database_size(oid)::float8 AS bytes FROM pg_database
WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT')
"""
# A replica that has replayed everything it received is not behind, however old its last
# replayed transaction is (an idle primary sends none): report 0 then, not the age.
REPLICA_LAG_SQL: Final = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
"""
# replay_lag is NULL once an idle standby has caught up: connected standbys then lag 0.
PRIMARY_LAG_SQL: Final = """
SELECT CASE WHEN count(*) = 0 THEN NULL
            ELSE coalesce(extract(epoch FROM max(replay_lag)), 0)::float8 END
FROM pg_stat_replication
"""


@dataclass(frozen=True, slots=True)
class PgSnapshot:
    """What one poll read, before any arithmetic."""

    server_time: float  # the server's clock_timestamp(), epoch seconds
    local_time: float  # our wall clock at the middle of the statement's round trip
    max_connections: int
    connections: int
    active: int
    long_running: int
    xacts: float
    blks_hit: float
    blks_read: float
    deadlocks: float
    in_recovery: bool
    replication_lag: float | None = None  # None: not a replica and no standby attached
    locks: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # mode -> (held, waiting)
    database_sizes: Mapping[str, float] = field(default_factory=dict)


Sample = tuple[str, float, Mapping[str, str]]


def pg_samples(cur: PgSnapshot, prev: PgSnapshot | None) -> list[Sample]:
    """The metrics of one poll; counter-based ones only when `prev` allows a delta."""
    none: Mapping[str, str] = {}
    out: list[Sample] = [
        ("connection_usage_percent", 100.0 * cur.connections / max(cur.max_connections, 1), none),
        ("active_connections", float(cur.active), none),
        ("long_running_queries", float(cur.long_running), none),
        ("clock_skew_seconds", cur.server_time - cur.local_time, none),
    ]
    if cur.replication_lag is not None:
        out.append(("replication_lag_seconds", max(0.0, cur.replication_lag), none))
    modes = dict.fromkeys(LOCK_MODES, (0, 0)) | dict(cur.locks)
    for mode, (held, _waiting) in sorted(modes.items()):
        out.append(("locks", float(held), {"mode": mode}))
    out.append(("locks_waiting", float(sum(w for _h, w in modes.values())), none))
    for db, size in sorted(cur.database_sizes.items()):
        out.append(("database_size_bytes", size, {"database": db}))
    if prev is None:
        return out
    elapsed = cur.server_time - prev.server_time
    xacts = cur.xacts - prev.xacts
    deadlocks = cur.deadlocks - prev.deadlocks
    hits = cur.blks_hit - prev.blks_hit
    reads = cur.blks_read - prev.blks_read
    # A counter going backwards is a stats reset: no delta this poll, the next one is fine.
    if elapsed > 0 and xacts >= 0:
        out.append(("transactions_per_second", xacts / elapsed, none))
    if deadlocks >= 0:
        out.append(("deadlocks", deadlocks, none))
    if hits >= 0 and reads >= 0 and hits + reads > 0:
        out.append(("cache_hit_ratio", hits / (hits + reads), none))
    return out


@register("postgresql")
class PostgresCollector(BaseCollector):
    """Options: `dsn` (required; `${PG_PASSWORD}` expansion keeps the secret out of the file),
    `long_query_threshold` (default 5m)."""

    default_database_type = "postgresql"

    def __init__(
        self,
        target: Target,
        *,
        wall: Callable[[], float] = time.time,
        connect: Callable[..., Any] = asyncpg.connect,
    ) -> None:
        super().__init__(target)
        self._dsn = str(target.options["dsn"])
        self._secret = password_of(self._dsn)
        self._long_query_s = parse_duration(target.options.get("long_query_threshold", DEFAULT_LONG_QUERY_S))
        self._wall = wall
        self._connect = connect
        self._conn: Any = None
        self._prev: PgSnapshot | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = [f"unknown option {k!r} for type postgresql" for k in sorted(set(options) - _OPTIONS)]
        dsn = options.get("dsn")
        if not isinstance(dsn, str) or not dsn.strip():
            problems.append("dsn: required (postgresql://user@host:port/db or libpq key=value)")
        try:
            parse_duration(options.get("long_query_threshold", DEFAULT_LONG_QUERY_S))
        except ValueError as exc:
            problems.append(f"long_query_threshold: {exc}")
        return problems

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            timeout = self.target.timeout_s
            self._conn = await self._connect(
                self._dsn,
                timeout=timeout,
                server_settings={
                    "application_name": APPLICATION_NAME,
                    # never let a stuck catalog query hold a backend past the poll
                    "statement_timeout": str(int(timeout * 1000)),
                },
            )
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _snapshot(self) -> PgSnapshot:
        conn = await self._connection()
        t0 = self._wall()
        row = await conn.fetchrow(MAIN_SQL, self._long_query_s)
        t1 = self._wall()
        locks = await conn.fetch(LOCKS_SQL)
        sizes = await conn.fetch(SIZES_SQL)
        lag = await conn.fetchval(REPLICA_LAG_SQL if row["in_recovery"] else PRIMARY_LAG_SQL)
        return PgSnapshot(
            server_time=row["server_time"],
            local_time=(t0 + t1) / 2,
            max_connections=row["max_connections"],
            connections=row["connections"],
            active=row["active"],
            long_running=row["long_running"],
            xacts=row["xacts"] or 0.0,
            blks_hit=row["blks_hit"] or 0.0,
            blks_read=row["blks_read"] or 0.0,
            deadlocks=row["deadlocks"] or 0.0,
            in_recovery=row["in_recovery"],
            replication_lag=lag,
            locks={r["mode"]: (r["held"], r["waiting"]) for r in locks},
            database_sizes={r["datname"]: r["bytes"] for r in sizes},
        )

    async def collect(self, now: float) -> list[Metric]:
        try:
            cur = await self._snapshot()
        except Exception as exc:
            self._drop()
            detail = redact_text(f"{type(exc).__name__}: {exc}", [self._secret])
            raise CollectorError(f"target {self.target.name!r}: {detail}") from exc
        except BaseException:  # cancelled by the poll timeout: the connection is mid-query
            self._drop()
            raise
        prev, self._prev = self._prev, cur
        t = self.target
        return [t.sample(now, name, value, tags) for name, value, tags in pg_samples(cur, prev)]

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=self.target.timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()
