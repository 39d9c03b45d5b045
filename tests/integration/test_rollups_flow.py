"""The rollups flow into embedded ClickHouse (chdb): replayed twice, compared with Python.

count/sum/min/max/avg are compared exactly (values are multiples of 1/4, so every summation
order is exact), percentiles within the sketch's 1% bound of the exact lower quantiles of the
raw samples: the 5m and 1h rows come from merged 1m sketches, the expectations from raw data.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.kafka.dlq import parse_dead_letter
from connectors.kafka.serde import make_decoder
from connectors.storage.clickhouse import ClickHouseRollupSink, EmbeddedClickHouse
from flows.rollups import LATE_TOTAL, RollupOutputs, aggregated_message, build_flow
from rules.rollup.sketch import DEFAULT_ALPHA
from rules.rollup.windows import RollupConfig, series_key, window_start

pytestmark = pytest.mark.integration

DECODE = make_decoder("json", max_future_s=float("inf"))
LATENESS = 30.0
RESOLUTIONS = (("1m", 60), ("5m", 300), ("1h", 3600))


def dataset(start: float) -> list[dict[str, Any]]:
    """3 instances x 3 series, 2 hours every 10 s; some samples out of order within the
    lateness, some later than that (to be dropped)."""
    out: list[dict[str, Any]] = []
    for i in range(720):
        ts = start + i * 10
        for j, iid in enumerate(("db-1", "db-2", "db-3")):
            tags = {"environment": "production", "region": "eu-west-1" if j == 1 else "us-east-1"}
            for name, extra, value in (
                ("cpu_usage_percent", {}, (i * 37 + j * 11) % 400 / 4),
                ("replication_lag_s", {}, ((i * 13) % 9 - 4) / 4),  # negatives and zeros too
                ("table_size_bytes", {"table": "orders"}, float(5000 + i * 3 + j)),
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
    # out of order within the lateness: swap neighbours ten seconds apart
    for k in range(500, len(out) - 10, 997):
        out[k], out[k + 9] = out[k + 9], out[k]
    # too late: a sample two minutes behind its instance's watermark, every 20 minutes or so
    for k in range(1000, len(out), 1080):
        late = dict(out[k], timestamp=out[k]["timestamp"] - 120, value=9999.0)
        out.insert(k, late)
    return out


def reference(records: list[dict[str, Any]]) -> tuple[dict[tuple[str, str, int], list[float]], int]:
    """Expected windows (resolution, series, start) -> values, and the number dropped as late."""
    newest: dict[str, float] = {}
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    late = 0
    for r in records:
        iid, ts = r["instance_id"], r["timestamp"]
        top = newest.get(iid, -math.inf)
        if ts > top:
            newest[iid] = ts
        elif ts < math.floor((top - LATENESS) / 60) * 60:
            late += 1
            continue
        key = series_key(iid, r["metric_name"], r["tags"])
        for res, width in RESOLUTIONS:
            groups[(res, key, int(window_start(ts, width)))].append(r["value"])
    return groups, late


def lower_q(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


def messages(records: list[dict[str, Any]]) -> list[KafkaSourceMessage]:
    msgs = [
        KafkaSourceMessage(
            r["instance_id"].encode(), json.dumps(r).encode(), topic="gds.metrics.pg.test", offset=i
        )
        for i, r in enumerate(records)
    ]
    msgs.insert(
        77, KafkaSourceMessage(b"db-2", b'{"instance_id": "db-2"}', topic="gds.metrics.pg.test", offset=-1)
    )
    return msgs


@pytest.fixture()
def clickhouse(tmp_path: Path) -> Iterator[tuple[Path, EmbeddedClickHouse]]:
    """An embedded engine held open for the whole test (the flows' sessions share it)."""
    path = tmp_path / "chdb"
    ch = EmbeddedClickHouse(path)
    yield path, ch
    ch.close()


def run_rollups(
    path: Path, db: str, items: list[Any], workers: int = 1, **kw: Any
) -> tuple[list[Any], list[Any]]:
    """One run of the flow into the embedded engine; returns (aggregated records, DLQ records)."""
    aggregated: list[Any] = []
    dlq: list[Any] = []
    outputs = RollupOutputs(
        ClickHouseRollupSink(partial(EmbeddedClickHouse, path), database=db),
        TestingSink(dlq),
        aggregated=TestingSink(aggregated),
        aggregated_fn=aggregated_message,
    )
    flow = build_flow(
        TestingSource(items, batch_size=500),
        outputs,
        DECODE,
        config=RollupConfig(lateness_s=LATENESS),
        shards=8,
        wall=None,
        flush_on_eof=True,
    )
    if workers == 1:
        run_main(flow, **kw)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers, **kw)
    return aggregated, dlq


def check_tables(ch: EmbeddedClickHouse, db: str, expected: dict[tuple[str, str, int], list[float]]) -> None:
    """Every table holds exactly the expected windows (after FINAL), with exact aggregates."""
    for res, _ in RESOLUTIONS:
        rows = ch.query(
            "SELECT series_key, toUnixTimestamp(window_start) AS ws, count, sum, min, max, avg, p50, p95,"
            " p99, instance_id, metric_name, database_type, region, environment, labels"
            f" FROM {db}.metrics_{res} FINAL"
        )
        assert len(rows) == sum(1 for k in expected if k[0] == res), res
        for r in rows:
            values = expected[(res, r["series_key"], int(r["ws"]))]
            assert (int(r["count"]), r["sum"], r["min"], r["max"]) == (
                len(values),
                sum(values),
                min(values),
                max(values),
            )
            assert r["avg"] == sum(values) / len(values)
            for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                want = lower_q(values, q)
                assert abs(r[name] - want) <= DEFAULT_ALPHA * abs(want) + 1e-12, (res, r["series_key"], name)
            assert r["database_type"] == "postgresql"
            assert r["environment"] == "production"
            assert r["series_key"].startswith(f"{r['instance_id']}|{r['metric_name']}|")
        assert 9999.0 not in {r["max"] for r in rows}  # the too-late samples were dropped


def test_replayed_twice_rollups_match_python(clickhouse: tuple[Path, EmbeddedClickHouse]) -> None:
    path, ch = clickhouse
    db = f"test_{uuid.uuid4().hex[:10]}"
    start = (time.time() // 3600 - 3) * 3600  # recent: inside every TTL
    records = dataset(start)
    expected, expected_late = reference(records)
    assert expected_late > 0
    per_res = {res: sum(1 for k in expected if k[0] == res) for res, _ in RESOLUTIONS}
    assert per_res == {"1m": 9 * 120, "5m": 9 * 24, "1h": 9 * 2}

    for workers in (1, 2):  # the replay on 2 workers must give the same rows
        late_before = LATE_TOTAL._value.get()
        aggregated, dlq = run_rollups(path, db, messages(records), workers)
        assert LATE_TOTAL._value.get() - late_before == expected_late
        assert len(aggregated) == len(expected)
        assert [parse_dead_letter(m.value).stage for m in dlq] == ["decode"]
        for res, _ in RESOLUTIONS:
            (row,) = ch.query(f"SELECT count() AS n FROM {db}.metrics_{res} FINAL")
            assert int(row["n"]) == per_res[res], res

    # the Kafka records: one per window, JSON with the window bounds
    rec = json.loads(aggregated[0].value)
    assert aggregated[0].key == rec["series_key"].encode()
    assert {"resolution", "window_start", "window_end", "p99", "labels"} <= set(rec)

    check_tables(ch, db, expected)
    one = ch.query(
        f"SELECT labels, region FROM {db}.metrics_1h FINAL WHERE metric_name = 'table_size_bytes'"
        " AND instance_id = 'db-2' LIMIT 1"
    )
    assert one == [
        {
            "labels": {"environment": "production", "region": "eu-west-1", "table": "orders"},
            "region": "eu-west-1",
        }
    ]
    # the second replay inserted every row again; the ReplacingMergeTree keeps one of each
    ch.command(f"OPTIMIZE TABLE {db}.metrics_1m FINAL")
    (row,) = ch.query(f"SELECT count() AS n FROM {db}.metrics_1m")
    assert int(row["n"]) == per_res["1m"]


def test_abort_and_resume_from_recovery_gives_the_same_rows(
    clickhouse: tuple[Path, EmbeddedClickHouse], tmp_path: Path
) -> None:
    """A crash mid-replay: the resumed run restores the open windows (and the batches waiting
    for ClickHouse) from the snapshots, and re-emitted windows collapse in the tables."""
    path, ch = clickhouse
    db = f"test_{uuid.uuid4().hex[:10]}"
    records = dataset((time.time() // 3600 - 3) * 3600)
    expected, _ = reference(records)
    items: list[Any] = messages(records)
    items.insert(len(items) * 2 // 5, TestingSource.ABORT())
    state = tmp_path / "recovery"
    state.mkdir()
    init_db_dir(state, 1)
    recovery: dict[str, Any] = {
        "epoch_interval": timedelta(seconds=0),
        "recovery_config": RecoveryConfig(str(state)),
    }
    first, _ = run_rollups(path, db, items, **recovery)
    assert 0 < len(first) < len(expected)  # it stopped half way
    run_rollups(path, db, items, **recovery)
    check_tables(ch, db, expected)


def test_hostile_but_valid_input_reaches_clickhouse_and_the_rest_the_dlq(
    clickhouse: tuple[Path, EmbeddedClickHouse],
) -> None:
    """Values at the accepted limit, a 16 KB tag value, the maximum tag count, unicode: stored.
    Deep nesting, a huge value, too many tags: dead-lettered. The flow finishes either way."""
    from connectors.kafka.serde import MAX_ABS_VALUE, MAX_TAG_VALUE_CHARS, MAX_TAGS

    path, ch = clickhouse
    start = (time.time() // 3600 - 3) * 3600
    many = {f"k{i}": f"v{i}" for i in range(MAX_TAGS)}
    good_tags = [{"query": "q" * MAX_TAG_VALUE_CHARS}, many, {"ключ": "значение ✓", "e": "\x00"}]
    good: list[dict[str, Any]] = []
    for i in range(90):
        v = (MAX_ABS_VALUE, -MAX_ABS_VALUE, 5e-324)[i % 3]
        good.append(
            {
                "timestamp": start + i,
                "database_type": "postgresql",
                "instance_id": "db-x",
                "metric_name": "edge",
                "value": v,
                "tags": good_tags[(i // 3) % 3],
            }
        )
    bad = [
        b'{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json.dumps({**good[0], "value": 1e308}).encode(),
        json.dumps({**good[0], "tags": {f"k{i}": "v" for i in range(MAX_TAGS + 1)}}).encode(),
    ]
    items = messages(good)
    items += [
        KafkaSourceMessage(b"db-x", raw, topic="gds.metrics.pg.test", offset=1000 + i)
        for i, raw in enumerate(bad)
    ]
    db = f"t_{uuid.uuid4().hex[:8]}"
    aggregated, dlq = run_rollups(path, db, items)
    letters = [parse_dead_letter(m.value, m.key) for m in dlq]
    assert len(letters) == 1 + len(bad)  # `messages` adds one record without fields
    assert any("deeper" in d.error for d in letters)
    for r in aggregated:
        rec = orjson.loads(r.value)  # strict JSON: no Infinity or NaN leaked into the topic
        assert math.isfinite(rec["sum"]) and math.isfinite(rec["avg"])
    rows = ch.query(f"SELECT count() AS n, sum(count) AS samples FROM {db}.metrics_1m FINAL")
    assert int(rows[0]["samples"]) == len(good)
