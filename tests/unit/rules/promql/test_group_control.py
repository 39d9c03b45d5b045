"""Prometheus rule groups and the control plane: silences and inhibition decided as the seed
engine decides them (rules.suppress), ticks held until the control input caught up, and a
reloaded group keeping the state of the rules that stayed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from rules.control.events import EMPTY, SilenceEvent, fold
from rules.engine import ShardEngine
from rules.loader import load_rules
from rules.metric import Metric
from rules.model import AlertEvent, AlertState, Matcher, NotifyReason, Suppression
from rules.promql.eval import Evaluator
from rules.promql.group import GroupState, MemoryStore, carry_over, evaluate_group
from rules.promql.rulefile import RuleGroup, load_prometheus_rules
from rules.promql.stream import GroupRunner, prom_labels
from rules.suppress import Suppressor, mute_id, silences_of

FACTORY = partial(Evaluator, lookback_s=300.0, left_open=True)
T0 = 1_736_935_200.0
MIN = 60.0

HOT = """\
groups:
  - name: db
    interval: 1m
    rules:
      - alert: HotCPU
        expr: cpu > {threshold}
        labels: {{severity: warning}}
      - alert: Down
        expr: up == 0
        labels: {{severity: critical}}
"""


def load(tmp_path: Path, text: str, name: str = "g.yml") -> RuleGroup:
    p = tmp_path / name
    p.write_text(text)
    (g,) = load_prometheus_rules([p])
    return g


def hot(tmp_path: Path, threshold: float = 80) -> RuleGroup:
    return load(tmp_path, HOT.format(threshold=threshold))


def fill(store: MemoryStore, name: str, values: Sequence[float], instance: str = "db1") -> None:
    for i, v in enumerate(values):
        m = Metric(T0 + i * MIN, "postgresql", instance, name, v, {"env": "prod"})
        store.append(prom_labels(m), m.ts, v)


def silence(starts: float, ends: float, *, maintenance: bool = False, id: str = "s1") -> SilenceEvent:
    return SilenceEvent(
        id=id,
        matchers=(Matcher("instance_id", "db1"),),
        starts_at=starts,
        ends_at=ends,
        created_by="alice",
        comment="",
        updated_at=starts,
        maintenance=maintenance,
    )


def control(*events: SilenceEvent) -> Suppressor:
    state = EMPTY
    for e in events:
        state = fold(state, e)
    return Suppressor(silences_of([], state))


def run(
    group: RuleGroup, store: MemoryStore, minutes: int, suppress: Suppressor, step: float = MIN
) -> list[AlertEvent]:
    state = GroupState()
    out: list[AlertEvent] = []
    t = T0
    while t <= T0 + minutes * MIN:
        state, _, evs = evaluate_group(group, state, t, store, FACTORY, suppress=suppress)
        out += evs
        t += step
    return out


def shown(
    events: list[AlertEvent],
) -> list[tuple[float, AlertState, NotifyReason | None, Suppression | None]]:
    return [((e.at - T0) / MIN, e.state, e.notify, e.suppressed) for e in events]


def test_an_announced_alert_is_muted_once_then_released_by_the_silences_end(tmp_path: Path) -> None:
    store = MemoryStore()
    fill(store, "cpu", [95] * 8 + [10] * 3)
    events = run(hot(tmp_path), store, 10, control(silence(T0 + 2 * MIN, T0 + 5 * MIN)))
    assert shown(events) == [
        (0, AlertState.FIRING, NotifyReason.FIRST, None),
        (2, AlertState.FIRING, None, Suppression.SILENCED),  # recorded once, not notified
        (5, AlertState.FIRING, NotifyReason.UNSUPPRESSED, None),  # the silence ended
        (8, AlertState.RESOLVED, NotifyReason.RESOLVED, None),
    ]
    muted = events[1]
    assert muted.message_id == mute_id(muted.fingerprint, muted.active_at, T0 + 2 * MIN)
    assert len({e.message_id for e in events}) == 4


def test_a_maintenance_window_shows_as_such_and_the_resolution_of_an_announced_alert_is_announced(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    fill(store, "cpu", [95] * 3 + [10] * 2)
    events = run(hot(tmp_path), store, 4, control(silence(T0 + MIN, T0 + 60 * MIN, maintenance=True)))
    assert shown(events) == [
        (0, AlertState.FIRING, NotifyReason.FIRST, None),
        (1, AlertState.FIRING, None, Suppression.MAINTENANCE),
        (3, AlertState.RESOLVED, NotifyReason.RESOLVED, None),  # inside the window: still announced
    ]


def test_silenced_from_its_first_firing_it_is_never_announced_nor_its_resolution(tmp_path: Path) -> None:
    store = MemoryStore()
    fill(store, "cpu", [95] * 3 + [10] * 2)
    events = run(hot(tmp_path), store, 4, control(silence(T0 - MIN, T0 + 60 * MIN)))
    assert shown(events) == [
        (0, AlertState.FIRING, NotifyReason.FIRST, Suppression.SILENCED),
        (3, AlertState.RESOLVED, NotifyReason.RESOLVED, Suppression.NOT_ANNOUNCED),
    ]


def test_repeats_while_muted_are_suppressed(tmp_path: Path) -> None:
    store = MemoryStore()
    fill(store, "cpu", [95] * (5 * 60 + 1))
    events = run(hot(tmp_path), store, 5 * 60, control(silence(T0 + 10 * MIN, T0 + 4.5 * 60 * MIN)), 10 * MIN)
    assert shown(events) == [
        (0, AlertState.FIRING, NotifyReason.FIRST, None),
        (10, AlertState.FIRING, None, Suppression.SILENCED),
        (240, AlertState.FIRING, NotifyReason.REPEAT_ELAPSED, Suppression.SILENCED),  # 4h: recorded only
        (270, AlertState.FIRING, NotifyReason.UNSUPPRESSED, None),
    ]


def test_a_firing_critical_alert_of_the_group_inhibits_the_warning_of_the_same_instance(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    fill(store, "cpu", [95] * 3)
    fill(store, "up", [0] * 3)
    rules = load_rules([_seed(tmp_path)])  # the default inhibit rule: critical mutes warning
    events = run(hot(tmp_path), store, 0, Suppressor(silences_of([]), rules.inhibit_rules))
    got = {e.alert_name: e.suppressed for e in events}
    assert got == {"HotCPU": Suppression.INHIBITED, "Down": None}


def _seed(tmp_path: Path, threshold: float = 80) -> Path:
    p = tmp_path / "seed.yml"
    p.write_text(
        "settings: {evaluation_interval: 1m, allowed_lateness: 0s}\n"
        "alert_rules:\n  - name: HotCPU\n    metric: cpu\n"
        f"    condition: {{operator: '>', threshold: {threshold}, duration: 0s, aggregation: last}}\n"
        "    window: 1m\n    severity: warning\n"
    )
    return p


def test_a_group_and_the_seed_engine_make_the_same_decisions(tmp_path: Path) -> None:
    values: list[float] = [95.0] * 8 + [10.0] * 3
    sils = (silence(T0 + 2 * MIN, T0 + 5 * MIN), silence(T0 + 7 * MIN, T0 + 30 * MIN, id="s2"))
    store = MemoryStore()
    fill(store, "cpu", values)
    group = run(hot(tmp_path), store, 10, control(*sils))
    eng = ShardEngine(load_rules([_seed(tmp_path)]))
    for s in sils:
        eng.apply_control(s)
    seed = eng.ingest(
        [Metric(T0 + i * MIN, "postgresql", "db1", "cpu", v, {"env": "prod"}) for i, v in enumerate(values)]
    )
    seed += eng.flush()
    assert shown(group) == shown(seed)
    assert len(group) == 5  # fired, muted, released, muted again, resolved (announced)


# --------------------------------------------------------------------------- on the stream


def _samples(values: list[float], start: int = 0) -> list[tuple[tuple[tuple[str, str], ...], float, float]]:
    out = []
    for i, v in enumerate(values, start):
        m = Metric(T0 + i * MIN, "postgresql", "db1", "cpu", v, {"env": "prod"})
        out.append((prom_labels(m), m.ts, v))
    return out


def test_a_group_holds_its_ticks_until_every_control_partition_caught_up(tmp_path: Path) -> None:
    r = GroupRunner(hot(tmp_path), lateness_s=0.0, await_control=True)
    assert r.ingest(_samples([95] * 4), {"p0": T0 + 3 * MIN}, 1.0).events == ()
    r.apply_control(silence(T0 - MIN, T0 + 60 * MIN))  # read before the control topic caught up
    assert r.control_caught_up("0-ctl", 2).events == ()  # one of two partitions
    out = r.control_caught_up("1-ctl", 2).events
    # every held tick evaluated, with the silence known: never announced
    assert [(e.state, e.suppressed) for e in out] == [(AlertState.FIRING, Suppression.SILENCED)]


def test_a_reloaded_group_keeps_the_state_of_the_rules_that_stayed(tmp_path: Path) -> None:
    r = GroupRunner(hot(tmp_path), lateness_s=0.0)
    first = r.ingest(_samples([95] * 3), {"p0": T0 + 2 * MIN}, 0.0).events
    assert [e.notify for e in first] == [NotifyReason.FIRST]
    (tmp_path / "v2").mkdir()
    assert r.reload(hot(tmp_path / "v2", 90)).events == ()  # HotCPU kept: no resolution
    assert r.ingest(_samples([95] * 2, 3), {"p0": T0 + 4 * MIN}, 0.0).events == ()  # not notified again
    out = r.ingest(_samples([85], 5), {"p0": T0 + 5 * MIN}, 0.0).events  # 85 < the new 90
    assert [(e.state, e.notify, e.active_at) for e in out] == [
        (AlertState.RESOLVED, NotifyReason.RESOLVED, first[0].active_at)
    ]


def test_a_removed_rule_or_group_resolves_its_announced_firing_alerts_at_once(tmp_path: Path) -> None:
    g = hot(tmp_path)
    store = MemoryStore()
    fill(store, "cpu", [95])
    fill(store, "up", [0], instance="db2")
    state, _, evs = evaluate_group(g, GroupState(), T0, store, FACTORY)
    assert {e.alert_name for e in evs} == {"HotCPU", "Down"}
    only_down = load(
        tmp_path, "groups:\n  - name: db\n    rules:\n      - alert: Down\n        expr: up == 0\n", "d.yml"
    )
    kept, gone = carry_over(g, only_down, state, T0 + MIN)
    assert [(e.alert_name, e.state, e.notify, e.suppressed, e.at) for e in gone] == [
        ("HotCPU", AlertState.RESOLVED, NotifyReason.RESOLVED, None, T0 + MIN)
    ]
    assert [a.rule for a in kept.alerts.values()] == ["Down"] and all(
        a.index == 0 for a in kept.alerts.values()
    )
    _, retired = carry_over(g, None, state, T0 + MIN)
    assert sorted(e.alert_name for e in retired) == ["Down", "HotCPU"]
