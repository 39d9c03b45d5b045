"""One alert group's state machine: when to notify, with which alerts (Alertmanager's dispatcher
and its notification log's dedup, as a pure function; time is passed in, never read).

    state = state or GroupState.new(key, receiver, group_labels)   # key from route.group_key
    state, notes = step(state, events, now, timers)               # None state: forget the group
    wake = next_flush(state, timers)                               # when to call step(state, [], wake)

Timing, as Alertmanager's: the group's first notification goes out `group_wait` after its first
alert (at once when that alert already fired longer than group_wait ago, e.g. a backlog after an
outage); from then on the group is looked at every `group_interval` ("ticks" at
first_flush + k * group_interval), and a tick notifies when something changed since the last
notification: a new firing alert, or an alert resolved (always when the last firing one resolved;
otherwise when `Timers.send_resolved`). With nothing new and alerts still firing it re-sends
(`repeat=True`) at the first tick at least `repeat_interval` after the last notification.

Each notification carries every alert of the group (its newest event, firing or resolved);
senders of receivers that do not want resolved alerts drop those. After a tick, resolved alerts
leave the group (they were sent, or never needed to be), and a group without alerts is forgotten
(`step` returns None).

Only FIRING and RESOLVED events without `suppressed` take part (pending, silenced, inhibited and
never-announced resolves are recorded elsewhere but sent nowhere); an older event of an alert
never overwrites a newer one (replays, out-of-order partitions). A firing alert that becomes
muted (`is_muted`: the evaluation's record that a silence began while it fired) leaves the group
until its release arrives.

Where we differ from Alertmanager: ticks are exact (no timer drift), so a repeat goes out at the
first tick at or after last notification + repeat_interval (Alertmanager's is usually one tick
later); `send_resolved` is per group (set it from the receiver: `ReceiverConfig.send_resolved`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from rules.model import AlertEvent, AlertState, Suppression
from rules.routing.types import GroupNotification


@dataclass(frozen=True, slots=True)
class Timers:
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    send_resolved: bool = True  # a resolve alone (some alerts still firing) is worth a notification


@dataclass(frozen=True, slots=True)
class GroupState:
    """What one group remembers between steps (small and picklable: it is snapshotted)."""

    group_key: str
    receiver: str
    group_labels: tuple[tuple[str, str], ...]
    alerts: tuple[AlertEvent, ...] = ()  # newest event per alert, sorted by fingerprint
    first_seen: float | None = None  # when its first alert arrived
    next_tick: float | None = None  # when it is next looked at (first: first_seen + group_wait)
    notified_at: float | None = None  # last notification sent
    sent: tuple[tuple[str, AlertState], ...] = ()  # per alert of the last notification: the state sent

    @staticmethod
    def new(group_key: str, receiver: str, group_labels: tuple[tuple[str, str], ...]) -> GroupState:
        return GroupState(group_key, receiver, group_labels)


def _relevant(e: AlertEvent) -> bool:
    return e.suppressed is None and e.state in (AlertState.FIRING, AlertState.RESOLVED)


_MUTING = frozenset({Suppression.SILENCED, Suppression.MAINTENANCE, Suppression.INHIBITED})


def is_muted(e: AlertEvent) -> bool:
    """A firing alert's record saying it is muted from now on (a silence, maintenance window or
    inhibition began while it fired): it leaves its groups, so they stop re-sending it (an
    Alertmanager receiver lets it expire) until its release, an unsuppressed FIRING, brings it back."""
    return e.state is AlertState.FIRING and e.suppressed in _MUTING


def _merge(alerts: tuple[AlertEvent, ...], events: Iterable[AlertEvent]) -> tuple[AlertEvent, ...]:
    by_fp = {a.fingerprint: a for a in alerts}
    for e in events:
        old = by_fp.get(e.fingerprint)
        if old is None or e.at >= old.at:  # equal times: the later-read event wins
            by_fp[e.fingerprint] = e
    return tuple(by_fp[fp] for fp in sorted(by_fp))


def _needs_update(state: GroupState, send_resolved: bool) -> bool:
    """Alertmanager's DedupStage.needsUpdate, minus the repeat case."""
    firing = {a.fingerprint for a in state.alerts if a.state is AlertState.FIRING}
    resolved = {a.fingerprint for a in state.alerts if a.state is AlertState.RESOLVED}
    if state.notified_at is None:
        return bool(firing)  # never told the receiver anything: resolves alone are no news
    sent_firing = {fp for fp, s in state.sent if s is AlertState.FIRING}
    sent_resolved = {fp for fp, s in state.sent if s is AlertState.RESOLVED}
    if not firing <= sent_firing:
        return True
    if not firing:
        return bool(sent_firing)  # the last firing alerts resolved: always say so
    return send_resolved and not resolved <= sent_resolved


def _repeat_due(state: GroupState, at: float, timers: Timers) -> bool:
    return (
        state.notified_at is not None
        and any(a.state is AlertState.FIRING for a in state.alerts)
        and at - state.notified_at >= timers.repeat_interval
    )


def step(
    state: GroupState, events: Iterable[AlertEvent], now: float, timers: Timers
) -> tuple[GroupState | None, list[GroupNotification]]:
    """Take `events` (for this group, arrived at `now`) in, and flush if a tick is due at `now`.

    Returns the new state (None: the group is empty and forgotten) and the notifications. A tick
    that passed before `now` (a late call) is taken first, without the events that arrive only
    now; several passed ticks collapse into one, at the latest of them.
    """
    notes: list[GroupNotification] = []
    events = list(events)
    muted = {e.fingerprint: e.at for e in events if is_muted(e)}
    new = [e for e in events if _relevant(e) and muted.get(e.fingerprint, -math.inf) <= e.at]
    if state.next_tick is not None and now > state.next_tick:
        at = _latest_tick(state.next_tick, now, timers)
        if at < now or not new:
            flushed, notes = _flush(state, at, timers)
            state = flushed or GroupState.new(state.group_key, state.receiver, state.group_labels)
    if muted:
        kept = tuple(a for a in state.alerts if muted.get(a.fingerprint, -math.inf) < a.at)
        state = replace(state, alerts=kept)
    if new:
        state = replace(state, alerts=_merge(state.alerts, new))
    if not state.alerts:
        return None, notes
    if state.first_seen is None:
        started = min((e.fired_at if e.fired_at is not None else e.at) for e in new) if new else now
        # an alert that started long ago (a backlog) need not wait: Alertmanager flushes at once
        due = now if started + timers.group_wait <= now else now + timers.group_wait
        state = replace(state, first_seen=now, next_tick=due)
    assert state.next_tick is not None  # set with first_seen
    if now < state.next_tick:
        return state, notes
    flushed, more = _flush(state, _latest_tick(state.next_tick, now, timers), timers)
    return flushed, notes + more


def _latest_tick(first: float, now: float, timers: Timers) -> float:
    interval = max(timers.group_interval, 1e-9)
    return first + math.floor((now - first) / interval) * interval


def _flush(state: GroupState, at: float, timers: Timers) -> tuple[GroupState | None, list[GroupNotification]]:
    """The tick at `at`: notify if needed, drop resolved alerts, schedule the next tick."""
    notes: list[GroupNotification] = []
    changed = _needs_update(state, timers.send_resolved)
    if changed or _repeat_due(state, at, timers):
        notes.append(GroupNotification(state.receiver, state.group_key, state.group_labels, state.alerts, at,
                                       repeat=not changed))  # fmt: skip
        state = replace(state, notified_at=at, sent=tuple((a.fingerprint, a.state) for a in state.alerts))
    remaining = tuple(a for a in state.alerts if a.state is not AlertState.RESOLVED)
    if not remaining:
        return None, notes
    return replace(state, alerts=remaining, next_tick=at + max(timers.group_interval, 1e-9)), notes


def next_flush(state: GroupState | None, timers: Timers) -> float | None:
    """When `step(state, [], t)` would next do something (notify or drop resolved alerts); None:
    never without new events."""
    if state is None or state.next_tick is None or not state.alerts:
        return None
    tick = state.next_tick
    if _needs_update(state, timers.send_resolved) or any(
        a.state is AlertState.RESOLVED for a in state.alerts
    ):
        return tick
    if state.notified_at is None:
        return None  # unreachable: unsent firing alerts are an update
    due = state.notified_at + timers.repeat_interval
    if due <= tick:
        return tick
    interval = max(timers.group_interval, 1e-9)
    return tick + math.ceil((due - tick) / interval) * interval
