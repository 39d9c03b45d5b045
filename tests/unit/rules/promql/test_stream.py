"""rules.promql.stream: labels, routing, the partition watermark and ticks (pure)."""

from __future__ import annotations

import math

from rules.loader import BUNDLED
from rules.metric import Metric
from rules.promql.rulefile import load_prometheus_rules
from rules.promql.stream import (
    GroupRunner,
    InputClock,
    RawSample,
    plan_routes,
    progressed,
    prom_labels,
    recorded_metric,
    saw,
    ticks,
    watermark,
)

L = 30.0  # allowed lateness


def test_a_message_becomes_a_prometheus_series_with_instance_and_its_tags() -> None:
    m = Metric(10.0, "postgresql", "db-1", "pg_up", 1.0, {"region": "eu", "instance": "spoofed"})
    assert prom_labels(m) == (
        ("__name__", "pg_up"),
        ("database_type", "postgresql"),
        ("instance", "db-1"),  # the message's identity wins over a tag of the same name
        ("instance_id", "db-1"),
        ("region", "eu"),
    )


def test_groups_get_the_names_they_select_and_a_nameless_selector_gets_everything() -> None:
    routes = plan_routes({"pg": {"pg_up", "pg_lag"}, "os": {"cpu"}, "any": None})
    assert routes.groups_for("pg_lag") == ("pg", "any")
    assert routes.groups_for("cpu") == ("os", "any")
    assert routes.groups_for("unknown") == ("any",)
    assert plan_routes({"pg": {"pg_up"}}).groups_for("cpu") == ()


def test_the_watermark_is_the_slowest_partition_minus_the_lateness() -> None:
    c = saw(saw(InputClock(), "0-t", 100.0, 1.0), "1-t", 80.0, 1.0)
    assert watermark(c, L) == 80.0 - L
    c = saw(c, "1-t", 120.0, 2.0)
    assert watermark(c, L) == 100.0 - L
    assert saw(c, "1-t", 90.0, 3.0) is c  # an older batch does not move a partition back


def test_a_partition_caught_up_after_its_last_message_does_not_hold_the_group_back() -> None:
    c = saw(saw(InputClock(), "0-t", 100.0, 1.0), "1-t", 50.0, 1.0)
    # read to its end before its newest message arrived: it may still carry older samples
    assert watermark(progressed(c, "1-t", 0.5, 2), L) == 50.0 - L
    # read to its end after it: silent, left out of the minimum
    c = progressed(c, "1-t", 5.0, 2)
    assert watermark(c, L) == 100.0 - L
    # speaking again makes it count again (its older samples are late for the group)
    assert watermark(saw(c, "1-t", 60.0, 6.0), L) == 60.0 - L


def test_when_every_partition_is_quiet_caught_up_wall_time_ages_the_newest_event_time() -> None:
    c = saw(saw(InputClock(), "0-t", 100.0, 10.0), "1-t", 90.0, 10.0)
    c = progressed(progressed(c, "0-t", 25.0, 2), "1-t", 40.0, 2)
    # both quiet since wall 10; the input was caught up (both partitions) until wall 25
    assert watermark(c, L) == 100.0 - L + (25.0 - 10.0)


def test_a_live_group_holds_until_it_heard_from_every_partition() -> None:
    c = progressed(saw(InputClock(), "0-t", 100.0, 1.0), "0-t", 0.5, 3)
    assert watermark(c, L) == -math.inf
    c = progressed(progressed(c, "1-t", 2.0, 3), "2-t", 2.0, 3)  # two empty, caught-up partitions
    assert watermark(c, L) == 100.0 - L
    assert watermark(InputClock(), L) == -math.inf


def test_ticks_are_aligned_to_the_interval_and_never_repeat() -> None:
    assert ticks(60.0, 250.0, 60.0) == [120.0, 180.0, 240.0]
    assert ticks(240.0, 250.0, 60.0) == []
    assert ticks(240.0, 300.0, 60.0) == [300.0]
    assert ticks(0.0, -math.inf, 60.0) == []


def test_a_recorded_sample_is_a_seed_message_that_decodes() -> None:
    from connectors.kafka.serde import decode_json, encode_json

    labels = (("__name__", "cluster:lag:max"), ("cluster", "c1"))
    t = 1736935200.0
    m = recorded_metric("cluster:lag:max", labels, 42.0, t, "replication")
    assert m == Metric(t, "prometheus", "replication", "cluster:lag:max", 42.0, {"cluster": "c1"})
    assert decode_json(encode_json(m), t) == m
    per_instance = (
        ("__name__", "r"),
        ("database_type", "mysql"),
        ("instance", "db-2"),
        ("instance_id", "db-2"),
    )
    assert recorded_metric("r", per_instance, 1.0, 60.0, "g") == Metric(60.0, "mysql", "db-2", "r", 1.0, {})


def _runner() -> GroupRunner:
    (group,) = load_prometheus_rules([BUNDLED / "prometheus" / "aggregated.yml"])
    return GroupRunner(group, lateness_s=L)


def _lag(instance: str, ts: float, value: float) -> RawSample:
    m = Metric(
        ts, "postgresql", instance, "replication_lag_seconds", value, {"environment": "p", "region": "r"}
    )
    return (prom_labels(m), ts, value)


def test_a_live_group_evaluates_while_a_silent_partition_is_caught_up_and_fires_by_wall_time() -> None:
    """Partition 1 spoke once and went quiet (caught up): it never holds the group back, and once
    partition 0 is quiet too, caught-up wall time carries the ticks (and the `for`) on."""
    r = _runner()
    t0 = 1736935200.0
    out = r.ingest([_lag("a", t0 + 1, 50.0)], {"0-t": t0 + 1, "1-t": t0 + 1}, wall=100.0)
    out += r.progress("0-t", 90.0, 2) + r.progress("1-t", 101.0, 2)  # 1-t read to its end after
    for i in range(1, 10):  # partition 0 goes on; partition 1 says nothing more
        ts = t0 + 1 + 15 * i
        out += r.ingest([_lag("a", ts, 50.0)], {"0-t": ts}, wall=100.0 + 15 * i)
    assert r.evaluated_until == t0 + 60  # newest (t0+136) - 30s lateness, on the minute
    assert [m.value for m in out.recorded] == [50.0]  # the first tick at or after the first sample
    assert [e.state.value for e in out.events] == ["pending"]  # firing needs `for: 3m`
    # partition 0 caught up too, then nothing arrives for 5 minutes of wall time
    quiet = r.progress("0-t", 236.0, 2) + r.progress("0-t", 536.0, 2) + r.progress("1-t", 536.0, 2)
    assert r.evaluated_until == t0 + 360  # t0+136 - 30 + (536 - 235) of caught-up wall time = t0+407
    assert [(e.alert_name, e.state.value, e.at) for e in quiet.events] == [
        ("RegionReplicationLagHigh", "firing", t0 + 240)
    ]


def test_late_samples_are_counted_and_dropped_and_the_store_stays_bounded() -> None:
    r = _runner()
    t0 = 1736935200.0
    for i in range(0, 200):
        ts = t0 + 15 * i
        r.ingest([_lag("a", ts, 1.0)], {"0-t": ts}, wall=float(i))
    assert r.stats.late == 0 and r.evaluated_until > t0 + 2900
    r.ingest([_lag("a", t0 + 100, 1.0)], {}, wall=300.0)
    assert r.stats.late == 1
    assert len(r.store) <= (300 + 60) / 15 + 60 / 60 * 2 + 10  # lookback of samples + recorded


def test_a_backtest_group_flushes_every_tick_up_to_the_newest_sample() -> None:
    r = _runner()
    t0 = 1736935200.0
    r.ingest([_lag("a", t0 + 5, 40.0), _lag("a", t0 + 200, 40.0)], {"0-t": t0 + 200}, wall=0.0)
    assert r.evaluated_until == t0 + 120
    out = r.flush()
    assert r.evaluated_until == t0 + 180 and [m.ts for m in out.recorded] == [t0 + 180]
