"""Escalation of unacknowledged alerts, per group (pure: time is passed in, never read).

A route with `escalate_after` + `escalate_to` (rules/routing/config.py) sends ONE extra
notification per incident to `escalate_to` when an alert of the group has been firing (since
its `fired_at`) for `escalate_after` without an acknowledgement:

    esc = take_acks(esc, acks)                                   # AckEvents routed to this group
    esc, notes = escalate(esc, group, events, now, policy, start) # after the group's own step
    wake = next_escalation(esc, group, policy, start)             # earliest pending deadline

An incident is (fingerprint, active_at): an ack names it, so a new incident of the same alert
is not acknowledged and starts over. An ack before the deadline prevents the escalation; a
withdrawn ack re-arms it (escalated at once when the deadline has passed); an ack after the
escalation changes nothing (it was sent). A resolve cancels a pending escalation, and the
resolve of an escalated incident is sent to `escalate_to` too (flagged), so the receiver that
was paged also hears the end (its `send_resolved` decides, as for any notification).

`start` is the control plane as read at start-up (every ack on the control topic then): acks
present when a job (re)starts are known before any deadline is looked at, so a restart does not
escalate an alert acknowledged while the job was down. Of the two views of an alert's ack (the
routed AckEvents this state holds, and `start`) the newer one (by the ack's `at`) counts.

The state is small and snapshotted with the group: which incidents were escalated (a restart or
a replay never escalates twice; the notification's `message_id` is deterministic per incident
as well, so receivers deduplicate a re-sent one), and the newest ack per alert of the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from rules.control.events import AckEvent
from rules.model import AlertEvent, AlertState
from rules.routing.group import GroupState
from rules.routing.types import GroupNotification


@dataclass(frozen=True, slots=True)
class Escalation:
    """A route's escalation policy: notify receiver `to` after `after` seconds unacknowledged."""

    after: float
    to: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The newest acknowledgement (or withdrawal) of an alert, as much as escalation needs."""

    fingerprint: str
    active_at: float  # the incident it names
    acked: bool
    at: float  # when it was given: the newer of two views wins

    @staticmethod
    def of(event: AckEvent) -> Ack:
        return Ack(event.fingerprint, event.active_at, event.acked, event.at)


@dataclass(frozen=True, slots=True)
class EscalationState:
    """What a group remembers for escalation (snapshotted with the group)."""

    acks: tuple[Ack, ...] = ()  # newest per fingerprint, sorted by fingerprint
    escalated: tuple[tuple[str, float, str], ...] = ()  # (fingerprint, active_at, receiver) sent


def take_acks(state: EscalationState, acks: Iterable[AckEvent]) -> EscalationState:
    """Remember the newest ack per alert; an older one (a replay of the topic) changes nothing."""
    by_fp = {a.fingerprint: a for a in state.acks}
    changed = False
    for event in acks:
        old = by_fp.get(event.fingerprint)
        if old is None or event.at >= old.at:
            by_fp[event.fingerprint] = Ack.of(event)
            changed = True
    if not changed:
        return state
    return replace(state, acks=tuple(by_fp[fp] for fp in sorted(by_fp)))


def acked(state: EscalationState, alert: AlertEvent, start: Mapping[str, AckEvent]) -> bool:
    """Whether the alert's current incident is acknowledged (newest view of the two)."""
    mine = next((a for a in state.acks if a.fingerprint == alert.fingerprint), None)
    given = start.get(alert.fingerprint)
    newest = mine
    if given is not None and (mine is None or given.at > mine.at):
        newest = Ack.of(given)
    return newest is not None and newest.acked and newest.active_at == alert.active_at


def deadline(alert: AlertEvent, policy: Escalation) -> float:
    """When an unacknowledged firing alert escalates: `escalate_after` after it fired."""
    fired = alert.fired_at if alert.fired_at is not None else alert.active_at
    return fired + policy.after


def _firing(group: GroupState | None) -> tuple[AlertEvent, ...]:
    if group is None:
        return ()
    return tuple(a for a in group.alerts if a.state is AlertState.FIRING)


def _note(group_key: str, group_labels: tuple[tuple[str, str], ...], to: str, alert: AlertEvent,
          now: float) -> GroupNotification:  # fmt: skip
    return GroupNotification(to, group_key, group_labels, (alert,), now, escalated=True)


def escalate(
    state: EscalationState,
    group: GroupState | None,
    events: Iterable[AlertEvent],
    now: float,
    policy: Escalation | None,
    start: Mapping[str, AckEvent],
    *,
    group_key: str,
    group_labels: tuple[tuple[str, str], ...],
) -> tuple[EscalationState, list[GroupNotification]]:
    """The escalations due at `now` and the resolves of escalated incidents among `events`.

    Call it after the group's own step (`group` is its new state, None: forgotten) with the
    events that step took in: they show the resolves, which the group may already have dropped.
    """
    notes: list[GroupNotification] = []
    escalated = {(fp, at): to for fp, at, to in state.escalated}
    for e in events:
        to = escalated.get((e.fingerprint, e.active_at))
        if to is not None and e.state is AlertState.RESOLVED and e.suppressed is None:
            notes.append(_note(group_key, group_labels, to, e, now))
            del escalated[(e.fingerprint, e.active_at)]
    firing = _firing(group)
    if policy is not None:
        for alert in firing:
            incident = (alert.fingerprint, alert.active_at)
            if incident in escalated or now < deadline(alert, policy) or acked(state, alert, start):
                continue
            notes.append(_note(group_key, group_labels, policy.to, alert, now))
            escalated[incident] = policy.to
    # forget what no longer matters: incidents that ended or were replaced, acks of departed alerts
    current = {(a.fingerprint, a.active_at) for a in firing}
    present = {a.fingerprint for a in group.alerts} if group is not None else set()
    new = EscalationState(
        acks=tuple(a for a in state.acks if a.fingerprint in present),
        escalated=tuple(sorted((fp, at, to) for (fp, at), to in escalated.items() if (fp, at) in current)),
    )
    return (state if new == state else new), notes


def next_escalation(
    state: EscalationState,
    group: GroupState | None,
    policy: Escalation | None,
    start: Mapping[str, AckEvent],
) -> float | None:
    """The earliest deadline of a firing, unacknowledged, not yet escalated incident (None: none)."""
    if policy is None:
        return None
    done = {(fp, at) for fp, at, _ in state.escalated}
    due = [
        deadline(a, policy)
        for a in _firing(group)
        if (a.fingerprint, a.active_at) not in done and not acked(state, a, start)
    ]
    return min(due, default=None)
