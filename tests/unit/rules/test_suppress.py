"""rules.suppress: the silence and inhibition decisions the seed engine and Prometheus rule groups
share (the order silences are checked in, muting once, releasing, what a record shows)."""

from __future__ import annotations

from dataclasses import replace

from rules.alert import AlertInstance, Change, ChangeKind, Policy
from rules.control.events import EMPTY, SilenceEvent, fold
from rules.model import AlertState, InhibitRule, Matcher, NotifyReason, Silence, Suppression
from rules.suppress import NO_SILENCES, after_step, decide, event_id, inhibited, mute_id, silences_of

DB1 = {"alertname": "HotCPU", "instance_id": "db1", "severity": "warning"}
FIRING = AlertInstance(state=AlertState.FIRING, active_at=0.0, fired_at=0.0, announced=True)


def sil(id: str, starts: float, ends: float, *, maintenance: bool = False) -> SilenceEvent:
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


def test_rule_file_silences_come_first_then_the_control_planes_by_start_and_id() -> None:
    control = fold(fold(EMPTY, sil("b", 10, 100, maintenance=True)), sil("a", 10, 100))
    s = silences_of([Silence((Matcher("instance_id", "db1"),), 50, 60)], control)
    assert s.span == (10, 100)
    assert s.match(DB1, 55) is Suppression.SILENCED  # the rule file's
    assert s.match(DB1, 20) is Suppression.SILENCED  # "a" before "b"
    assert silences_of([], fold(EMPTY, sil("b", 10, 100, maintenance=True))).match(DB1, 20) is (
        Suppression.MAINTENANCE
    )
    assert not s.covers(100) and s.covers(10)  # [starts, ends)
    assert silences_of([], EMPTY) is NO_SILENCES


def test_an_announced_firing_alert_is_muted_once_and_offered_again_when_the_silence_ends() -> None:
    s = silences_of([], fold(EMPTY, sil("a", 60, 180)))
    inst, shown = after_step(FIRING, (), 60, DB1, s, Policy())
    assert [c.kind for c in shown] == [ChangeKind.MUTED] and inst.muted is Suppression.SILENCED
    assert shown[0].muted is Suppression.SILENCED and shown[0].notify is None
    inst2, shown2 = after_step(inst, (), 120, DB1, s, Policy())  # still inside: nothing more
    assert shown2 == [] and inst2 is inst
    inst3, shown3 = after_step(inst2, (), 180, DB1, s, Policy())  # ended: the candidate
    assert [c.kind for c in shown3] == [ChangeKind.UNSUPPRESSED]
    released, why, record = decide(shown3[0], inst2, inst3, DB1, s, (), [])
    assert why is None and record and released.announced and released.muted is None


def test_a_held_back_candidate_is_no_record_and_a_resolution_shows_if_it_was_announced() -> None:
    s = silences_of([], fold(EMPTY, sil("a", 0, 1000)))
    held = replace(FIRING, announced=False)
    cand = Change(ChangeKind.UNSUPPRESSED, 60, NotifyReason.UNSUPPRESSED)
    assert decide(cand, held, held, DB1, s, (), [])[1:] == (Suppression.SILENCED, False)
    repeat = Change(ChangeKind.REPEAT, 60, NotifyReason.REPEAT_ELAPSED)
    assert decide(repeat, FIRING, FIRING, DB1, s, (), [])[1:] == (Suppression.SILENCED, True)
    resolved = Change(ChangeKind.RESOLVED, 60, NotifyReason.RESOLVED)
    assert decide(resolved, FIRING, FIRING, DB1, s, (), [])[1] is None  # announced: always
    assert decide(resolved, held, held, DB1, s, (), [])[1] is Suppression.NOT_ANNOUNCED


def test_inhibition_needs_another_firing_source_with_equal_labels() -> None:
    rule = InhibitRule(source=(Matcher("severity", "critical"),), target=(Matcher("severity", "warning"),))
    crit = {"alertname": "Down", "instance_id": "db1", "severity": "critical"}
    other = {"alertname": "Down", "instance_id": "db2", "severity": "critical"}
    assert inhibited([rule], DB1, [crit])
    assert not inhibited([rule], DB1, [other])
    assert not inhibited([rule], DB1, [DB1])  # never by itself
    first = Change(ChangeKind.FIRING, 0, NotifyReason.FIRST, flapping=True)
    assert decide(first, FIRING, FIRING, DB1, NO_SILENCES, [rule], [crit])[1] is Suppression.INHIBITED
    assert decide(first, FIRING, FIRING, DB1, NO_SILENCES, [], [])[1] is Suppression.FLAPPING
    assert decide(first, FIRING, FIRING, DB1, NO_SILENCES, [], [], flapping=False)[1] is None


def test_a_muted_record_has_its_own_id() -> None:
    c = Change(ChangeKind.MUTED, 60, None, muted=Suppression.SILENCED)
    assert event_id("fp", c, 0.0, FIRING) == mute_id("fp", 0.0, 60)
