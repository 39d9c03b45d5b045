"""PostgreSQL metric arithmetic from snapshots (no database: the SQL is in the integration test)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connectors.collectors.postgres import LOCK_MODES, PgSnapshot, pg_samples

BASE = PgSnapshot(
    server_time=1000.0,
    local_time=998.5,
    max_connections=100,
    connections=42,
    active=3,
    long_running=1,
    xacts=10_000.0,
    blks_hit=900.0,
    blks_read=100.0,
    deadlocks=2.0,
    in_recovery=False,
    replication_lag=None,
    locks={"AccessShareLock": (5, 1), "SIReadLock": (2, 0)},
    database_sizes={"gds": 1e6, "postgres": 2e6},
)


def by_name(samples: list) -> dict:
    return {(n, tuple(sorted(t.items()))): v for n, v, t in samples}


def test_first_poll_has_levels_and_no_rates() -> None:
    got = by_name(pg_samples(BASE, None))
    assert got[("connection_usage_percent", ())] == 42.0
    assert got[("active_connections", ())] == 3.0
    assert got[("long_running_queries", ())] == 1.0
    assert got[("clock_skew_seconds", ())] == 1.5  # the server is 1.5 s ahead of us
    assert got[("locks", (("mode", "AccessShareLock"),))] == 5.0
    assert got[("locks", (("mode", "SIReadLock"),))] == 2.0
    assert all(("locks", (("mode", mode),)) in got for mode in LOCK_MODES)  # zeros keep series alive
    assert got[("locks_waiting", ())] == 1.0
    assert got[("database_size_bytes", (("database", "postgres"),))] == 2e6
    names = {k[0] for k in got}
    assert not names & {"transactions_per_second", "deadlocks", "cache_hit_ratio", "replication_lag_seconds"}


def test_second_poll_rates_use_the_server_clock() -> None:
    cur = replace(BASE, server_time=1010.0, local_time=5.0, xacts=10_500.0, blks_hit=1_080.0, blks_read=120.0)
    got = by_name(pg_samples(cur, BASE))
    assert got[("transactions_per_second", ())] == 50.0
    assert got[("deadlocks", ())] == 0.0
    assert got[("cache_hit_ratio", ())] == pytest.approx(180 / 200)


def test_stats_reset_skips_deltas_for_one_poll() -> None:
    cur = replace(BASE, server_time=1010.0, xacts=10.0, deadlocks=0.0, blks_hit=0.0, blks_read=0.0)
    names = {n for n, _v, _t in pg_samples(cur, BASE)}
    assert not names & {"transactions_per_second", "deadlocks", "cache_hit_ratio"}


def test_replication_lag_when_known() -> None:
    assert (
        by_name(pg_samples(replace(BASE, replication_lag=12.5), None))[("replication_lag_seconds", ())]
        == 12.5
    )
    assert (
        by_name(pg_samples(replace(BASE, replication_lag=-0.2), None))[("replication_lag_seconds", ())] == 0.0
    )
