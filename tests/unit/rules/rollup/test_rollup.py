"""Pure rollup logic: window assignment, lateness, cascade 1m -> 5m -> 1h, state."""

from __future__ import annotations

import math
import pickle
import random
from collections import defaultdict

import pytest

from rules.metric import Metric
from rules.rollup.sketch import DEFAULT_ALPHA
from rules.rollup.windows import (
    Partial,
    Resolution,
    Rollup,
    RollupConfig,
    RollupError,
    RollupShard,
    SeriesId,
    cut_of,
    series_key,
    window_start,
)

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z, an hour boundary
TAGS = {"environment": "production", "region": "us-east-1"}


def m(
    ts: float, value: float, iid: str = "db-1", name: str = "cpu", tags: dict[str, str] | None = None
) -> Metric:
    return Metric(ts, "postgresql", iid, name, value, TAGS if tags is None else tags)


def by_key(rows: list[Rollup]) -> dict[tuple[str, str, int], Rollup]:
    out = {(r.resolution, r.series.key, r.start): r for r in rows}
    assert len(out) == len(rows), "a window was emitted twice"
    return out


def lower_q(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


# --------------------------------------------------------------------------- identity, windows


def test_window_start_is_epoch_aligned_and_exact() -> None:
    assert window_start(T0 + 59.999, 60) == T0
    assert window_start(T0 + 60, 60) == T0 + 60
    assert window_start(T0 + 299.5, 300) == T0
    assert window_start(T0 + 3599, 3600) == T0


def test_cut_closes_windows_ending_before_watermark_minus_lateness() -> None:
    assert cut_of(T0 + 130, 60, 60) == T0 + 60  # [T0, T0+60) closed; [T0+60, T0+120) not yet
    assert cut_of(T0 + 180, 60, 60) == T0 + 120
    assert cut_of(-math.inf, 60, 60) == -math.inf


def test_series_key_is_stable_and_order_independent() -> None:
    a = series_key("db-1", "cpu", {"region": "eu", "environment": "prod"})
    b = series_key("db-1", "cpu", {"environment": "prod", "region": "eu"})
    assert a == b == "db-1|cpu|environment=prod,region=eu"
    assert series_key("db-1", "cpu", {}) == "db-1|cpu|"
    # separators inside values cannot make two series collide
    assert series_key("a|b", "c", {}) != series_key("a", "b|c", {})
    assert series_key("i", "m", {"k": "v,x=y"}) != series_key("i", "m", {"k": "v", "x": "y"})


def test_config_validation() -> None:
    with pytest.raises(RollupError):
        RollupConfig((Resolution("1m", 60), Resolution("90s", 90)))
    with pytest.raises(RollupError):
        RollupConfig(lateness_s=-1)
    with pytest.raises(RollupError):
        RollupConfig(())


def test_partial_merge_equals_partial_of_union() -> None:
    a, b = [1.0, 5.0, 2.5], [-3.0, 0.0, 8.25]
    merged = Partial.of(a).merge(Partial.of(b))
    whole = Partial.of(a + b)
    assert (merged.count, merged.total, merged.min, merged.max) == (6, 13.75, -3.0, 8.25)
    assert merged == whole
    assert merged.avg == 13.75 / 6


# --------------------------------------------------------------------------- shard


def test_one_minute_windows_and_cascade_against_raw_values() -> None:
    rng = random.Random(4)
    samples = [m(T0 + i * 7, rng.randint(0, 400) / 4) for i in range(int(2 * 3600 / 7))]
    shard = RollupShard()
    out = shard.ingest(samples) + shard.flush()
    rows = by_key(out)
    key = series_key("db-1", "cpu", TAGS)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for s in samples:
        for name, width in (("1m", 60), ("5m", 300), ("1h", 3600)):
            groups[(name, int(window_start(s.ts, width)))].append(s.value)
    assert len(rows) == len(groups)
    for (res, start), values in groups.items():
        r = rows[(res, key, start)]
        # values are multiples of 1/4: every summation order is exact
        assert (r.count, r.sum, r.min, r.max) == (len(values), sum(values), min(values), max(values))
        assert r.avg == sum(values) / len(values)
        for q, got in ((0.5, r.p50), (0.95, r.p95), (0.99, r.p99)):
            want = lower_q(values, q)
            assert abs(got - want) <= DEFAULT_ALPHA * abs(want) + 1e-9, (res, start, q)
    assert shard.stats.windows == {"1m": 120, "5m": 24, "1h": 2}


def test_windows_close_only_after_end_plus_lateness() -> None:
    shard = RollupShard(RollupConfig(lateness_s=30))
    assert shard.ingest([m(T0 + 10, 1.0), m(T0 + 70, 2.0)]) == []
    assert shard.ingest([m(T0 + 89, 3.0)]) == []  # watermark - lateness = T0+59 < T0+60
    out = shard.ingest([m(T0 + 90, 4.0)])  # T0+60 reached: [T0, T0+60) closes
    assert [(r.resolution, r.start, r.count) for r in out] == [("1m", int(T0), 1)]


def test_late_within_lateness_is_used_and_later_is_dropped() -> None:
    shard = RollupShard(RollupConfig(lateness_s=30))
    shard.ingest([m(T0 + 10, 1.0), m(T0 + 75, 2.0)])
    shard.ingest([m(T0 + 50, 5.0)])  # out of order but its window is still open
    closed = shard.ingest([m(T0 + 95, 3.0)])
    assert [(r.start, r.count, r.sum) for r in closed] == [(int(T0), 2, 6.0)]
    assert shard.ingest([m(T0 + 55, 100.0)]) == []  # window closed: dropped
    assert shard.stats.late == 1
    rows = shard.flush()
    assert 100.0 not in {r.max for r in rows}


def test_output_does_not_depend_on_batching() -> None:
    rng = random.Random(5)
    samples = []
    for i in range(3000):
        ts = T0 + i * 3 + rng.uniform(-40, 5)  # jitter: some in-lateness, some too late
        samples.append(m(ts, rng.randint(0, 100) / 2, iid=f"db-{i % 3}", name=rng.choice(["cpu", "mem"])))
    results = []
    for size in (1, 7, 500, len(samples)):
        shard = RollupShard(RollupConfig(lateness_s=20))
        out: list[Rollup] = []
        for j in range(0, len(samples), size):
            out += shard.ingest(samples[j : j + size])
        out += shard.flush()
        results.append((by_key(out), shard.stats.late))
    assert all(r == results[0] for r in results[1:])
    assert results[0][1] > 0  # the jitter did produce dropped samples


def test_watermark_is_per_instance() -> None:
    shard = RollupShard(RollupConfig(lateness_s=0))
    shard.ingest([m(T0 + 5, 1.0, iid="a"), m(T0 + 5, 1.0, iid="b")])
    out = shard.ingest([m(T0 + 600, 2.0, iid="a")])
    assert {r.series.instance_id for r in out} == {"a"}
    assert shard.ingest([m(T0 + 30, 3.0, iid="b")]) == []  # b's window is still open
    assert shard.stats.late == 0


def test_tag_order_does_not_split_a_series() -> None:
    shard = RollupShard()
    shard.ingest([m(T0, 1.0, tags={"a": "1", "b": "2"}), m(T0 + 1, 2.0, tags={"b": "2", "a": "1"})])
    (row,) = [r for r in shard.flush() if r.resolution == "1m"]
    assert row.count == 2
    assert row.series == SeriesId("db-1|cpu|a=1,b=2", "db-1", "postgresql", "cpu", (("a", "1"), ("b", "2")))


def test_snapshot_restore_continues_identically() -> None:
    rng = random.Random(6)
    samples = [m(T0 + i * 5, rng.randint(0, 40) / 4, iid=f"db-{i % 2}") for i in range(1500)]
    whole = RollupShard()
    expected = by_key(whole.ingest(samples) + whole.flush())

    first = RollupShard()
    out = first.ingest(samples[:777])
    resumed = RollupShard()
    resumed.restore(first.snapshot())
    out += resumed.ingest(samples[777:]) + resumed.flush()
    assert by_key(out) == expected


def test_live_mode_closes_windows_of_a_silent_instance() -> None:
    shard = RollupShard(RollupConfig(lateness_s=10), live=True)
    wall = 1000.0
    shard.ingest([m(T0 + 5, 1.0), m(T0 + 20, 2.0)], wall=wall)
    wake = shard.next_wake()
    # the watermark must move from T0+20 to T0+70 (end + lateness): 50 s of wall time
    assert wake == wall + 50
    assert shard.advance_idle(wall + 49) == []
    out = shard.advance_idle(wall + 50)
    assert [(r.resolution, r.count) for r in out] == [("1m", 2)]
    assert RollupShard().next_wake() is None  # replay mode never wakes


def test_record_shape() -> None:
    shard = RollupShard()
    shard.ingest([m(T0 + 1, 2.0), m(T0 + 2, 4.0)])
    r = next(r for r in shard.flush() if r.resolution == "5m")
    rec = r.to_record()
    assert rec["window_start"] == "2025-01-15T10:00:00Z"
    assert rec["window_end"] == "2025-01-15T10:05:00Z"
    assert (rec["count"], rec["sum"], rec["avg"], rec["min"], rec["max"]) == (2, 6.0, 3.0, 2.0, 4.0)
    assert rec["labels"] == TAGS
    assert rec["series_key"] == series_key("db-1", "cpu", TAGS)


def test_extreme_values_close_windows_without_raising() -> None:
    """Values at the float limits (decode refuses |v| > 1e300, but the shard must not depend on it)."""
    shard = RollupShard()
    big = 1.79e308
    out = shard.ingest([m(T0 + 1, big), m(T0 + 2, big), m(T0 + 3, -big), m(T0 + 4, 5e-324)]) + shard.flush()
    assert {r.resolution for r in out} == {"1m", "5m", "1h"}
    for r in out:
        assert (r.count, r.min, r.max) == (4, -big, big)
        assert r.p99 == big and r.p50 == pytest.approx(0.0, abs=1e-300)


def test_a_rollup_snapshot_of_an_unknown_version_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"rollup snapshot version 7 .*fresh recovery directory"):
        RollupShard().restore(pickle.dumps((7, {})))
    with pytest.raises(ValueError, match=r"rollup snapshot cannot be read .*fresh recovery directory"):
        RollupShard().restore(b"crules.rollup.windows\nNoSuchState\n.")
