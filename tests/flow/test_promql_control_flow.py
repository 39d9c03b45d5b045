"""Prometheus rule groups and the control plane in the alerting dataflow: silences and rule sets
broadcast to every group key, on 1 and 2 workers, give what the groups give when they know them
up front; ticks wait for the control input; a reload keeps state, applies an edit, resolves a
removed group and routes to the groups of the newest set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSource, cluster_main, run_main

from connectors.control.source import ControlCaughtUp
from connectors.control.watch import RulesUpdate
from flows.alerting import build_flow
from flows.common import GroupSet
from rules.control.events import SilenceEvent
from rules.model import AlertEvent, AlertState, Matcher, NotifyReason, RuleSet, Suppression
from rules.promql.rulefile import RuleGroup, load_prometheus_rules
from rules.promql.stream import GroupRunner, prom_labels
from tests.flow.test_promql_flow import DECODE, Collected, messages
from tests.support.data import T0

MIN = 60.0
NO_SEED = RuleSet(rules=())
CPU = (Matcher("instance", "prod-db-01"), Matcher("alertname", "HighCPUUsage"))

GROUPS = """\
groups:
  - name: cpu
    interval: 1m
    rules:
      - alert: HighCPUUsage
        expr: avg_over_time(cpu_usage_percent[1m]) > {threshold}
        labels: {{severity: warning}}
  - name: {other}
    interval: 1m
    rules:
      - alert: Up
        expr: up == 1
        labels: {{severity: info}}
"""


def groups(tmp_path: Path, threshold: float = 80, other: str = "up", name: str = "g.yml") -> list[RuleGroup]:
    p = tmp_path / name
    p.write_text(GROUPS.format(threshold=threshold, other=other))
    return load_prometheus_rules([p])


def silence(id: str, starts: float, ends: float, maintenance: bool = False) -> SilenceEvent:
    return SilenceEvent(id, CPU, starts, ends, "alice", "CHG-7", starts, maintenance)


def run_flow(gs: list[RuleGroup], control: list[Any], workers: int, batch: int = 1) -> Collected:
    got = Collected()
    flow = build_flow(
        NO_SEED,
        TestingSource([m for m in messages() if m.offset >= 0], batch_size=batch),
        got.outputs(),
        DECODE,
        wall=None,
        flush_on_eof=True,
        groups=gs,
        control_source=TestingSource(control),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


def alone(gs: list[RuleGroup], silences: list[SilenceEvent]) -> list[AlertEvent]:
    """What the backtest computes: every group fed the whole input with the silences up front."""
    out: list[AlertEvent] = []
    metrics = [DECODE(m.value, float("inf")) for m in messages() if m.offset >= 0]
    for g in gs:
        r = GroupRunner(g, lateness_s=30.0)
        for s in silences:
            r.apply_control(s)
        names = {"cpu_usage_percent"} if g.name == "cpu" else {"up"}
        samples = [(prom_labels(m), m.ts, m.value) for m in metrics if m.metric_name in names]
        out += r.ingest(samples, {"p": max(m.ts for m in metrics)}, 0.0).events + r.flush().events
    return out


def key(events: list[AlertEvent]) -> list[tuple[Any, ...]]:
    return sorted((e.message_id, e.alert_name, e.state.value, e.at, e.notify, e.suppressed) for e in events)


def cpu(events: list[AlertEvent]) -> list[tuple[float, AlertState, NotifyReason | None, Suppression | None]]:
    got = sorted((e for e in events if e.alert_name == "HighCPUUsage"), key=lambda e: e.at)
    return [((e.at - T0) / MIN, e.state, e.notify, e.suppressed) for e in got]


@pytest.mark.parametrize("workers", [1, 2])
def test_control_silences_reach_every_group_and_apply_by_event_time(workers: int, tmp_path: Path) -> None:
    gs = groups(tmp_path)
    window = silence("m1", T0 + 18 * MIN, T0 + 21 * MIN, maintenance=True)
    got = run_flow(gs, [window, ControlCaughtUp("0-gds.control", 1)], workers)
    assert key(got.alerts) == key(alone(gs, [window]))
    shown = cpu(got.alerts)
    assert [s[1:] for s in shown] == [
        (AlertState.FIRING, NotifyReason.FIRST, None),
        (AlertState.FIRING, None, Suppression.MAINTENANCE),  # muted at its first tick inside
        (AlertState.FIRING, NotifyReason.UNSUPPRESSED, None),  # released when it ended
        (AlertState.RESOLVED, NotifyReason.RESOLVED, None),
    ]
    assert shown[1][0] == 18 and shown[2][0] == 21
    assert any(e.alert_name == "Up" for e in got.alerts)  # the other group ran too


@pytest.mark.parametrize("workers", [1, 2])
def test_no_group_tick_closes_before_the_control_input_caught_up(workers: int, tmp_path: Path) -> None:
    # a silence covering the whole incident behind other control items, while the metrics come in
    # big batches: had a tick closed before it was known, the FIRING would have gone out unsuppressed
    gs = groups(tmp_path)
    whole = silence("s1", T0, T0 + 3600)
    before = [silence(f"x{i}", T0, T0 + 1) for i in range(30)]
    got = run_flow(gs, [*before, whole, ControlCaughtUp("0-gds.control", 1)], workers, batch=1000)
    assert [s[1:] for s in cpu(got.alerts)] == [
        (AlertState.FIRING, NotifyReason.FIRST, Suppression.SILENCED),
        (AlertState.RESOLVED, NotifyReason.RESOLVED, Suppression.NOT_ANNOUNCED),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reloaded_rule_set_reaches_every_group_once_newest_wins(workers: int, tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    v1 = groups(tmp_path / "v1", threshold=1000)  # never fires
    v2 = groups(tmp_path / "v2", threshold=80, other="up2")  # "up" removed, "up2" added
    control = [
        RulesUpdate("v2", 2.0, NO_SEED, (), tuple(v2)),
        RulesUpdate("v2", 2.0, NO_SEED, (), tuple(v2)),  # every worker's watcher sends it
        RulesUpdate("v1", 1.0, NO_SEED, (), tuple(v1)),  # loaded before v2: ignored
        ControlCaughtUp("0-gds.control", 1),  # no tick closes before this: all under v2
    ]
    got = run_flow(groups(tmp_path, threshold=1000), control, workers)
    assert [s[1:] for s in cpu(got.alerts)] == [
        (AlertState.FIRING, NotifyReason.FIRST, None),
        (AlertState.RESOLVED, NotifyReason.RESOLVED, None),
    ]


def test_group_set_routes_to_the_newest_groups_and_replays_the_control_plane_to_an_added_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "v2").mkdir()
    v1, v2 = groups(tmp_path), groups(tmp_path / "v2", other="up2")
    current = GroupSet(v1, "v1")
    current.observe(silence("s1", T0, T0 + 60))
    current.observe(ControlCaughtUp("0-gds.control", 1))
    assert current.routes.groups_for("up") == ("up",)
    names, added = current.offer(RulesUpdate("v2", 2.0, NO_SEED, (), tuple(v2)))
    assert names == ["cpu", "up", "up2"] and added == ["up2"]  # the removed one is told too
    assert current.routes.groups_for("up") == ("up2",) and current.group("up") is None
    assert [type(x).__name__ for x in current.replay()] == ["SilenceEvent", "ControlCaughtUp"]
    assert current.offer(RulesUpdate("v1", 1.0, NO_SEED, (), tuple(v1))) == (["cpu", "up2"], [])  # older


def test_a_backtest_applies_the_control_topics_silences_to_groups_as_the_live_flow(tmp_path: Path) -> None:
    from flows import backtest
    from flows.sample.generate import rows
    from tests.support.data import write_jsonl

    data = tmp_path / "sample.jsonl"
    write_jsonl(data, rows())
    gs = groups(tmp_path)
    window = silence("m1", T0 + 18 * MIN, T0 + 21 * MIN, maintenance=True)

    def replay(control: list[SilenceEvent]) -> list[dict[str, object]]:
        result = backtest.replay(
            [("A", NO_SEED)],
            backtest.file_input([data], progress_s=0),
            groups={"A": gs},
            all_states=True,
            control=backtest.fold_control(control),
        )
        return [r for r in result.records["A"] if r["alert_name"] == "HighCPUUsage"]

    silenced, plain = replay([window]), replay([])
    live = run_flow(gs, [window, ControlCaughtUp("0-gds.control", 1)], workers=1)
    want = sorted(e.message_id for e in live.alerts if e.alert_name == "HighCPUUsage")
    assert sorted(str(r["message_id"]) for r in silenced) == want
    assert [r["suppressed"] for r in silenced].count("maintenance") == 1
    assert not any(r["suppressed"] for r in plain)
