"""The alert state machine: one pure `step` per evaluation tick of one alert instance.

Follows Prometheus' rules/alerting.go: an instance becomes pending when its condition first
holds (`active_at` = that evaluation's time), fires once `now - active_at >= for`, a pending
instance whose condition breaks is dropped, a firing one resolves (after `keep_firing_for`).
On top of that (Alertmanager's job in Prometheus land) it tracks the repeat interval and
flapping, because both are decided from the same per-instance history.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from rules.model import AlertState, NotifyReason, Rule, Suppression

NAN = math.nan


class ChangeKind(enum.Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    DROPPED = "inactive"  # pending instance whose condition broke before `for`
    REPEAT = "repeat"  # still firing and the repeat interval elapsed
    UNSUPPRESSED = "unsuppressed"  # still firing, never announced (or muted): a candidate to announce now
    MUTED = "muted"  # announced and still firing, now muted by a silence: recorded, not notified


@dataclass(frozen=True, slots=True)
class AlertInstance:
    """Everything that must survive between evaluations of one (rule, series)."""

    state: AlertState = AlertState.INACTIVE
    active_at: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_since: float | None = None  # first false evaluation while firing (keep_firing_for)
    value: float = NAN
    last_sent_at: float = 0.0
    repeat_seq: int = 0
    fire_count: int = 0
    changes: tuple[float, ...] = ()  # recent fire/resolve times, for flapping detection
    # this incident's FIRING reached delivery (not silenced/inhibited/flapping): its RESOLVED
    # must be announced too, whatever mutes it by then
    announced: bool = False
    # announced, then a silence started to match it (recorded once as MUTED): what mutes it;
    # None once a notification went out again (the silence ended) or the incident resolved
    muted: Suppression | None = None


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    at: float
    notify: NotifyReason | None
    flapping: bool = False
    stale: bool = False
    muted: Suppression | None = None  # MUTED: the suppression the record shows


INACTIVE = AlertInstance()


@dataclass(frozen=True, slots=True)
class Policy:
    """RuleSet-wide knobs that `step` needs; kept apart so `step` stays cheap to call."""

    flap_window_s: float = 1800.0
    flap_threshold: int = 4


def _recent(changes: tuple[float, ...], now: float, window: float) -> tuple[float, ...]:
    return tuple(t for t in changes if now - t < window)


def step(
    inst: AlertInstance,
    holds: bool | None,
    value: float,
    now: float,
    rule: Rule,
    policy: Policy,
    *,
    stale: bool = False,
) -> tuple[AlertInstance, tuple[Change, ...]]:
    """Advance one alert instance to evaluation time `now`.

    `holds` is the condition's truth at `now`, or None when the window had no sample
    (no evidence either way: the state is kept until the series turns `stale`).
    """
    state = inst.state
    if stale and state in (AlertState.PENDING, AlertState.FIRING):
        if state is AlertState.PENDING:
            return INACTIVE, (Change(ChangeKind.DROPPED, now, None, stale=True),)
        return _resolve(inst, now, policy, stale=True)

    if holds:
        if state is AlertState.FIRING:
            nxt = replace(inst, value=value, keep_since=None)
            return _maybe_repeat(nxt, now, rule, policy)
        if state is AlertState.PENDING:
            nxt = replace(inst, value=value)
            if now - inst.active_at >= rule.for_s:
                return _fire(nxt, now, policy)
            return nxt, ()
        # inactive or resolved: a new incident starts
        nxt = AlertInstance(
            state=AlertState.PENDING,
            active_at=now,
            value=value,
            fire_count=inst.fire_count,
            changes=inst.changes,
        )
        if rule.for_s <= 0:
            return _fire(nxt, now, policy)
        return nxt, (Change(ChangeKind.PENDING, now, None),)

    if holds is None:
        if state is AlertState.FIRING:
            return _maybe_repeat(inst, now, rule, policy)
        return inst, ()

    # the condition is false
    if state is AlertState.PENDING:
        return _reset(inst), (Change(ChangeKind.DROPPED, now, None),)
    if state is AlertState.FIRING:
        # as Prometheus: keep_firing_for counts from the first evaluation that was false
        since = now if inst.keep_since is None else inst.keep_since
        if rule.keep_firing_for_s > 0 and now - since < rule.keep_firing_for_s:
            return _maybe_repeat(replace(inst, value=value, keep_since=since), now, rule, policy)
        return _resolve(replace(inst, value=value, keep_since=None), now, policy, stale=False)
    return inst, ()


def _reset(inst: AlertInstance) -> AlertInstance:
    """Back to inactive, keeping the history that outlives one incident."""
    return AlertInstance(fire_count=inst.fire_count, changes=inst.changes)


def _flapping(changes: tuple[float, ...], policy: Policy) -> bool:
    return len(changes) >= policy.flap_threshold


def _fire(inst: AlertInstance, now: float, policy: Policy) -> tuple[AlertInstance, tuple[Change, ...]]:
    changes = (*_recent(inst.changes, now, policy.flap_window_s), now)
    nxt = replace(
        inst,
        state=AlertState.FIRING,
        fired_at=now,
        resolved_at=None,
        last_sent_at=now,
        repeat_seq=0,
        fire_count=inst.fire_count + 1,
        changes=changes,
    )
    return nxt, (Change(ChangeKind.FIRING, now, NotifyReason.FIRST, _flapping(changes, policy)),)


def _resolve(
    inst: AlertInstance, now: float, policy: Policy, *, stale: bool
) -> tuple[AlertInstance, tuple[Change, ...]]:
    changes = (*_recent(inst.changes, now, policy.flap_window_s), now)
    nxt = replace(inst, state=AlertState.RESOLVED, resolved_at=now, changes=changes, muted=None)
    if stale:
        nxt = replace(nxt, value=NAN)
    return nxt, (Change(ChangeKind.RESOLVED, now, NotifyReason.RESOLVED, _flapping(changes, policy), stale),)


def _maybe_repeat(
    inst: AlertInstance, now: float, rule: Rule, policy: Policy
) -> tuple[AlertInstance, tuple[Change, ...]]:
    if rule.repeat_interval_s > 0 and now - inst.last_sent_at >= rule.repeat_interval_s:
        nxt = replace(inst, last_sent_at=now, repeat_seq=inst.repeat_seq + 1)
        flapping = _flapping(_recent(inst.changes, now, policy.flap_window_s), policy)
        return nxt, (Change(ChangeKind.REPEAT, now, NotifyReason.REPEAT_ELAPSED, flapping),)
    return inst, ()


def unannounced(inst: AlertInstance, now: float, policy: Policy) -> Change | None:
    """A firing instance whose FIRING was held back, or that a silence muted after it was
    announced: the candidate to announce it (again) at `now` (the caller decides whether what
    held it back still applies)."""
    if inst.state is not AlertState.FIRING or (inst.announced and inst.muted is None):
        return None
    flapping = _flapping(_recent(inst.changes, now, policy.flap_window_s), policy)
    return Change(ChangeKind.UNSUPPRESSED, now, NotifyReason.UNSUPPRESSED, flapping)


def announce(inst: AlertInstance, change: Change) -> AlertInstance:
    """The state once `change`'s notification went to delivery unsuppressed."""
    if change.kind is ChangeKind.UNSUPPRESSED:
        return replace(
            inst, announced=True, last_sent_at=change.at, repeat_seq=inst.repeat_seq + 1, muted=None
        )
    if change.kind is ChangeKind.FIRING or change.kind is ChangeKind.REPEAT:
        return replace(inst, announced=True, muted=None)
    return inst


def mute(inst: AlertInstance, now: float, why: Suppression) -> tuple[AlertInstance, Change]:
    """An announced, firing instance that a silence now matches: remember it, and the record
    that shows it muted (no notification: a receiver keeps the incident it was told about)."""
    return replace(inst, muted=why), Change(ChangeKind.MUTED, now, None, muted=why)


def is_active(inst: AlertInstance) -> bool:
    return inst.state is AlertState.PENDING or inst.state is AlertState.FIRING
