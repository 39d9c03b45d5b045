"""A rule group evaluated tick by tick: recording rules feed later rules in the same tick,
alerts follow Prometheus' pending/firing/resolved with for and keep_firing_for, and the events
are the engine's (fingerprint, message_id, labels, rendered annotations)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

from rules.engine import fingerprint, message_id
from rules.model import AlertEvent, AlertState, NotifyReason
from rules.promql.eval import Evaluator, Sample, is_stale
from rules.promql.group import GroupState, MemoryStore, evaluate_group, firing, threshold_of
from rules.promql.parse import parse_expr
from rules.promql.rulefile import RuleGroup, load_prometheus_rules

FACTORY = partial(Evaluator, lookback_s=300.0, left_open=True)


def load(tmp_path: Path, text: str) -> RuleGroup:
    p = tmp_path / "rules.yml"
    p.write_text(text)
    (g,) = load_prometheus_rules([p])
    return g


def series(
    store: MemoryStore, labels: dict[str, str], start: float, values: list[float], step: float = 60
) -> None:
    key = tuple(sorted(labels.items()))
    for i, v in enumerate(values):
        store.append(key, start + i * step, v)


def run(
    group: RuleGroup, store: MemoryStore, ticks: list[float]
) -> tuple[GroupState, list[list[Sample]], list[AlertEvent]]:
    state = GroupState()
    recorded: list[list[Sample]] = []
    events: list[AlertEvent] = []
    for t in ticks:
        state, rec, evs = evaluate_group(group, state, t, store, FACTORY)
        recorded.append(rec)
        events.extend(evs)
    return state, recorded, events


LAG = """\
groups:
  - name: lag
    rules:
      - record: cluster:lag:max
        expr: max by (cluster) (pg_replication_lag_seconds)
      - alert: ReplicationLag
        expr: cluster:lag:max > 30
        for: 2m
        labels: {severity: critical, team: "{{ $labels.cluster }}-dba"}
        annotations:
          summary: "{{ $labels.cluster }} lags {{ $value | humanizeDuration }}"
"""


def test_recording_rule_feeds_the_alert_in_the_same_tick(tmp_path: Path) -> None:
    g = load(tmp_path, LAG)
    store = MemoryStore()
    # two replicas of cluster a (one lagging 0..5m), one of cluster b that never lags
    series(
        store,
        {"__name__": "pg_replication_lag_seconds", "cluster": "a", "instance": "r1"},
        0,
        [1, 40, 45, 50, 5, 5],
    )
    series(
        store,
        {"__name__": "pg_replication_lag_seconds", "cluster": "a", "instance": "r2"},
        0,
        [1, 1, 1, 1, 1, 1],
    )
    series(
        store,
        {"__name__": "pg_replication_lag_seconds", "cluster": "b", "instance": "r3"},
        0,
        [2, 2, 2, 2, 2, 2],
    )
    state, recorded, events = run(g, store, [0, 60, 120, 180, 240, 300])
    # the recording rule's output at every tick, in the seed-able form
    assert [(dict(s.labels)["cluster"], s.value) for s in recorded[1]] == [("a", 40.0), ("b", 2.0)]
    assert all(dict(s.labels)["__name__"] == "cluster:lag:max" for rec in recorded for s in rec)
    # read back by the alert at the same tick: pending at 60, firing at 180 (for 2m), resolved at 240
    got = [(e.state, e.at, e.value) for e in events]
    assert got == [
        (AlertState.PENDING, 60, 40.0),
        (AlertState.FIRING, 180, 50.0),
        (AlertState.RESOLVED, 240, 50.0),
    ]
    fire = events[1]
    labels = (("alertname", "ReplicationLag"), ("cluster", "a"), ("severity", "critical"), ("team", "a-dba"))
    assert fire.labels == labels
    assert fire.fingerprint == fingerprint("ReplicationLag", labels)
    assert fire.message_id == message_id(fire.fingerprint, 60, AlertState.FIRING, 0)
    assert fire.annotations == (("summary", "a lags 50s"),)
    assert fire.severity.value == "critical" and fire.threshold == 30.0 and fire.notify is NotifyReason.FIRST
    assert events[2].notify is NotifyReason.RESOLVED and events[2].suppressed is None
    assert not firing(state)


def test_pending_dropped_and_keep_firing_for(tmp_path: Path) -> None:
    g = load(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: Slow
        expr: latency > 1
        for: 2m
      - alert: Disk
        expr: disk > 90
        keep_firing_for: 3m
""",
    )
    store = MemoryStore()
    series(store, {"__name__": "latency", "instance": "a"}, 0, [2, 2, 0.5, 0.5])
    series(store, {"__name__": "disk", "instance": "a"}, 0, [95, 80, 80, 80, 80, 80])
    _, _, events = run(g, store, [0, 60, 120, 180, 240, 300])
    slow = [(e.state, e.at) for e in events if e.alert_name == "Slow"]
    assert slow == [(AlertState.PENDING, 0), (AlertState.INACTIVE, 120)]  # dropped before `for`
    disk = [(e.state, e.at) for e in events if e.alert_name == "Disk"]
    # no `for`: fires at once; false from 60, kept firing for 3m: resolved at 240
    assert disk == [(AlertState.FIRING, 0), (AlertState.RESOLVED, 240)]


def test_recorded_series_that_vanish_get_a_staleness_marker(tmp_path: Path) -> None:
    g = load(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - record: high
        expr: cpu > 80
      - alert: StillHigh
        expr: high
""",
    )
    store = MemoryStore()
    series(store, {"__name__": "cpu", "instance": "a"}, 0, [90, 50, 50])
    _, recorded, events = run(g, store, [0, 60, 120])
    assert [len(r) for r in recorded] == [1, 0, 0]
    (high,) = store.select("high", ())
    assert list(high.ts) == [0, 60] and is_stale(high.vs[1])
    # without the marker the 5m lookback would have kept `high` (and the alert) alive
    assert [(e.state, e.at) for e in events] == [(AlertState.FIRING, 0), (AlertState.RESOLVED, 60)]


def test_alerts_series_is_written(tmp_path: Path) -> None:
    g = load(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: Up
        expr: up == 0
        for: 1m
""",
    )
    store = MemoryStore()
    series(store, {"__name__": "up", "instance": "a"}, 0, [0, 0, 1])
    run(g, store, [0, 60, 120])
    (alerts,) = [s for s in store.select("ALERTS", ()) if dict(s.labels)["alertstate"] == "pending"]
    assert dict(alerts.labels) == {
        "__name__": "ALERTS",
        "alertname": "Up",
        "alertstate": "pending",
        "instance": "a",
    }
    (fired,) = [s for s in store.select("ALERTS", ()) if dict(s.labels)["alertstate"] == "firing"]
    assert list(fired.ts) == [60, 120] and fired.vs[0] == 1 and is_stale(fired.vs[1])
    assert is_stale(alerts.vs[-1])


def test_a_failing_rule_keeps_its_alerts_and_says_why(tmp_path: Path) -> None:
    g = load(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: Both
        expr: a > on() b
""",
    )
    store = MemoryStore()
    series(store, {"__name__": "a", "instance": "x"}, 0, [5, 5])
    series(store, {"__name__": "b", "instance": "x"}, 0, [1, 1])
    state, _, events = evaluate_group(g, GroupState(), 0, store, FACTORY)
    assert [e.state for e in events] == [AlertState.FIRING] and not state.errors
    series(store, {"__name__": "b", "instance": "y"}, 60, [1])  # now b has two series: on() is many-to-one
    state, _, events = evaluate_group(g, state, 60, store, FACTORY)
    assert events == [] and len(firing(state)) == 1
    ((rule, why),) = state.errors
    assert rule == "Both" and "many" in why.lower()


def test_two_rules_with_one_name_keep_their_own_alerts(tmp_path: Path) -> None:
    g = load(
        tmp_path,
        """\
groups:
  - name: g
    rules:
      - alert: CPU
        expr: cpu > 80
        labels: {severity: warning}
      - alert: CPU
        expr: cpu > 95
        labels: {severity: critical}
""",
    )
    store = MemoryStore()
    series(store, {"__name__": "cpu", "instance": "a"}, 0, [99, 99, 99])
    state, _, events = run(g, store, [0, 60, 120])
    assert sorted(dict(k)["severity"] for k, _ in firing(state, "CPU")) == ["critical", "warning"]
    assert len(events) == 2  # one FIRING each, no flapping between them


def test_memory_store_prune_and_order() -> None:
    s = MemoryStore()
    k = (("__name__", "m"), ("i", "a"))
    for t in (60.0, 0.0, 120.0, 60.0):
        s.append(k, t, t)
    (d,) = s.select("m", ())
    assert list(d.ts) == [0, 60, 120]
    s.prune(60)
    (d,) = s.select("m", ())
    assert list(d.ts) == [60, 120]
    s.prune(1000)
    assert list(s.select("m", ())) == [] and len(s) == 0


def test_threshold_of() -> None:
    assert threshold_of(parse_expr("x > 80")) == 80
    assert threshold_of(parse_expr("5 < x")) == 5
    assert math.isnan(threshold_of(parse_expr("x and y")))
