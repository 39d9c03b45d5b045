"""Silences and inhibition of alert transitions: the pure decisions that the seed engine
(`rules.engine`) and Prometheus rule groups (`rules.promql.group`) share, so an alert mutes,
repeats and comes back the same way whichever language its rule is written in.

A silence (rule-file `silences:` or the control plane's `SilenceEvent`, maintenance included)
mutes what happens at evaluation ticks in [starts, ends), by the tick's event time. After each
`rules.alert.step`:

- an announced firing alert that a silence starts to match is recorded once as MUTED (no
  notification: the receiver keeps the incident it was told about), `mute_id` being its id;
- a firing alert held back (never announced, or muted) is offered again as UNSUPPRESSED at every
  tick nothing matches any more, and announced if nothing else holds it back;
- a notification (FIRST, REPEAT, UNSUPPRESSED) is suppressed by the first matching silence, then
  by an inhibit rule whose source fires among `firing`, then by flapping;
- the RESOLVED of an announced alert is always announced; of a never-announced one, it is
  recorded `not_announced`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from rules.alert import AlertInstance, Change, ChangeKind, Policy, announce, mute, unannounced
from rules.control.events import EMPTY, ControlState
from rules.model import AlertState, InhibitRule, Matcher, Silence, Suppression

Mute = tuple[float, float, tuple[Matcher, ...], Suppression]
"""A silence as it is checked: [starts, ends), matchers, what it shows (silenced or maintenance)."""

STATE_OF = {
    ChangeKind.PENDING: AlertState.PENDING,
    ChangeKind.FIRING: AlertState.FIRING,
    ChangeKind.RESOLVED: AlertState.RESOLVED,
    ChangeKind.DROPPED: AlertState.INACTIVE,
    ChangeKind.REPEAT: AlertState.FIRING,
    ChangeKind.UNSUPPRESSED: AlertState.FIRING,
    ChangeKind.MUTED: AlertState.FIRING,
}
"""The state an event of each change shows."""


def message_id(fp: str, active_at: float, state: AlertState, repeat_seq: int = 0) -> str:
    """Same transition, same id: a replay or a restart can never post a new one."""
    text = f"{fp}|{active_at!r}|{state.value}|{repeat_seq}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def mute_id(fp: str, active_at: float, at: float) -> str:
    """The record that shows an announced alert muted: its own id (the alert history is
    idempotent on message_id), the same in every replay."""
    text = f"{fp}|{active_at!r}|muted|{at!r}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def event_id(fp: str, c: Change, active_at: float, cur: AlertInstance) -> str:
    """The message_id of the event of change `c` (`cur`: the instance after it)."""
    if c.kind is ChangeKind.MUTED:
        return mute_id(fp, active_at, c.at)
    repeat = c.kind is ChangeKind.REPEAT or c.kind is ChangeKind.UNSUPPRESSED
    return message_id(fp, active_at, STATE_OF[c.kind], cur.repeat_seq if repeat else 0)


@dataclass(frozen=True, slots=True)
class Silences:
    """Every silence in force, in a fixed order (rule file's first, then the control plane's
    by (starts_at, id)), so what a record shows never depends on arrival order."""

    mutes: tuple[Mute, ...] = ()
    # ticks outside [first start, last end) need no check at all
    span: tuple[float, float] = (math.inf, -math.inf)

    def covers(self, at: float) -> bool:
        return self.span[0] <= at < self.span[1]

    def match(self, labels: Mapping[str, str], at: float) -> Suppression | None:
        """What mutes an alert with `labels` at tick `at`: the first silence that matches.
        Callers ask `covers` first: most ticks are outside every silence."""
        for starts, ends, matchers, why in self.mutes:
            if starts <= at < ends and all(m.matches(labels) for m in matchers):
                return why
        return None


NO_SILENCES = Silences()


@dataclass(frozen=True, slots=True)
class Suppressor:
    """What can hold a notification back: the silences in force and the inhibit rules."""

    silences: Silences = NO_SILENCES
    inhibit_rules: tuple[InhibitRule, ...] = ()


NOTHING: Final = Suppressor()


def silences_of(file_silences: Iterable[Silence], control: ControlState = EMPTY) -> Silences:
    mutes: list[Mute] = [(s.starts, s.ends, s.matchers, Suppression.SILENCED) for s in file_silences]
    for sil in sorted(control.silences.values(), key=lambda e: (e.starts_at, e.id)):
        why = Suppression.MAINTENANCE if sil.maintenance else Suppression.SILENCED
        mutes.append((sil.starts_at, sil.ends_at, sil.matchers, why))
    if not mutes:
        return NO_SILENCES
    return Silences(tuple(mutes), (min(m[0] for m in mutes), max(m[1] for m in mutes)))


def inhibited(
    rules: Iterable[InhibitRule], labels: Mapping[str, str], firing: Iterable[Mapping[str, str]]
) -> bool:
    """Some firing source (never the alert itself: `labels` by identity) inhibits `labels`."""
    srcs: Sequence[Mapping[str, str]] | None = None
    for ih in rules:
        if not all(m.matches(labels) for m in ih.target):
            continue
        if srcs is None:
            srcs = list(firing)
        for src in srcs:
            if src is labels or not all(m.matches(src) for m in ih.source):
                continue
            if all(src.get(k) == labels.get(k) for k in ih.equal):
                return True
    return False


def suppression(
    c: Change,
    labels: Mapping[str, str],
    silences: Silences,
    inhibit_rules: Iterable[InhibitRule],
    firing: Iterable[Mapping[str, str]],
    *,
    flapping: bool = True,
) -> Suppression | None:
    """Why notification `c` of the alert with `labels` is held back, None when it goes out."""
    why = silences.match(labels, c.at) if silences.covers(c.at) else None
    if why is not None:
        return why
    if inhibited(inhibit_rules, labels, firing):
        return Suppression.INHIBITED
    if flapping and c.flapping:
        return Suppression.FLAPPING
    return None


def after_step(
    nxt: AlertInstance,
    changes: tuple[Change, ...],
    at: float,
    labels: Mapping[str, str],
    silences: Silences,
    policy: Policy,
) -> tuple[AlertInstance, list[Change]]:
    """`step`'s result with the silences' own changes: MUTED when a silence starts to match an
    announced firing alert, UNSUPPRESSED candidates while one is held back (module docstring)."""
    out: list[Change] = []
    why = None
    firing = nxt.state is AlertState.FIRING
    if firing and nxt.announced and (nxt.muted is not None or silences.covers(at)):
        why = silences.match(labels, at) if silences.covers(at) else None
        if why is not None and nxt.muted is None:
            nxt, c = mute(nxt, at, why)
            out.append(c)
    out.extend(changes)
    held = firing and (not nxt.announced or nxt.muted is not None)
    if held and not changes and why is None:
        # held back so far (silence, inhibition, flapping) or muted since it was announced:
        # announce (again) once that ends; `decide` says whether it still applies
        cand = unannounced(nxt, at, policy)
        if cand is not None:
            out.append(cand)
    return nxt, out


def decide(
    c: Change,
    prev: AlertInstance,
    cur: AlertInstance,
    labels: Mapping[str, str],
    silences: Silences,
    inhibit_rules: Iterable[InhibitRule],
    firing: Iterable[Mapping[str, str]],
    *,
    flapping: bool = True,
) -> tuple[AlertInstance, Suppression | None, bool]:
    """(instance after `c`'s notification, what its record shows as suppressed, whether to record
    it at all). `prev` is the instance before this tick's step, `cur` the one after."""
    if c.kind is ChangeKind.RESOLVED:
        # once announced, an incident's resolution is always announced; never announced, its
        # resolution closes nothing for a receiver
        return cur, None if prev.announced else Suppression.NOT_ANNOUNCED, True
    if c.notify is None:
        return cur, c.muted, True  # MUTED: why; PENDING, DROPPED: None
    why = suppression(c, labels, silences, inhibit_rules, firing, flapping=flapping)
    if why is None:
        return announce(cur, c), None, True
    # an UNSUPPRESSED candidate still held back: nothing happened worth a record
    return cur, why, c.kind is not ChangeKind.UNSUPPRESSED
