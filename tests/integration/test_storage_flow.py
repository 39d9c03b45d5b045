"""The storage flow against the real PostgreSQL and Redis: replays, idempotence, an outage.

Each test works in its own PostgreSQL schema and Redis key prefix, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.kafka.dlq import parse_dead_letter
from connectors.kafka.serde import make_decoder
from connectors.storage.latest import RedisLatestSink, latest_key
from connectors.storage.retry import STORAGE_RETRY, RetryExhaustedError, next_delay, retry_call
from connectors.storage.timescale import AlertEventsSink, MetricsHotSink, PgConfig, decode_alert_record
from flows.storage import StorageOutputs, build_flow
from rules.model import AlertEvent, AlertState, Severity
from rules.rollup.windows import series_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DECODE = make_decoder("json", max_future_s=float("inf"))
FAST_RETRY = replace(STORAGE_RETRY, base_s=0.05, cap_s=0.5, deadline_s=90.0)
INSTANCES = {"db-1": "us-east-1", "db-2": "eu-west-1", "db-3": "us-east-1"}


def dataset(start: float, hours: float = 2.0, step_s: int = 10) -> tuple[list[dict[str, Any]], int]:
    """3 instances x 3 series over `hours`, plus a duplicated sample. Returns (records, distinct)."""
    out: list[dict[str, Any]] = []
    n = int(hours * 3600 / step_s)
    for i in range(n):
        ts = start + i * step_s
        for j, (iid, region) in enumerate(INSTANCES.items()):
            tags = {"environment": "production", "region": region}
            for name, extra, value in (
                ("cpu_usage_percent", {}, (i * 7 + j * 13) % 400 / 4),
                ("active_connections", {}, float((i + j) % 50)),
                ("table_size_bytes", {"table": "orders"}, float(1000 + i * 3 + j)),
            ):
                out.append(
                    {
                        "timestamp": ts,
                        "database_type": "postgresql",
                        "instance_id": iid,
                        "metric_name": name,
                        "value": value,
                        "tags": {**tags, **extra},
                    }
                )
    distinct = len(out)
    out.append(dict(out[100]))  # a duplicate (at-least-once producer): stored once
    return out, distinct


def messages(records: list[dict[str, Any]], bad: int = 2) -> list[KafkaSourceMessage]:
    msgs = [
        KafkaSourceMessage(
            r["instance_id"].encode(),
            json.dumps(r).encode(),
            topic="gds.metrics.pg.test",
            partition=0,
            offset=i,
        )
        for i, r in enumerate(records)
    ]
    for k in range(bad):
        msgs.insert(
            50 + k * 1000,
            KafkaSourceMessage(
                b"db-1", b'{"timestamp": 1, "value": NaN', topic="gds.metrics.pg.test", offset=-k
            ),
        )
    return msgs


def alert_records(start: float) -> list[bytes]:
    out = []
    for i, state in enumerate((AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED)):
        e = AlertEvent(
            alert_name="HighCPU",
            fingerprint="fp-1",
            state=state,
            at=start + 60 * i,
            active_at=start,
            fired_at=start + 60 if i else None,
            resolved_at=start + 120 if i == 2 else None,
            value=91.5 if i < 2 else float("nan"),
            threshold=90.0,
            severity=Severity.CRITICAL,
            labels=(("instance_id", "db-1"), ("severity", "critical")),
            annotations=(("summary", "CPU high on db-1"),),
            runbook_url="",
            dashboard_url="",
            fire_count=1,
            message_id=f"msg-{i}",
        )
        out.append(json.dumps(e.to_record()).encode())
    return out


def pg(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture()
def schema(pg_dsn: str) -> Iterator[str]:
    name = f"test_storage_{uuid.uuid4().hex[:10]}"
    yield name
    pg(pg_dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture()
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:latest:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def hour_start() -> float:
    """Three hours ago, on an hour: inside every retention, never in the future."""
    return (time.time() // 3600 - 3) * 3600


# --------------------------------------------------------------------------- replays


def test_replayed_twice_stores_every_sample_once(pg_dsn: str, redis_url: str, schema: str, redis_prefix: str):
    start = hour_start()
    records, distinct = dataset(start)
    cfg = PgConfig(pg_dsn, schema=schema, batch_rows=2000, retry=FAST_RETRY)
    alerts = [*alert_records(start), b"not json", alert_records(start)[0]]  # a bad one, a duplicate
    for _run in range(2):
        dlq: list[Any] = []
        outputs = StorageOutputs(
            MetricsHotSink(cfg),
            AlertEventsSink(cfg),
            TestingSink(dlq),
            latest=RedisLatestSink(redis_url, prefix=redis_prefix, ttl_s=3600, retry=FAST_RETRY),
        )
        flow = build_flow(
            TestingSource(messages(records), batch_size=500),
            outputs,
            DECODE,
            alerts_source=TestingSource(
                [KafkaSourceMessage(b"fp-1", a, topic="alerts", offset=i) for i, a in enumerate(alerts)]
            ),
            wall=None,
        )
        run_main(flow)
        letters = [parse_dead_letter(m.value, m.key) for m in dlq]
        assert sorted(d.stage for d in letters) == ["alert-decode", "decode", "decode"]
        assert all(d.topic in ("gds.metrics.pg.test", "alerts") for d in letters)

        (row,) = pg(
            pg_dsn,
            f'SELECT count(*) AS n, count(DISTINCT (series_key, time)) AS d FROM "{schema}".metrics_hot',
        )
        assert (row["n"], row["d"]) == (distinct, distinct)
        (row,) = pg(pg_dsn, f'SELECT count(*) AS n FROM "{schema}".alert_events')
        assert row["n"] == 3

    # every row landed in its daily partition, none in the DEFAULT safety net
    parts = pg(
        pg_dsn, f'SELECT tableoid::regclass::text AS p, count(*) AS n FROM "{schema}".metrics_hot GROUP BY 1'
    )
    assert parts and all("metrics_hot_p" in r["p"] for r in parts)

    # columns of one sample
    r0 = records[0]
    key = series_key(r0["instance_id"], r0["metric_name"], r0["tags"])
    (got,) = pg(
        pg_dsn,
        f'SELECT extract(epoch FROM time) AS ts, * FROM "{schema}".metrics_hot WHERE series_key = $1'
        " ORDER BY time LIMIT 1",
        key,
    )
    assert float(got["ts"]) == r0["timestamp"]
    assert (got["metric_name"], got["value"], got["instance_id"], got["database_type"]) == (
        r0["metric_name"],
        r0["value"],
        r0["instance_id"],
        "postgresql",
    )
    assert (got["region"], got["environment"]) == ("us-east-1", "production")
    assert json.loads(got["labels"]) == r0["tags"]

    # Redis: the newest sample of every series, with a TTL
    client = redis.Redis.from_url(redis_url)
    last: dict[str, dict[str, Any]] = {}
    for r in records:
        k = latest_key(r["instance_id"], r["metric_name"], r["tags"], redis_prefix)
        if k not in last or r["timestamp"] >= last[k]["timestamp"]:
            last[k] = r
    assert len(last) == 9
    for k, r in last.items():
        raw = client.get(k)
        assert raw is not None, k
        assert json.loads(raw) == {"ts": r["timestamp"], "value": r["value"]}
        assert 0 < client.ttl(k) <= 3600
    assert len(list(client.scan_iter(f"{redis_prefix}*"))) == 9
    assert client.get(f"{redis_prefix}db-1:table_size_bytes:table=orders") is not None
    client.close()

    # alert history: one row per transition, fields as produced
    rows = pg(pg_dsn, f'SELECT * FROM "{schema}".alert_events ORDER BY at')
    assert [r["state"] for r in rows] == ["pending", "firing", "resolved"]
    assert [r["message_id"] for r in rows] == ["msg-0", "msg-1", "msg-2"]
    assert rows[0]["value"] == 91.5 and rows[2]["value"] is None
    assert json.loads(rows[0]["labels"]) == {"instance_id": "db-1", "severity": "critical"}
    assert json.loads(rows[0]["annotations"]) == {"summary": "CPU high on db-1"}
    assert rows[0]["active_at"].timestamp() == start and rows[0]["severity"] == "critical"


def test_older_values_never_overwrite_newer_ones_in_redis(redis_url: str, redis_prefix: str) -> None:
    from connectors.storage.latest import LatestWriter
    from rules.metric import Metric

    client = redis.Redis.from_url(redis_url)
    w = LatestWriter(client, prefix=redis_prefix, ttl_s=60)
    tags = {"region": "eu", "environment": "prod"}
    assert (
        w.write(
            [Metric(200.0, "pg", "db-1", "cpu", 2.0, tags), Metric(100.0, "pg", "db-1", "cpu", 1.0, tags)]
        )
        == 1
    )
    assert w.write([Metric(150.0, "pg", "db-1", "cpu", 9.0, tags)]) == 0  # older: ignored
    assert json.loads(client.get(f"{redis_prefix}db-1:cpu") or b"") == {"ts": 200.0, "value": 2.0}
    w.close()


def test_data_for_any_day_gets_a_partition_and_default_rows_move(pg_dsn: str, schema: str) -> None:
    """Historical replays: a day far in the past gets its partition before the COPY; rows the
    DEFAULT partition caught (e.g. written by an older deployment) move into the new one."""
    from connectors.storage.timescale import PgWriter
    from rules.metric import Metric

    day = (time.time() // 86400 - 20) * 86400  # inside the 30-day retention, beyond the pre-created days
    cfg = PgConfig(pg_dsn, schema=schema, retry=FAST_RETRY)
    w = PgWriter(cfg)
    assert w.open() == "native"
    pg(
        pg_dsn,
        f'INSERT INTO "{schema}".metrics_hot_default (time, series_id, series_key, metric_name, value,'
        f" instance_id, database_type) VALUES (to_timestamp($1), \"{schema}\".series_id('x|m|'), 'x|m|',"
        " 'm', 1, 'x', 'pg')",
        day + 60,
    )
    assert w.write_metrics([Metric(day + 30, "pg", "db-1", "cpu", 5.0, {})]) == 1
    rows = pg(pg_dsn, f'SELECT tableoid::regclass::text AS p FROM "{schema}".metrics_hot')
    assert len(rows) == 2
    assert {r["p"] for r in rows} == {f"{schema}.metrics_hot_p{time.strftime('%Y%m%d', time.gmtime(day))}"}
    w.close()


# --------------------------------------------------------------------------- outage


def postgres(action: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/postgres.sh"), action], check=True, capture_output=True, timeout=90
    )


def test_postgres_outage_mid_run_loses_and_duplicates_nothing(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    start = hour_start()
    records, distinct = dataset(start, hours=2.0, step_s=5)  # ~13k samples
    msgs = messages(records, bad=0)
    half = len(msgs) // 2
    half_emitted = threading.Event()
    resume = threading.Event()

    def gated() -> Iterator[KafkaSourceMessage]:
        yield from msgs[:half]
        half_emitted.set()
        resume.wait(60)  # the second half is written while PostgreSQL is down
        yield from msgs[half:]

    cfg = PgConfig(pg_dsn, schema=schema, batch_rows=1000, retry=FAST_RETRY)
    dlq: list[Any] = []
    flow = build_flow(
        TestingSource(gated(), batch_size=500),
        StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink(dlq)),
        DECODE,
        wall=None,
    )
    errors: list[BaseException] = []
    caplog.set_level("WARNING", logger="connectors.storage.retry")

    def run() -> None:
        try:
            run_main(flow)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        assert half_emitted.wait(60)
        deadline = time.monotonic() + 30
        while pg(pg_dsn, f'SELECT count(*) AS n FROM "{schema}".metrics_hot')[0]["n"] == 0:
            assert time.monotonic() < deadline, "nothing written before the outage"
            time.sleep(0.05)
        postgres("stop")
        resume.set()
        time.sleep(3)  # the flow keeps retrying its batch meanwhile
    finally:
        resume.set()
        postgres("start")
    worker.join(90)
    assert not worker.is_alive()
    assert errors == []
    (row,) = pg(
        pg_dsn, f'SELECT count(*) AS n, count(DISTINCT (series_key, time)) AS d FROM "{schema}".metrics_hot'
    )
    assert (row["n"], row["d"]) == (distinct, distinct)
    assert dlq == []
    # the outage did hit writes, which were retried (and logged with their attempt count)
    assert any("metrics_hot failed (attempt" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- pure pieces


def test_retry_call_backs_off_and_gives_up_on_its_deadline() -> None:
    now = [0.0]
    sleeps: list[float] = []
    calls = [0]

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 4:
            raise ConnectionRefusedError("down")
        return "ok"

    policy = replace(STORAGE_RETRY, base_s=1.0, cap_s=4.0, deadline_s=100.0)
    got = retry_call(
        flaky,
        what="t",
        is_transient=lambda e: isinstance(e, OSError),
        policy=policy,
        sleep=sleep,
        clock=lambda: now[0],
        rand=lambda: 0.999,
    )
    assert got == "ok" and calls[0] == 4
    assert sleeps == pytest.approx([0.999, 1.998, 3.996])  # full jitter under 1, 2, 4 (capped)

    def always() -> None:
        raise ConnectionRefusedError("down")

    with pytest.raises(RetryExhaustedError, match="still failing"):
        retry_call(
            always, what="t", is_transient=lambda e: True, policy=policy, sleep=sleep, clock=lambda: now[0]
        )
    with pytest.raises(ValueError):  # permanent: raised at once, no sleep
        n = len(sleeps)
        retry_call(lambda: int("x"), what="t", is_transient=lambda e: False, policy=policy, sleep=sleep)
    assert len(sleeps) == n
    assert next_delay(policy, 1, 99.9, 0.5) is None  # the wait would cross the deadline


def test_alert_record_validation() -> None:
    from connectors.errors import PoisonMessage

    good = json.loads(alert_records(0.0 + 1_736_935_200)[1])
    row = decode_alert_record(json.dumps(good).encode())
    assert row is not None
    assert (row.message_id, row.state, row.value, row.fire_count) == ("msg-1", "firing", 91.5, 1)
    for bad in (
        b"[]",
        b"{",
        json.dumps({**good, "at": "yesterday"}).encode(),
        json.dumps({**good, "value": "x"}).encode(),
    ):
        with pytest.raises(PoisonMessage):
            decode_alert_record(bad)
    with pytest.raises(PoisonMessage, match="message_id"):
        decode_alert_record(json.dumps({k: v for k, v in good.items() if k != "message_id"}).encode())


def test_nul_characters_do_not_stop_the_sink(pg_dsn: str, schema: str) -> None:
    """PostgreSQL text/jsonb refuse NUL; a retry could never fix it, so it is replaced."""
    from connectors.storage.timescale import PgWriter
    from rules.metric import Metric

    w = PgWriter(PgConfig(pg_dsn, schema=schema, retry=FAST_RETRY))
    w.open()
    assert w.write_metrics([Metric(hour_start(), "pg", "db\x00x", "cpu", 1.0, {"k": "v\x00"})]) == 1
    (row,) = pg(pg_dsn, f'SELECT instance_id, labels FROM "{schema}".metrics_hot')
    assert row["instance_id"] == "db\ufffdx"
    assert json.loads(row["labels"]) == {"k": "v\ufffd"}
    w.close()


# --------------------------------------------------------------------------- hostile input (issue 10)


def _incompressible(n: int) -> str:
    """Random text: PostgreSQL compresses index entries, so a repeated character would fit."""
    return "".join(uuid.uuid4().hex for _ in range(n // 32 + 1))[:n]


def test_long_tag_values_are_stored_keyed_by_a_fixed_size_hash(pg_dsn: str, schema: str) -> None:
    """A 3,000-character query text (or a 10 KB value) as a tag made the (series_key, time)
    primary key refuse the row ("index row size exceeds btree maximum"), and the flow
    crash-looped on it; the key is now a 16-byte hash and the labels keep the text."""
    from connectors.storage.timescale import series_id

    start = hour_start()
    tags = [{"query": _incompressible(3000)}, {"query": _incompressible(10_000), "region": "eu"}]
    records = [
        {
            "timestamp": start + i,
            "database_type": "postgresql",
            "instance_id": "db-1",
            "metric_name": "query_time_ms",
            "value": float(i),
            "tags": tags[i % 2],
        }
        for i in range(10)
    ]
    dlq: list[Any] = []
    cfg = PgConfig(pg_dsn, schema=schema, retry=FAST_RETRY)
    flow = build_flow(
        TestingSource(messages(records, bad=0)),
        StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink(dlq)),
        DECODE,
        wall=None,
    )
    run_main(flow)
    assert dlq == []
    rows = pg(
        pg_dsn,
        f'SELECT series_id, series_key, labels, "{schema}".series_id(series_key) AS in_sql'
        f' FROM "{schema}".metrics_hot ORDER BY time',
    )
    assert len(rows) == 10
    for i, r in enumerate(rows):
        assert json.loads(r["labels"]) == tags[i % 2]
        assert r["series_id"] == r["in_sql"] == series_id(r["series_key"])
    assert len({r["series_id"] for r in rows}) == 2


def _refused_sink(out: list[Any]) -> Any:
    from connectors.storage.timescale import Rejects
    from flows.storage import refused_to_dlq

    return Rejects(TestingSink(out), refused_to_dlq)


def test_rows_the_database_refuses_are_dead_lettered_and_the_rest_is_written(
    pg_dsn: str, schema: str
) -> None:
    """A row PostgreSQL can never accept (here: an instance_id too long for the index on
    (instance_id, metric_name, time), past the decoder's limits) used to fail its whole batch
    on every retry; it is found by bisection, dead-lettered with the error, the rest written."""
    from connectors.storage.timescale import AlertRow
    from rules.metric import Metric

    start = hour_start()
    cfg = PgConfig(pg_dsn, schema=schema, batch_rows=8, retry=FAST_RETRY)
    out: list[Any] = []
    long_id = _incompressible(3000)
    metrics = [Metric(start + i, "pg", "db-1", "cpu", float(i), {"region": "eu"}) for i in range(20)]
    metrics.insert(13, Metric(start, "pg", long_id, "cpu", 1.0, {}))
    part = MetricsHotSink(cfg, _refused_sink(out)).build("metrics-hot", 0, 1)
    part.write_batch(metrics)
    part.write_batch(metrics)  # a replay: nothing new, the same row refused again
    part.close()
    (row,) = pg(pg_dsn, f'SELECT count(*) AS n FROM "{schema}".metrics_hot')
    assert row["n"] == 20
    letters = [parse_dead_letter(m.value, m.key) for m in out]
    assert [d.stage for d in letters] == ["metrics-hot", "metrics-hot"]
    assert "index row size" in letters[0].error and "ProgramLimitExceeded" in letters[0].error
    assert letters[0].key == long_id.encode()
    assert json.loads(letters[0].raw or b"")["instance_id"] == long_id

    good = decode_alert_record(alert_records(start)[0])
    assert good is not None
    bad = AlertRow(**{**{f: getattr(good, f) for f in AlertRow.__slots__}, "message_id": long_id})
    out.clear()
    apart = AlertEventsSink(cfg, _refused_sink(out)).build("alert-events", 0, 1)
    apart.write_batch([good, bad])
    apart.close()
    assert [r["message_id"] for r in pg(pg_dsn, f'SELECT message_id FROM "{schema}".alert_events')] == [
        "msg-0"
    ]
    (letter,) = [parse_dead_letter(m.value, m.key) for m in out]
    assert letter.stage == "alert-events" and "index row size" in letter.error


def test_heartbeats_on_the_alerts_topic_are_skipped_not_dead_lettered(pg_dsn: str, schema: str) -> None:
    from connectors.ops.heartbeat import Heartbeat, heartbeat_message
    from connectors.storage.timescale import SKIPPED_RECORDS

    start = hour_start()
    hb = heartbeat_message(Heartbeat("alerting", start, "pod-0", 1))
    no_header = json.dumps({"type": "heartbeat", "flow": "alerting", "at": "2025-01-15T10:30:00Z"}).encode()
    alerts = [
        KafkaSourceMessage(hb.key, hb.value, topic="alerts", offset=0, headers=hb.headers),
        KafkaSourceMessage(b"hb", no_header, topic="alerts", offset=1),
        KafkaSourceMessage(b"fp-1", alert_records(start)[0], topic="alerts", offset=2),
    ]
    before = SKIPPED_RECORDS.labels("heartbeat")._value.get()
    dlq: list[Any] = []
    cfg = PgConfig(pg_dsn, schema=schema, retry=FAST_RETRY)
    flow = build_flow(
        TestingSource([]),
        StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink(dlq)),
        DECODE,
        alerts_source=TestingSource(alerts),
        wall=None,
    )
    run_main(flow)
    assert dlq == []  # was: 2 x "alert record: missing field(s): message_id, ..."
    assert SKIPPED_RECORDS.labels("heartbeat")._value.get() - before == 2
    (row,) = pg(pg_dsn, f'SELECT count(*) AS n FROM "{schema}".alert_events')
    assert row["n"] == 1


_OLD_METRICS_HOT = """
CREATE SCHEMA "{s}";
CREATE TABLE "{s}".metrics_hot (
    time timestamptz NOT NULL, series_key text NOT NULL, metric_name text NOT NULL,
    value double precision NOT NULL, labels jsonb NOT NULL DEFAULT '{{}}', instance_id text NOT NULL,
    database_type text NOT NULL, region text, environment text, PRIMARY KEY (series_key, time)
) PARTITION BY RANGE (time);
CREATE TABLE "{s}".metrics_hot_default PARTITION OF "{s}".metrics_hot DEFAULT;
INSERT INTO "{s}".metrics_hot (time, series_key, metric_name, value, instance_id, database_type)
VALUES (to_timestamp({t}), 'db-1|cpu|', 'cpu', 7, 'db-1', 'pg');
"""


def test_a_metrics_hot_of_the_previous_release_is_refused_with_its_migration(
    pg_dsn: str, schema: str
) -> None:
    """Deployed tables are keyed by (series_key, time): start-up says what to run, and after
    running it the old rows and new writes share one identity (no duplicates)."""
    from connectors.storage.timescale import PgWriter, StorageError, migrate_series_id, series_id
    from rules.metric import Metric

    t = hour_start()

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(_OLD_METRICS_HOT.format(s=schema, t=t)))
    cfg = PgConfig(pg_dsn, schema=schema, retry=FAST_RETRY)
    with pytest.raises(StorageError, match="created by an older release") as info:
        PgWriter(cfg).open()
    assert "ALTER TABLE" in str(info.value)
    asyncio.run(run(migrate_series_id(schema)))
    w = PgWriter(cfg)
    assert w.open() == "native"
    assert w.write_metrics([Metric(t, "pg", "db-1", "cpu", 7.0, {})]) == 0  # the migrated row
    assert w.write_metrics([Metric(t + 1, "pg", "db-1", "cpu", 8.0, {})]) == 1
    w.close()
    rows = pg(pg_dsn, f'SELECT DISTINCT series_id FROM "{schema}".metrics_hot')
    assert [r["series_id"] for r in rows] == [series_id("db-1|cpu|")]
