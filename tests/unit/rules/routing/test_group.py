"""rules/routing/group.py: Alertmanager's grouping timers and dedup as a pure state machine."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from rules.model import AlertEvent, AlertState, Suppression
from rules.routing.config import load_routing
from rules.routing.group import GroupState, Timers, next_flush, step
from rules.routing.route import group_key, match
from rules.routing.types import GroupNotification, GroupStatus
from tests.support.events import T0, alert_event, instance_labels

TIMERS = Timers(group_wait=30.0, group_interval=300.0, repeat_interval=3600.0)


def fire(i: int, at: float) -> AlertEvent:
    labels = (("alertname", "HighCPU"), *instance_labels(f"db-{i}"))
    return alert_event(fingerprint=f"fp{i}", labels=labels, at=at, fired_at=at, active_at=at - 60)


def resolve(i: int, at: float) -> AlertEvent:
    e = fire(i, at)
    return alert_event(
        **{
            **{f: getattr(e, f) for f in e.__dataclass_fields__},
            "state": AlertState.RESOLVED,
            "resolved_at": at,
            "fired_at": at - 60,
        }
    )


def new_state() -> GroupState:
    return GroupState.new('{}:{alertname="HighCPU"}', "team", (("alertname", "HighCPU"),))


@dataclass
class Run:
    """Feed (time, events) in order; collect what each call notified."""

    timers: Timers = TIMERS

    def __call__(
        self, script: Sequence[tuple[float, Sequence[AlertEvent]]]
    ) -> tuple[GroupState | None, list]:
        state: GroupState | None = None
        out: list[tuple[float, list[GroupNotification]]] = []
        for now, events in script:
            state, notes = step(state or new_state(), events, now, self.timers)
            if notes:
                out.append((now, notes))
        return state, out


def summary(notes: list[tuple[float, list[GroupNotification]]]) -> list[tuple[float, str, int, int, bool]]:
    return [
        (n.at - T0, n.status.value, len(n.firing), len(n.resolved), n.repeat) for _, ns in notes for n in ns
    ]


def test_five_instances_one_notification_then_one_resolve() -> None:
    """The outage of five instances with group_by [alertname]: ONE notification, then ONE resolve."""
    cfg = load_routing("route: {receiver: team, group_by: [alertname]}\nreceivers: [{name: team}]")
    events = [fire(i, T0 + i) for i in range(5)]
    keys = {group_key(m, dict(e.labels)) for e in events for m in match(cfg.route, dict(e.labels))}
    assert len(keys) == 1  # one group
    script = [(T0 + i, [e]) for i, e in enumerate(events)]
    script += [
        (T0 + 30, []),
        (T0 + 600, [resolve(i, T0 + 600 + i) for i in range(5)]),
        (T0 + 630, []),
        (T0 + 930, []),
    ]
    state, notes = Run()(script)
    assert summary(notes) == [(30, "firing", 5, 0, False), (630, "resolved", 0, 5, False)]
    assert state is None  # all resolved and sent: the group is forgotten
    first = notes[0][1][0]
    assert first.receiver == "team" and first.group_labels == (("alertname", "HighCPU"),)
    assert first.message_id != notes[1][1][0].message_id


CASES = [
    # (name, script as (seconds after T0, events), expected (at, status, firing, resolved, repeat))
    ("nothing before group_wait", [(0, [fire(1, T0)]), (29, [])], []),
    ("first after group_wait", [(0, [fire(1, T0)]), (30, [])], [(30, "firing", 1, 0, False)]),
    (
        "late call: flushes once, at the due tick",
        [(0, [fire(1, T0)]), (100, [])],
        [(30, "firing", 1, 0, False)],
    ),
    (
        "new alert waits for the next group_interval tick",
        [(0, [fire(1, T0)]), (30, []), (40, [fire(2, T0 + 40)]), (329, []), (330, [])],
        [(30, "firing", 1, 0, False), (330, "firing", 2, 0, False)],
    ),
    (
        "nothing new: no notification at a tick",
        [(0, [fire(1, T0)]), (30, []), (330, []), (630, [])],
        [(30, "firing", 1, 0, False)],
    ),
    (
        "repeat after repeat_interval, on a tick",
        [(0, [fire(1, T0)]), (30, []), (3629, []), (3630, []), (3930, [])],
        [(30, "firing", 1, 0, False), (3630, "firing", 1, 0, True)],
    ),
    (
        "partial resolve is sent (send_resolved), resolved alert then dropped",
        [(0, [fire(1, T0), fire(2, T0)]), (30, []), (100, [resolve(1, T0 + 100)]), (330, []), (630, [])],
        [(30, "firing", 2, 0, False), (330, "firing", 1, 1, False)],
    ),
    (
        "fired and resolved before group_wait: nothing sent",
        [(0, [fire(1, T0)]), (10, [resolve(1, T0 + 10)]), (30, [])],
        [],
    ),
    (
        "alert from a backlog (started long ago) flushes at once",
        [(0, [fire(1, T0 - 3600)])],
        [(0, "firing", 1, 0, False)],
    ),
    (
        "pending and suppressed events are ignored",
        [
            (
                0,
                [
                    alert_event(state=AlertState.PENDING, at=T0),
                    alert_event(at=T0, suppressed=Suppression.SILENCED),
                ],
            ),
            (30, []),
        ],
        [],
    ),
    (
        "an older event never overwrites a newer one",
        [(0, [fire(1, T0)]), (30, []), (100, [resolve(1, T0 + 100), fire(1, T0 + 50)]), (330, [])],
        [(30, "firing", 1, 0, False), (330, "resolved", 0, 1, False)],
    ),
]


@pytest.mark.parametrize(("name", "script", "expected"), CASES, ids=[c[0] for c in CASES])
def test_timing(name: str, script: list, expected: list) -> None:
    _, notes = Run()([(T0 + t, ev) for t, ev in script])
    assert summary(notes) == expected


def test_without_send_resolved_a_partial_resolve_waits_but_the_last_resolve_is_sent() -> None:
    timers = Timers(30.0, 300.0, 3600.0, send_resolved=False)
    script = [
        (0, [fire(1, T0), fire(2, T0)]),
        (30, []),
        (100, [resolve(1, T0 + 100)]),
        (330, []),
        (400, [resolve(2, T0 + 400)]),
        (630, []),
    ]
    state, notes = Run(timers)([(T0 + t, ev) for t, ev in script])
    assert summary(notes) == [(30, "firing", 2, 0, False), (630, "resolved", 0, 1, False)]
    assert state is None


def test_next_flush_tells_when_to_call_again() -> None:
    state: GroupState | None = new_state()
    assert state is not None
    state, _ = step(state, [fire(1, T0)], T0, TIMERS)
    assert next_flush(state, TIMERS) == T0 + 30
    assert state is not None
    state, _ = step(state, [], T0 + 30, TIMERS)
    assert next_flush(state, TIMERS) == T0 + 3630  # nothing new: the repeat tick
    assert state is not None
    state, _ = step(state, [fire(2, T0 + 40)], T0 + 40, TIMERS)
    assert next_flush(state, TIMERS) == T0 + 330  # something new: the next tick
    assert state is not None
    state, _ = step(state, [], T0 + 330, TIMERS)
    state, _ = step(state, [resolve(1, T0 + 400), resolve(2, T0 + 400)], T0 + 400, TIMERS)  # type: ignore[arg-type]
    assert next_flush(state, TIMERS) == T0 + 630
    state, notes = step(state, [], T0 + 630, TIMERS)  # type: ignore[arg-type]
    assert state is None and next_flush(state, TIMERS) is None and notes[0].status is GroupStatus.RESOLVED


def test_state_is_picklable_and_a_restored_state_behaves_the_same() -> None:
    state, _ = step(new_state(), [fire(i, T0) for i in range(5)], T0, TIMERS)
    assert state is not None
    restored = pickle.loads(pickle.dumps(state))
    assert restored == state
    assert step(restored, [], T0 + 30, TIMERS) == step(state, [], T0 + 30, TIMERS)
    assert len(pickle.dumps(state)) < 8000  # five alerts: small


def test_continue_sends_to_two_receivers_each_with_its_own_group() -> None:
    cfg = load_routing(
        "route:\n  receiver: default\n  group_by: [alertname]\n  routes:\n"
        "    - {matchers: [severity=critical], receiver: pager, continue: true, group_wait: 10s}\n"
        "    - {matchers: [severity=critical], receiver: chat}\n"
        "receivers: [{name: default}, {name: pager}, {name: chat}]"
    )
    e = alert_event(at=T0, fired_at=T0)
    states: dict[str, GroupState | None] = {}
    sent: list[GroupNotification] = []
    for now, events in [(T0, [e]), (T0 + 10, []), (T0 + 30, [])]:
        for m in match(cfg.route, dict(e.labels)):
            key, labels = group_key(m, dict(e.labels))
            st = states.get(key) or GroupState.new(key, m.receiver, labels)
            states[key], notes = step(st, events, now, m.timers)
            sent.extend(notes)
    assert [(n.receiver, n.at - T0) for n in sent] == [("pager", 10), ("chat", 30)]
    assert sent[0].group_key != sent[1].group_key


def test_group_by_all_labels_makes_one_group_per_label_set() -> None:
    cfg = load_routing("route: {receiver: r, group_by: ['...']}\nreceivers: [{name: r}]")
    events = [fire(i, T0) for i in range(3)] + [fire(0, T0 + 1)]
    keys = {group_key(m, dict(e.labels))[0] for e in events for m in match(cfg.route, dict(e.labels))}
    assert len(keys) == 3


def muted(i: int, at: float, why: Suppression = Suppression.SILENCED) -> AlertEvent:
    """The evaluation's record that a silence began while alert i fired (notify None)."""
    e = fire(i, at)
    return alert_event(
        **{**{f: getattr(e, f) for f in e.__dataclass_fields__}, "suppressed": why, "notify": None}
    )


def test_an_alert_muted_while_firing_leaves_the_group_until_its_release() -> None:
    run = Run(Timers(group_wait=30.0, group_interval=300.0, repeat_interval=600.0))
    _, notes = run(
        [
            (T0, [fire(1, T0), fire(2, T0)]),
            (T0 + 30, []),  # first flush: both firing
            (T0 + 100, [muted(2, T0 + 100)]),  # a silence began for fp2
            (T0 + 630, []),  # the repeat carries fp1 only
            (T0 + 700, [fire(2, T0 + 700)]),  # released: fires again (unsuppressed)
            (T0 + 930, []),  # the next tick tells the receiver
        ]
    )
    firing = [(now, sorted(a.fingerprint for a in n.firing)) for now, ns in notes for n in ns]
    assert firing == [(T0 + 30, ["fp1", "fp2"]), (T0 + 630, ["fp1"]), (T0 + 930, ["fp1", "fp2"])]


def test_a_muted_group_is_forgotten_and_an_older_event_does_not_bring_the_alert_back() -> None:
    state, notes = Run()(
        [(T0, [fire(1, T0)]), (T0 + 30, []), (T0 + 60, [muted(1, T0 + 60), fire(1, T0 + 50)])]
    )
    assert state is None  # nothing left to send: no repeats of a silenced alert
    assert [n.firing[0].fingerprint for _, ns in notes for n in ns] == ["fp1"]
