"""The shard engine over generated series: windows, lateness, staleness, dedup context."""

from __future__ import annotations

import json
import math
import pickle
import random
from dataclasses import replace
from typing import Any

import pytest

from connectors.kafka.serde import decode_json
from flows.sample.generate import rows
from rules.aggregate import aggregate, quantile, rate
from rules.engine import SNAPSHOT_VERSION, ShardEngine
from rules.loader import BUNDLED, load_rules
from rules.metric import Metric
from rules.model import Aggregation, AlertEvent, AlertState, Matcher, NotifyReason, Silence, Suppression
from rules.snapshot import SnapshotError

RULES = load_rules([BUNDLED])
T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z


def series(
    instance: str,
    metric: str,
    values: list[float],
    step: float = 15.0,
    t0: float = T0,
    tags: dict[str, str] | None = None,
) -> list[Metric]:
    return [
        Metric(t0 + i * step, "postgresql", instance, metric, v, tags or {"region": "eu"})
        for i, v in enumerate(values)
    ]


def interleave(*groups: list[Metric]) -> list[Metric]:
    return sorted((m for g in groups for m in g), key=lambda m: m.ts)


def run(metrics: list[Metric], ruleset=RULES) -> list[AlertEvent]:
    eng = ShardEngine(ruleset)
    return eng.ingest(metrics) + eng.flush()


def sig(events: list[AlertEvent]) -> list[tuple[str, str, str, float]]:
    return sorted((e.alert_name, e.instance_id, e.state.value, e.at) for e in events)


def sample_metrics() -> list[Metric]:
    return [decode_json(json.dumps(r).encode(), math.inf) for r in rows()]


def test_known_incident_fires_once_and_resolves_once() -> None:
    events = run(sample_metrics())
    notified = [(e.alert_name, e.instance_id, e.state.value) for e in events if e.notify]
    assert notified == [("HighCPUUsage", "prod-db-01", "firing"), ("HighCPUUsage", "prod-db-01", "resolved")]
    firing = next(e for e in events if e.state is AlertState.FIRING)
    assert firing.at - firing.active_at == 300.0  # exactly `for`
    assert firing.message_id != next(e for e in events if e.state is AlertState.RESOLVED).message_id


def test_replay_twice_gives_the_same_message_ids() -> None:
    assert [e.message_id for e in run(sample_metrics())] == [e.message_id for e in run(sample_metrics())]


def test_condition_breaking_before_duration_never_fires() -> None:
    # 4 minutes above 80 % (for is 5m), a dip, 4 more minutes: the pending counter resets
    values = [90.0] * 16 + [20.0] * 4 + [90.0] * 16 + [20.0] * 8
    events = run(series("db1", "cpu_usage_percent", values))
    assert [e.state for e in events if e.alert_name == "HighCPUUsage"] == [
        AlertState.PENDING,
        AlertState.INACTIVE,
        AlertState.PENDING,
        AlertState.INACTIVE,
    ]


def test_late_samples_are_counted_and_dropped() -> None:
    eng = ShardEngine(RULES)
    eng.ingest(series("db1", "cpu_usage_percent", [10.0] * 20))
    late = Metric(T0 + 15.0, "postgresql", "db1", "cpu_usage_percent", 99.0, {"region": "eu"})
    eng.ingest([late])
    assert eng.stats.late == 1 and eng.stats.samples == 20


def test_out_of_order_within_lateness_is_the_same_as_sorted() -> None:
    ms = series("db1", "cpu_usage_percent", [90.0] * 40 + [10.0] * 20)
    shuffled = list(ms)
    rnd = random.Random(7)
    for i in range(0, len(shuffled) - 1, 2):  # swap neighbours: 15 s out of order, lateness is 30 s
        if rnd.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    assert sig(run(shuffled)) == sig(run(ms))


def test_stale_series_resolves_while_the_instance_keeps_reporting() -> None:
    cpu = series("db1", "cpu_usage_percent", [95.0] * 40)  # stops after 10 minutes
    up = series("db1", "memory_usage_percent", [10.0] * 120)  # the instance is still alive
    events = [e for e in run(interleave(cpu, up)) if e.alert_name == "HighCPUUsage"]
    resolved = events[-1]
    assert resolved.state is AlertState.RESOLVED and resolved.stale and math.isnan(resolved.value)
    last_sample = cpu[-1].ts
    assert 300.0 <= resolved.at - last_sample < 360.0  # staleness 5m, next evaluation tick


def test_dead_mans_switch_fires_when_heartbeat_stops() -> None:
    up = series("db1", "up", [1.0] * 20)  # 5 minutes of heartbeat, then silence
    mem = series("db1", "memory_usage_percent", [10.0] * 120)
    events = [e for e in run(interleave(up, mem)) if e.alert_name == "MetricsAbsent"]
    assert [e.state for e in events if e.notify] == [AlertState.FIRING]


def test_live_wall_clock_moves_a_silent_instance_to_stale() -> None:
    eng = ShardEngine(RULES, live=True)
    wall = 1000.0
    events = eng.ingest(series("db1", "cpu_usage_percent", [97.0] * 40), wall)
    assert any(e.state is AlertState.FIRING for e in events)
    wake = eng.next_wake()
    assert wake is not None and wake > wall
    assert eng.advance_idle(wall) == []  # no time has passed
    later = eng.advance_idle(wall + 600)
    assert {(e.alert_name, e.state, e.stale) for e in later if e.notify} == {
        ("HighCPUUsage", AlertState.RESOLVED, True),
        ("CriticalCPUUsage", AlertState.RESOLVED, True),
    }


def test_critical_inhibits_warning_on_the_same_instance() -> None:
    events = run(series("db1", "cpu_usage_percent", [97.0] * 60))
    first = {e.alert_name: e for e in events if e.notify is NotifyReason.FIRST}
    assert first["CriticalCPUUsage"].suppressed is None
    assert first["HighCPUUsage"].suppressed is Suppression.INHIBITED
    other = run(series("db2", "cpu_usage_percent", [85.0] * 60))
    assert [e.suppressed for e in other if e.notify is NotifyReason.FIRST] == [None]


def test_rule_file_silence_mutes_notifications_only() -> None:
    sil = Silence((Matcher("instance_id", "db1"),), T0, T0 + 3600, "maintenance")
    events = run(series("db1", "cpu_usage_percent", [85.0] * 60), replace(RULES, silences=(sil,)))
    firing = [e for e in events if e.state is AlertState.FIRING]
    assert firing and all(e.suppressed is Suppression.SILENCED for e in firing)


def test_snapshot_restore_continues_without_a_second_notification() -> None:
    ms = sample_metrics()
    whole = run(ms)
    cut = len(ms) * 3 // 10  # mid-incident (pending since 10:11, fires 10:16)
    first = ShardEngine(RULES)
    part1 = first.ingest(ms[:cut])
    second = ShardEngine(RULES)
    second.restore(first.snapshot())
    part2 = second.ingest(ms[cut:]) + second.flush()
    assert sig(part1 + part2) == sig(whole)
    assert [e.message_id for e in part1 + part2] == [e.message_id for e in whole]


def test_state_bytes_per_series_stay_small() -> None:
    eng = ShardEngine(RULES)
    eng.ingest(sample_metrics())
    n_series = sum(1 for _ in eng.bindings())
    assert len(eng.snapshot()) / n_series < 1024


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        (Aggregation.AVG, 2.5),
        (Aggregation.MIN, 1.0),
        (Aggregation.MAX, 4.0),
        (Aggregation.SUM, 10.0),
        (Aggregation.COUNT, 4.0),
        (Aggregation.LAST, 4.0),
        (Aggregation.P50, 2.5),
    ],
)
def test_aggregations(agg: Aggregation, expected: float) -> None:
    assert aggregate(agg, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0]) == expected


def test_quantile_and_rate() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert rate([0, 10, 20, 30], [100.0, 110.0, 5.0, 15.0]) == pytest.approx((10 + 5 + 10) / 30)
    assert rate([0], [1.0]) is None
    assert aggregate(Aggregation.AVG, [], []) is None


def test_first_sample_on_a_tick_boundary_without_lateness_is_not_late() -> None:
    rs = replace(RULES, allowed_lateness_s=0.0, eval_interval_s=1.0)
    eng = ShardEngine(rs)
    events = eng.ingest([Metric(T0, "postgresql", "db1", "connection_usage_percent", 99.0, {})])
    assert eng.stats.late == 0 and eng.stats.samples == 1
    assert [e.state for e in events] == [AlertState.PENDING]


def rules_from(tmp_path, text: str):
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return load_rules([path])


TWO_SEVERITIES = """
settings: {evaluation_interval: 1m, allowed_lateness: 30s, staleness: 5m}
alert_rules:
  - name: WarnA
    metric: a
    condition: {operator: ">", threshold: 50, duration: 0s, aggregation: last}
    window: 1m
    severity: warning
  - name: CritB
    metric: b
    condition: {operator: ">", threshold: 50, duration: 0s, aggregation: last}
    window: 1m
    severity: critical
"""


def test_resolution_of_an_announced_firing_is_never_suppressed(tmp_path) -> None:
    # WarnA fires (announced), then critical CritB fires on the same instance (it inhibits
    # warnings), then WarnA resolves: the receiver must hear that its incident closed
    rs = rules_from(tmp_path, TWO_SEVERITIES)
    a = series("db1", "a", [60.0] * 40 + [0.0] * 40)
    b = series("db1", "b", [0.0] * 20 + [60.0] * 60)
    events = {(e.alert_name, e.state): e for e in run(interleave(a, b), rs) if e.notify}
    assert events[("WarnA", AlertState.FIRING)].suppressed is None
    assert events[("CritB", AlertState.FIRING)].suppressed is None
    resolved = events[("WarnA", AlertState.RESOLVED)]
    assert resolved.suppressed is None


def test_resolution_of_a_never_announced_firing_is_not_sent() -> None:
    sil = Silence((Matcher("instance_id", "db1"),), T0, T0 + 3600, "maintenance")
    cpu = series("db1", "cpu_usage_percent", [85.0] * 40 + [10.0] * 20)
    events = run(cpu, replace(RULES, silences=(sil,)))
    resolved = [e for e in events if e.state is AlertState.RESOLVED and e.notify]
    assert resolved and all(e.suppressed is Suppression.NOT_ANNOUNCED for e in resolved)


def test_firing_held_back_by_a_silence_is_announced_when_the_silence_ends() -> None:
    ends = T0 + 15 * 60
    sil = Silence((Matcher("instance_id", "db1"),), T0, ends, "maintenance")
    events = run(series("db1", "cpu_usage_percent", [85.0] * 120), replace(RULES, silences=(sil,)))
    high = [e for e in events if e.alert_name == "HighCPUUsage" and e.notify]
    first, later = high[0], high[1]
    assert first.state is AlertState.FIRING and first.suppressed is Suppression.SILENCED
    # the first evaluation at or after the end of the silence, not at the next repeat (4 h)
    assert later.notify is NotifyReason.UNSUPPRESSED and later.suppressed is None
    assert later.state is AlertState.FIRING and later.at == ends
    assert later.message_id != first.message_id and later.active_at == first.active_at
    assert len(high) == 2  # announced once; nothing more while it keeps firing


NO_DATA = """
settings: {evaluation_interval: 5s, allowed_lateness: 30s, staleness: 5m}
alert_rules:
  - name: Absent
    metric: up
    no_data: true
    condition: {duration: 20s}
    window: 10s
    severity: critical
"""


def test_no_data_rule_does_not_page_healthy_instances_at_start(tmp_path) -> None:
    rs = rules_from(tmp_path, NO_DATA)
    ups = interleave(*(series(f"db{i}", "up", [1.0] * 60, step=5.0) for i in range(6)))
    assert [e for e in run(ups, rs) if e.state is AlertState.FIRING] == []
    # ... and absence still pages once the heartbeat stops while the instance reports
    mem = series("db0", "memory_usage_percent", [10.0] * 120, step=5.0)
    late = [e for e in run(interleave(ups, mem), rs) if e.state is AlertState.FIRING]
    assert [e.instance_id for e in late] == ["db0"]


def test_wall_time_ages_silent_instances_only_as_far_as_the_input_is_caught_up() -> None:
    eng = ShardEngine(RULES, live=True)
    wall = 1000.0
    eng.ingest(series("db1", "cpu_usage_percent", [97.0] * 40), wall)
    eng.ingest(series("db2", "cpu_usage_percent", [97.0] * 40), wall)
    # one of two partitions reported: no evidence that the input is quiet yet
    assert eng.observe_progress("0-t", wall + 600, 2) is False
    # the other partition is still behind (a backlog, a worker busy in a sink)
    assert eng.observe_progress("1-t", -math.inf, 2) is False
    assert eng.caught_up == -math.inf
    assert eng.advance_idle(eng.caught_up) == []
    assert eng.observe_progress("1-t", wall + 600, 2) is True
    stale = eng.advance_idle(eng.caught_up)
    assert {(e.instance_id, e.stale) for e in stale if e.state is AlertState.RESOLVED} == {
        ("db1", True),
        ("db2", True),
    }


# --------------------------------------------------------------------------- issue 11 (item 5)


def v1_layout(eng: ShardEngine) -> dict[str, Any]:
    """What jobs before snapshot version 2 wrote: a dict of instances, a tuple per series
    (sample buffers as lists, every alert instance by rule name)."""
    return {
        iid: (
            inst.max_ts,
            inst.evaluated_until,
            [
                (s.metric_name, s.database_type, dict(s.tags), list(s.ts), list(s.vs), s.last_pruned,
                 {b.rule.name: b.inst for b in s.bindings}, s.first_ts)
                for s in inst.series.values()
                if s is not None
            ],
        )
        for iid, inst in eng.instances.items()
    }  # fmt: skip


@pytest.mark.parametrize("older", ["unversioned", "version 1"])
def test_snapshots_of_older_formats_still_restore(older: str) -> None:
    # recovery directories written by older jobs must still resume: the bare dict (before
    # snapshots had a version) and version 1 (a tuple per series)
    ms = sample_metrics()
    whole = run(ms)
    cut = len(ms) * 3 // 10
    first = ShardEngine(RULES)
    part1 = first.ingest(ms[:cut])
    assert pickle.loads(first.snapshot())[0] == SNAPSHOT_VERSION == 2
    data = v1_layout(first)
    second = ShardEngine(RULES)
    second.restore(pickle.dumps(data if older == "unversioned" else (1, data)))
    part2 = second.ingest(ms[cut:]) + second.flush()
    assert [e.message_id for e in part1 + part2] == [e.message_id for e in whole]


def test_snapshot_keeps_only_alerts_that_are_not_inactive_and_restores_the_rest_as_inactive() -> None:
    ms = sample_metrics()
    cut = len(ms) * 3 // 10
    first = ShardEngine(RULES)
    first.ingest(ms[:cut])
    *_, alerts = pickle.loads(first.snapshot())[1]
    kept = [a for per_series in alerts.values() for a in per_series.values()]
    active = [b.inst for b in first.bindings() if b.inst.state is not AlertState.INACTIVE]
    assert active and sorted(map(repr, kept)) == sorted(map(repr, active))
    second = ShardEngine(RULES)
    second.restore(first.snapshot())
    assert sorted(repr(b.inst) for b in second.bindings()) == sorted(repr(b.inst) for b in first.bindings())


@pytest.mark.parametrize(
    ("blob", "says"),
    [
        (pickle.dumps((SNAPSHOT_VERSION + 1, {})), f"alert engine snapshot version {SNAPSHOT_VERSION + 1} "),
        (pickle.dumps(("v9", {})), "alert engine snapshot has no version"),
        (b"crules.engine\nNoSuchState\n.", "alert engine snapshot cannot be read (AttributeError"),
    ],
)
def test_a_snapshot_of_an_unknown_version_is_refused_with_what_to_do(blob: bytes, says: str) -> None:
    with pytest.raises(SnapshotError) as err:
        ShardEngine(RULES).restore(blob)
    assert says in str(err.value) and "fresh recovery directory" in str(err.value)


# -- trace context (issue 12, item 5) ----------------------------------------------------------
TP_OLD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP_NEW = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_events_carry_the_newest_traceparent_of_their_instance() -> None:
    eng = ShardEngine(RULES)
    hot = series("db1", "cpu_usage_percent", [97.0] * 40)
    other = series("db2", "cpu_usage_percent", [97.0] * 40)
    eng.ingest(hot[:4] + other[:4], traceparents={"db1": TP_OLD})
    # a later message of db1 brought another trace: the instance's events carry the newest
    events = eng.ingest(hot[4:] + other[4:], traceparents={"db1": TP_NEW}) + eng.flush()
    mine = [e for e in events if e.instance_id == "db1"]
    assert mine and any(e.state is AlertState.FIRING for e in mine)
    assert {e.traceparent for e in mine} == {TP_NEW}
    # db2's messages had no header: its events have no trace context
    theirs = [e for e in events if e.instance_id == "db2"]
    assert theirs and {e.traceparent for e in theirs} == {None}


def test_trace_context_changes_neither_identity_nor_equality_of_events() -> None:
    hot = series("db1", "cpu_usage_percent", [97.0] * 40)
    plain = run(hot)
    eng = ShardEngine(RULES)
    traced = eng.ingest(hot, traceparents={"db1": TP_NEW}) + eng.flush()
    assert [e.traceparent for e in plain] == [None] * len(plain)
    assert [e.traceparent for e in traced] == [TP_NEW] * len(traced)
    assert [(e.message_id, e.fingerprint) for e in traced] == [(e.message_id, e.fingerprint) for e in plain]
    assert traced == plain  # metadata: `==` ignores it


def test_alert_record_round_trips_the_traceparent() -> None:
    event = next(e for e in run(series("db1", "cpu_usage_percent", [97.0] * 40)) if e.notify)
    assert "traceparent" not in event.to_record()  # no trace: records as before
    assert AlertEvent.from_record(json.loads(json.dumps(event.to_record()))).traceparent is None
    traced = replace(event, traceparent=TP_NEW)
    record = json.loads(json.dumps(traced.to_record()))
    assert record["traceparent"] == TP_NEW
    back = AlertEvent.from_record(record)
    assert back.traceparent == TP_NEW and back == traced
    assert back.to_record() == traced.to_record()


class _PickledBeforeTraceparent:
    """Pickles as an AlertEvent did before `traceparent` existed (its state lacks the field)."""

    def __init__(self, event: AlertEvent) -> None:
        self.state = [getattr(event, f) for f in AlertEvent.__slots__ if f != "traceparent"]

    def __reduce__(self) -> tuple[object, ...]:
        return (object.__new__, (AlertEvent,), self.state)


def test_events_pickled_before_the_traceparent_field_still_load() -> None:
    # delivery state snapshotted by an older job holds AlertEvents without the field
    event = next(e for e in run(series("db1", "cpu_usage_percent", [97.0] * 40)) if e.notify)
    old = pickle.loads(pickle.dumps(_PickledBeforeTraceparent(event)))
    assert isinstance(old, AlertEvent) and old == event and old.traceparent is None
    traced = replace(event, traceparent=TP_NEW)
    assert pickle.loads(pickle.dumps(traced)).traceparent == TP_NEW


def test_wall_time_aging_in_slices_gives_the_same_events_as_at_once() -> None:
    """A deadline stops `advance_idle` after the instance that passed it; the next calls carry
    on with the instances left, and together they decide exactly what one call would."""

    def aged(sliced: bool) -> tuple[list[AlertEvent], int]:
        eng = ShardEngine(RULES, live=True)
        wall = 1000.0
        for i in range(5):
            eng.ingest(series(f"db{i}", "cpu_usage_percent", [97.0] * 40), wall)
        assert eng.observe_progress("0-t", wall + 600, 1)
        if not sliced:
            return eng.advance_idle(eng.caught_up), 1
        ticks = iter(range(1_000_000))

        def clock() -> float:  # one unit a reading: each call passes its deadline at once
            return float(next(ticks))

        out: list[AlertEvent] = []
        calls = 0
        while True:
            out += eng.advance_idle(eng.caught_up, clock() + 0.5, clock)
            calls += 1
            if not eng.idle_pending:
                return out, calls

    whole, _ = aged(sliced=False)
    sliced, calls = aged(sliced=True)
    assert calls == 5  # one instance a call
    assert {e.instance_id for e in whole if e.stale} == {f"db{i}" for i in range(5)}
    assert sig(sliced) == sig(whole)


def test_an_instance_left_for_the_next_slice_is_not_aged_past_its_own_samples() -> None:
    eng = ShardEngine(RULES, live=True)
    wall = 1000.0
    for i in range(2):
        eng.ingest(series(f"db{i}", "cpu_usage_percent", [97.0] * 40), wall)
    eng.observe_progress("0-t", wall + 600, 1)
    ticks = iter(range(1_000_000))

    def clock() -> float:
        return float(next(ticks))

    first = eng.advance_idle(eng.caught_up, clock() + 0.5, clock)
    assert eng.idle_pending
    aged = {e.instance_id for e in first}
    (left,) = {"db0", "db1"} - aged
    # the one left reports again before its slice: its own samples move it, wall time does not
    eng.ingest(series(left, "cpu_usage_percent", [97.0] * 4, t0=T0 + 600), wall + 700)
    rest = eng.advance_idle(eng.caught_up, clock() + 0.5, clock)
    assert not eng.idle_pending
    assert [e for e in rest if e.instance_id == left] == []
