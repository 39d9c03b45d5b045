"""The alerting flow with a control input (issue 13): silences and rule sets broadcast to every
shard, on 1 and 2 workers, give what the engine gives when it knows them up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSource, cluster_main, run_main

from connectors.control.source import ControlCaughtUp
from connectors.control.watch import RulesUpdate
from flows.alerting import build_flow
from rules.control.events import AckEvent, SilenceEvent
from rules.engine import ShardEngine
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent, AlertState, Matcher, NotifyReason, RuleSet, Suppression
from tests.flow.test_alerting_flow import DECODE, RULES, Collected, messages
from tests.support.data import T0

MIN = 60.0
CPU = (Matcher("instance_id", "prod-db-01"), Matcher("alertname", "HighCPUUsage"))


def silence(id: str, starts: float, ends: float, maintenance: bool = False) -> SilenceEvent:
    return SilenceEvent(id, CPU, starts, ends, "alice", "CHG-7", starts, maintenance)


def run_flow(control: list[Any], workers: int, ruleset: RuleSet = RULES) -> Collected:
    got = Collected()
    flow = build_flow(
        ruleset,
        TestingSource(messages(bad=False)),
        got.outputs(),
        DECODE,
        shards=16,
        wall=None,
        flush_on_eof=True,
        control_source=TestingSource(control),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


def engine_alone(ruleset: RuleSet, silences: list[SilenceEvent]) -> list[AlertEvent]:
    """What the backtest computes: the final control plane known from the first sample on."""
    eng = ShardEngine(ruleset)
    for s in silences:
        eng.apply_control(s)
    metrics = [DECODE(m.value, float("inf")) for m in messages(bad=False)]
    return eng.ingest(metrics) + eng.flush()


def key(events: list[AlertEvent]) -> list[tuple[Any, ...]]:
    return sorted(
        (e.message_id, e.alert_name, e.state.value, e.at, e.notify, e.suppressed, e.instance_id)
        for e in events
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_control_silences_reach_every_shard_and_apply_by_event_time(workers: int) -> None:
    # the sample incident fires at 10:16; a maintenance window 10:18-10:21 mutes it, then it is
    # notified again; an older version of another silence and an acknowledgement change nothing
    window = silence("m1", T0 + 18 * MIN, T0 + 21 * MIN, maintenance=True)
    other = silence("s2", T0, T0 + 3600)
    control = [
        silence("s2", T0, T0 + 1).expired(T0 + 1),  # s2 created and expired at once ...
        window,
        other,  # ... then its older version arrives: the fold keeps the newest
        AckEvent("fp", T0, True, "bob", T0 + 1),
        ControlCaughtUp("0-gds.control", 1),
    ]
    got = run_flow(control, workers)
    want = engine_alone(RULES, [window, silence("s2", T0, T0 + 1).expired(T0 + 1)])
    assert key(got.alerts) == key(want)
    shown = [e for e in got.alerts if e.alert_name == "HighCPUUsage" and (e.notify or e.suppressed)]
    cpu = sorted(shown, key=lambda e: e.at)
    assert [(e.at - T0, e.notify, e.suppressed) for e in cpu] == [
        (16 * MIN, NotifyReason.FIRST, None),
        (18 * MIN, None, Suppression.MAINTENANCE),
        (21 * MIN, NotifyReason.UNSUPPRESSED, None),
        (cpu[-1].at - T0, NotifyReason.RESOLVED, None),
    ]
    # what inline delivery is handed: nothing while muted
    assert [
        e.at - T0 for e in got.notify if e.notify and not e.suppressed and e.alert_name == "HighCPUUsage"
    ] == [
        16 * MIN,
        21 * MIN,
        cpu[-1].at - T0,
    ]


EXTRA = """
alert_rules:
  - name: AnyCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: %s, duration: 0s, aggregation: avg}
    window: 1m
    severity: info
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reloaded_rule_set_reaches_every_shard_once_newest_wins(workers: int, tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "extra.yml").write_text(EXTRA % 1000)  # never fires
    (tmp_path / "v2" / "extra.yml").write_text(EXTRA % 0)  # fires on every instance
    v1 = load_rules([BUNDLED, tmp_path / "v1"])
    v2 = load_rules([BUNDLED, tmp_path / "v2"])
    control = [
        RulesUpdate("v2", 2.0, v2),
        RulesUpdate("v2", 2.0, v2),  # every worker's watcher sends it: applied once
        RulesUpdate("v1", 1.0, v1),  # loaded before v2 (another worker saw it late): ignored
        ControlCaughtUp("0-gds.control", 1),  # no tick closes before this: all under v2
    ]
    got = run_flow(control, workers)
    assert key(got.alerts) == key(engine_alone(v2, []))
    fired = {e.instance_id for e in got.alerts if e.alert_name == "AnyCPU" and e.state is AlertState.FIRING}
    assert len(fired) == 4


def test_a_backtest_with_the_control_plane_is_deterministic_and_equals_the_live_flow(tmp_path: Path) -> None:
    from flows import backtest
    from flows.sample.generate import rows
    from tests.support.data import write_jsonl

    data = tmp_path / "sample.jsonl"
    write_jsonl(data, rows())
    window = silence("m1", T0 + 18 * MIN, T0 + 21 * MIN, maintenance=True)
    control = backtest.fold_control([window, silence("s2", T0, T0 + 1).expired(T0 + 1)])

    def replay() -> backtest.ReplayResult:
        return backtest.replay([("A", RULES)], backtest.file_input([data], progress_s=0), all_states=True,
                               control=control)  # fmt: skip

    first, second = replay(), replay()
    assert first.records == second.records  # same silences, same events
    assert first.control_silences == 2  # both overlap the (unbounded) window
    live = run_flow([window, ControlCaughtUp("0-gds.control", 1)], workers=1)
    assert sorted(str(r["message_id"]) for r in first.records["A"]) == sorted(
        e.message_id for e in live.alerts
    )
    assert {r["suppressed"] for r in first.records["A"]} >= {"maintenance"}
