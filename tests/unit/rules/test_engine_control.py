"""The engine and the control plane (issue 13): live silences by event time, holding ticks until
the control input caught up, and rule reload without a restart."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from rules.alert import AlertInstance
from rules.control.events import SilenceEvent
from rules.engine import ShardEngine
from rules.loader import load_rules
from rules.metric import Metric
from rules.model import (
    AlertEvent,
    AlertState,
    Matcher,
    NotifyReason,
    RulesError,
    RuleSet,
    Silence,
    Suppression,
)
from rules.suppress import Silences

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z, a tick of every interval below
MIN = 60.0

RULES = """
settings: {evaluation_interval: 1m, allowed_lateness: 30s, staleness: 5m}
alert_rules:
  - name: HotCPU
    metric: cpu
    condition: {operator: ">", threshold: 80, duration: 0s, aggregation: last}
    window: 1m
    severity: warning
    repeat_interval: 10m
  - name: FullDisk
    metric: disk
    condition: {operator: ">", threshold: 90, duration: 0s, aggregation: last}
    window: 1m
    severity: warning
"""


@pytest.fixture()
def rules(tmp_path) -> RuleSet:
    return load(tmp_path, RULES)


def load(tmp_path, text: str, name: str = "rules.yml") -> RuleSet:
    path = tmp_path / name
    path.write_text(text)
    return load_rules([path])


def samples(
    instance: str, metric: str, values: list[float], t0: float = T0, step: float = 15.0
) -> list[Metric]:
    return [
        Metric(t0 + i * step, "postgresql", instance, metric, v, {"env": "prod"})
        for i, v in enumerate(values)
    ]


def silence(
    starts: float,
    ends: float,
    *,
    instance: str = "db1",
    maintenance: bool = False,
    id: str = "s1",
    updated=None,
) -> SilenceEvent:
    return SilenceEvent(
        id=id,
        matchers=(Matcher("instance_id", instance),),
        starts_at=starts,
        ends_at=ends,
        created_by="alice",
        comment="CHG-1",
        updated_at=starts if updated is None else updated,
        maintenance=maintenance,
    )


def run(eng: ShardEngine, metrics: list[Metric]) -> list[AlertEvent]:
    return eng.ingest(metrics) + eng.flush()


def hot(minutes: int, instance: str = "db1") -> list[Metric]:
    return samples(instance, "cpu", [95.0] * (minutes * 4))


def of(events: list[AlertEvent], name: str = "HotCPU") -> list[AlertEvent]:
    return [e for e in events if e.alert_name == name]


def notified(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.notify is not None and e.suppressed is None]


# --------------------------------------------------------------------------- live silences


def test_a_silence_mutes_an_announced_firing_alert_at_its_first_tick_and_records_it_once(rules) -> None:
    eng = ShardEngine(rules)
    before = eng.ingest(hot(10)[:20])  # fires at T0, announced
    assert [(e.state, e.notify, e.suppressed) for e in of(before)] == [
        (AlertState.FIRING, NotifyReason.FIRST, None)
    ]
    eng.apply_control(silence(T0 + 6 * MIN, T0 + 60 * MIN))
    after = eng.ingest(hot(10)[20:]) + eng.flush()
    muted = [e for e in of(after) if e.suppressed is Suppression.SILENCED and e.notify is None]
    assert len(muted) == 1
    m = muted[0]
    assert m.state is AlertState.FIRING and m.at == T0 + 6 * MIN  # the first tick in the silence
    assert m.active_at == before[0].active_at and m.fingerprint == before[0].fingerprint
    assert m.message_id not in {e.message_id for e in before}  # its own record in the history
    assert notified(after) == []


def test_repeats_while_muted_are_recorded_as_suppressed_and_never_sent(rules) -> None:
    eng = ShardEngine(rules)
    eng.apply_control(silence(T0 + 2 * MIN, T0 + 60 * MIN))
    events = of(run(eng, hot(35)))
    repeats = [e for e in events if e.notify is NotifyReason.REPEAT_ELAPSED]
    assert len(repeats) == 3  # 10, 20, 30 minutes
    assert all(e.suppressed is Suppression.SILENCED for e in repeats)
    assert [e.notify for e in notified(events)] == [NotifyReason.FIRST]


def test_the_expiry_of_a_silence_notifies_a_still_firing_alert_once(rules) -> None:
    eng = ShardEngine(rules)
    first = eng.ingest(hot(30)[:20])
    eng.apply_control(silence(T0 + 3 * MIN, T0 + 60 * MIN))
    middle = eng.ingest(hot(30)[20:30])  # evaluated up to 10:06
    # expired at 10:07:30 (the API sets ends_at to the expiry time): released at the next tick
    eng.apply_control(silence(T0 + 3 * MIN, T0 + 60 * MIN).expired(T0 + 7.5 * MIN))
    rest = eng.ingest(hot(30)[30:]) + eng.flush()
    assert [e.suppressed for e in of(middle)] == [Suppression.SILENCED]
    again = [e for e in notified(of(rest)) if e.notify is not NotifyReason.REPEAT_ELAPSED]
    assert [(e.notify, e.state, e.at) for e in again] == [
        (NotifyReason.UNSUPPRESSED, AlertState.FIRING, T0 + 8 * MIN)
    ]
    ids = {e.message_id for e in first + middle}
    assert again[0].message_id not in ids and again[0].active_at == first[0].active_at
    # after the release: repeats again on its own schedule (10 min after the re-notification)
    repeats = [e for e in of(rest) if e.notify is NotifyReason.REPEAT_ELAPSED]
    assert [e.at for e in repeats] == [T0 + 18 * MIN, T0 + 28 * MIN]
    assert all(e.suppressed is None for e in repeats)


def test_maintenance_windows_show_as_maintenance(rules) -> None:
    eng = ShardEngine(rules)
    eng.ingest(hot(10)[:8])
    eng.apply_control(silence(T0 + 3 * MIN, T0 + 60 * MIN, maintenance=True))
    events = of(eng.ingest(hot(10)[8:]) + eng.flush())
    assert [(e.notify, e.suppressed) for e in events] == [(None, Suppression.MAINTENANCE)]


def test_a_firing_that_starts_inside_a_silence_is_held_back_as_before(rules) -> None:
    eng = ShardEngine(rules)
    eng.apply_control(silence(T0 - MIN, T0 + 5 * MIN))
    events = of(run(eng, hot(10)))
    assert [(e.notify, e.suppressed) for e in events if e.notify] == [
        (NotifyReason.FIRST, Suppression.SILENCED),
        (NotifyReason.UNSUPPRESSED, None),  # at the silence's end, once
    ]
    assert [e.at for e in events if e.notify is NotifyReason.UNSUPPRESSED] == [T0 + 5 * MIN]


def test_the_resolution_of_a_muted_announced_alert_is_still_announced(rules) -> None:
    eng = ShardEngine(rules)
    data = samples("db1", "cpu", [95.0] * 40 + [10.0] * 20)
    eng.ingest(data[:20])
    eng.apply_control(silence(T0 + 6 * MIN, T0 + 60 * MIN))
    events = of(eng.ingest(data[20:]) + eng.flush())
    resolved = [e for e in events if e.state is AlertState.RESOLVED]
    assert (
        len(resolved) == 1 and resolved[0].suppressed is None and resolved[0].notify is NotifyReason.RESOLVED
    )
    assert [e for e in events if e.notify is NotifyReason.UNSUPPRESSED] == []


def test_a_silence_of_another_instance_changes_nothing(rules) -> None:
    plain = run(ShardEngine(rules), hot(20))
    eng = ShardEngine(rules)
    eng.apply_control(silence(T0, T0 + 3600, instance="db9"))
    assert run(eng, hot(20)) == plain


def test_same_silences_same_events_whenever_they_arrive(rules) -> None:
    """Deterministic by event time: a backtest that knows every silence up front (their final
    versions) and a live job that learns of them as they happen give the same events."""
    data = sorted(hot(40) + hot(40, "db2") + samples("db1", "disk", [95.0] * 160), key=lambda m: m.ts)
    s1 = silence(T0 + 5 * MIN, T0 + 60 * MIN)
    s1_expired = s1.expired(T0 + 12.25 * MIN)
    s2 = silence(T0 + 20 * MIN, T0 + 25 * MIN, instance="db2", maintenance=True, id="s2")
    backtest = ShardEngine(rules)
    for e in (s2, s1_expired):  # any order: the fold keeps the newest version
        backtest.apply_control(e)
    want = run(backtest, data)
    live = ShardEngine(rules)
    out: list[AlertEvent] = []
    pending = [(T0 + 4 * MIN, s1), (T0 + 12.5 * MIN, s1_expired), (T0 + 19 * MIN, s2)]
    for m in data:
        while pending and pending[0][0] <= m.ts:  # control events arrive as wall time passes
            live.apply_control(pending.pop(0)[1])
        out += live.ingest([m])
    out += live.flush()
    order = lambda e: (e.instance_id, e.at, e.alert_name, e.message_id)  # noqa: E731
    assert sorted(out, key=order) == sorted(want, key=order)  # the same events (batched apart)
    shown = {(e.instance_id, e.alert_name, e.suppressed) for e in want if e.suppressed}
    assert shown == {
        ("db1", "HotCPU", Suppression.SILENCED),
        ("db1", "FullDisk", Suppression.SILENCED),
        ("db2", "HotCPU", Suppression.MAINTENANCE),
    }


def test_rule_file_silences_mute_announced_alerts_too(rules) -> None:
    sil = Silence((Matcher("instance_id", "db1"),), T0 + 3 * MIN, T0 + 6 * MIN, "window")
    events = of(run(ShardEngine(replace(rules, silences=(sil,))), hot(10)))
    assert [(e.notify, e.suppressed, e.at) for e in events] == [
        (NotifyReason.FIRST, None, T0),
        (None, Suppression.SILENCED, T0 + 3 * MIN),
        (NotifyReason.UNSUPPRESSED, None, T0 + 6 * MIN),
    ]


def test_no_silence_no_check(rules, monkeypatch) -> None:
    eng = ShardEngine(rules)

    def boom(*a: object) -> None:
        raise AssertionError("a silence check without any silence")

    monkeypatch.setattr(Silences, "match", boom)
    assert notified(run(eng, hot(30)))
    # an expired silence: ticks after its end are not checked either
    eng2 = ShardEngine(rules)
    eng2.apply_control(silence(T0 - 10 * MIN, T0 - 5 * MIN))
    assert notified(run(eng2, hot(30)))


# --------------------------------------------------------------------------- holding for the control plane


def test_ticks_wait_until_every_control_partition_caught_up(rules) -> None:
    backtest = ShardEngine(rules)
    backtest.apply_control(silence(T0 + 2 * MIN, T0 + 60 * MIN))
    want = run(backtest, hot(10))
    eng = ShardEngine(rules, live=True, await_control=True)
    assert eng.ingest(hot(10), 1000.0) == []  # buffered, no tick closed
    assert eng.advance_idle(2000.0) == []
    assert eng.control_caught_up("0-ctl", 2) == []  # one of two partitions
    eng.apply_control(silence(T0 + 2 * MIN, T0 + 60 * MIN))
    released = eng.control_caught_up("1-ctl", 2) + eng.flush()
    assert released == want
    # the silence known before any tick closed: the alert fired (announced) before it, then muted
    assert [e.suppressed for e in released if e.notify is None] == [Suppression.SILENCED]


def test_a_restart_never_notifies_what_a_silence_mutes(rules) -> None:
    first = ShardEngine(rules, live=True, await_control=True)
    first.control_caught_up("0-ctl", 1)
    first.apply_control(silence(T0 - MIN, T0 + 3600))
    assert notified(first.ingest(hot(10)[:20], 1000.0)) == []
    # restarted: the control topic is re-read before any tick closes
    second = ShardEngine(rules, live=True, await_control=True)
    second.restore(first.snapshot(), 1000.0)
    assert second.ingest(hot(10)[20:], 1001.0) == []
    second.apply_control(silence(T0 - MIN, T0 + 3600))
    assert notified(second.control_caught_up("0-ctl", 1) + second.flush()) == []


# --------------------------------------------------------------------------- reload


RELOADED = """
settings: {evaluation_interval: 1m, allowed_lateness: 30s, staleness: 5m}
alert_rules:
  - name: HotCPU
    metric: cpu
    condition: {operator: ">", threshold: 85, duration: 0s, aggregation: last}
    window: 1m
    severity: warning
    repeat_interval: 10m
  - name: WarmCPU
    metric: cpu
    condition: {operator: ">", threshold: 50, duration: 0s, aggregation: last}
    window: 1m
    severity: info
"""


def test_reload_keeps_the_state_of_kept_rules_and_adds_new_ones(rules, tmp_path) -> None:
    data = sorted(hot(20) + samples("db1", "disk", [95.0] * 80), key=lambda m: m.ts)
    eng = ShardEngine(rules)
    before = eng.ingest(data[:60])
    next_tick = eng.instances["db1"].evaluated_until + MIN
    fired = {e.alert_name: e for e in notified(before)}
    assert set(fired) == {"HotCPU", "FullDisk"}
    changed = eng.reload(load(tmp_path, RELOADED, "new.yml"))
    after = eng.ingest(data[60:]) + eng.flush()
    # FullDisk is gone: its announced incident is closed, at the last evaluated tick
    assert [(e.alert_name, e.state, e.notify, e.suppressed) for e in changed] == [
        ("FullDisk", AlertState.RESOLVED, NotifyReason.RESOLVED, None)
    ]
    assert changed[0].fingerprint == fired["FullDisk"].fingerprint
    # HotCPU (threshold changed, still above it) goes on: not notified again
    assert [e for e in of(after) if e.notify in (NotifyReason.FIRST, NotifyReason.UNSUPPRESSED)] == []
    assert {b.fp for b in eng.bindings() if b.rule.name == "HotCPU"} == {fired["HotCPU"].fingerprint}
    # the new rule fires from the next tick on, on the samples already buffered
    warm = [e for e in of(after, "WarmCPU") if e.state is AlertState.FIRING]
    assert len(warm) == 1 and warm[0].notify is NotifyReason.FIRST and warm[0].at == next_tick
    assert [e for e in after if e.alert_name == "FullDisk"] == []


def test_reload_resolves_a_kept_rule_whose_labels_changed(rules, tmp_path) -> None:
    eng = ShardEngine(rules)
    fired = notified(eng.ingest(hot(10)))
    relabeled = RULES.replace(
        "    repeat_interval: 10m\n", "    repeat_interval: 10m\n    labels: {team: dba}\n"
    )
    changed = eng.reload(load(tmp_path, relabeled, "new.yml"))
    assert [(e.alert_name, e.state, e.fingerprint) for e in changed] == [
        ("HotCPU", AlertState.RESOLVED, fired[0].fingerprint)
    ]
    refired = notified(eng.ingest(samples("db1", "cpu", [95.0] * 8, t0=T0 + 10 * MIN)) + eng.flush())
    assert [(e.state, dict(e.labels)["team"]) for e in refired] == [(AlertState.FIRING, "dba")]


def test_reload_refuses_settings_that_shape_ticks(rules, tmp_path) -> None:
    eng = ShardEngine(rules)
    with pytest.raises(RulesError, match="restart to apply"):
        eng.reload(
            load(tmp_path, RULES.replace("evaluation_interval: 1m", "evaluation_interval: 30s"), "n.yml")
        )
    assert eng.ruleset is rules
    # what can change live does (staleness, flapping)
    eng.reload(load(tmp_path, RULES.replace("staleness: 5m", "staleness: 10m"), "m.yml"))
    assert eng.ruleset.staleness_s == 600.0


def test_reload_then_snapshot_restore(rules, tmp_path) -> None:
    new = load(tmp_path, RELOADED, "new.yml")
    eng = ShardEngine(rules)
    eng.ingest(hot(10))
    eng.reload(new)
    again = ShardEngine(new)
    again.restore(eng.snapshot())
    assert notified(again.ingest(hot(20)[40:]) + again.flush()) == notified(
        eng.ingest(hot(20)[40:]) + eng.flush()
    )


# --------------------------------------------------------------------------- snapshots


class _PickledBeforeMuted:
    """Pickles as an AlertInstance did before `muted` existed (its state lacks the field)."""

    def __init__(self, inst: AlertInstance) -> None:
        self.state = [getattr(inst, f) for f in AlertInstance.__slots__ if f != "muted"]

    def __reduce__(self) -> tuple[object, ...]:
        return (object.__new__, (AlertInstance,), self.state)


def test_a_snapshot_from_before_muted_still_loads_and_goes_on(rules) -> None:
    whole = run(ShardEngine(rules), hot(30))
    first = ShardEngine(rules)
    part1 = first.ingest(hot(30)[:40])
    version, data = pickle.loads(first.snapshot())
    *_, alerts = data  # the not-INACTIVE alert instances of each series (snapshot version 2)
    for per_series in alerts.values():
        per_series.update({name: _PickledBeforeMuted(a) for name, a in per_series.items()})
    old_blob = pickle.dumps((version, data))
    second = ShardEngine(rules)
    second.restore(old_blob)
    assert all(b.inst.muted is None for b in second.bindings())
    part2 = second.ingest(hot(30)[40:]) + second.flush()
    assert [e.message_id for e in part1 + part2] == [e.message_id for e in whole]
    # ... and a silence applies to it as to any announced alert
    third = ShardEngine(rules)
    third.restore(old_blob)
    third.apply_control(silence(T0, T0 + 3600))
    assert [e.suppressed for e in third.ingest(hot(30)[40:]) if e.notify is None] == [Suppression.SILENCED]
