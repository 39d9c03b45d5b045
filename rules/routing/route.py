"""Which routes an alert takes, and which group it joins there (Alertmanager's dispatch/route.go).

    for m in match(cfg.route, labels):           # depth-first, `continue`, parent as default
        key, group_labels = group_key(m, labels)
        if not muted(m, cfg.time_intervals, now):
            ... group state keyed by `key`, timers `m.timers` (rules/routing/group.py)

Semantics, as Alertmanager's: a route matches when all its matchers do (a missing label is "");
its children are tried in order, and the first matching child without `continue: true` ends the
search; when no child matches, the route itself is the match. Children inherit receiver,
group_by and the three timers from their parent; time intervals are the route's own. Our
escalation (`escalate_after` + `escalate_to`) is inherited as a pair, like the timers: a child
that sets both replaces its parent's.

A route's id is Alertmanager's `Route.ID()`: the parent's id, `/`, the route's matchers
(`{severity="critical"}`), `/` and its index among its siblings; the root is `{}`. It is built
from the file, not from memory, so it is stable across restarts (and changes only when that part
of the tree is edited). The group key is `{route_id}:{group labels}`, as Alertmanager's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules.routing.config import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    GROUP_BY_ALL,
    Route,
    TimeInterval,
    matcher_string,
)
from rules.routing.escalation import Escalation
from rules.routing.group import Timers


@dataclass(frozen=True, slots=True)
class MatchedRoute:
    """A route an alert matched, with the settings it inherited from its ancestors."""

    route_id: str  # e.g. `{}/{severity="critical"}/0`
    receiver: str
    group_by: tuple[str, ...] | None  # None: every label (`...`)
    group_wait: float
    group_interval: float
    repeat_interval: float
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    escalation: Escalation | None = None

    @property
    def timers(self) -> Timers:
        return Timers(self.group_wait, self.group_interval, self.repeat_interval)


def _matchers_string(route: Route) -> str:
    return "{" + ",".join(matcher_string(m) for m in route.matchers) + "}"


def match(route: Route, labels: Mapping[str, str]) -> list[MatchedRoute]:
    """Every route the alert with `labels` is sent to, in the tree's order (empty: none matches,
    which only happens when the root is given matchers, which the loader refuses)."""
    root = MatchedRoute(
        route_id=_matchers_string(route),
        receiver=route.receiver or "",
        group_by=_group_by(route.group_by, ()),
        group_wait=DEFAULT_GROUP_WAIT if route.group_wait is None else route.group_wait,
        group_interval=DEFAULT_GROUP_INTERVAL if route.group_interval is None else route.group_interval,
        repeat_interval=DEFAULT_REPEAT_INTERVAL if route.repeat_interval is None else route.repeat_interval,
        mute_time_intervals=route.mute_time_intervals,
        active_time_intervals=route.active_time_intervals,
        escalation=_escalation(route, None),
    )
    return _match(route, root, labels) or []


def _escalation(route: Route, inherited: Escalation | None) -> Escalation | None:
    if route.escalate_after is None or route.escalate_to is None:
        return inherited
    return Escalation(route.escalate_after, route.escalate_to)


def _group_by(written: tuple[str, ...] | None, inherited: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if written is None:
        return inherited
    return None if written == (GROUP_BY_ALL,) else tuple(sorted(written))


def _child(parent: MatchedRoute, child: Route, index: int) -> MatchedRoute:
    return MatchedRoute(
        route_id=f"{parent.route_id}/{_matchers_string(child)}/{index}",
        receiver=child.receiver or parent.receiver,
        group_by=_group_by(child.group_by, parent.group_by),
        group_wait=parent.group_wait if child.group_wait is None else child.group_wait,
        group_interval=parent.group_interval if child.group_interval is None else child.group_interval,
        repeat_interval=parent.repeat_interval if child.repeat_interval is None else child.repeat_interval,
        mute_time_intervals=child.mute_time_intervals,
        active_time_intervals=child.active_time_intervals,
        escalation=_escalation(child, parent.escalation),
    )


def _match(route: Route, opts: MatchedRoute, labels: Mapping[str, str]) -> list[MatchedRoute] | None:
    if not all(m.matches(labels) for m in route.matchers):
        return None
    found: list[MatchedRoute] = []
    for i, child in enumerate(route.routes):
        got = _match(child, _child(opts, child, i), labels)
        if got:
            found.extend(got)
            if not child.continue_:
                break
    return found or [opts]


def group_key(matched: MatchedRoute, labels: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(group key, group labels): the alert's values of the route's group_by labels (only those it
    has; every label for `...`), and the key Alertmanager builds from them and the route id."""
    if matched.group_by is None:
        group = tuple(sorted(labels.items()))
    else:
        group = tuple((k, labels[k]) for k in matched.group_by if k in labels)
    text = ", ".join(f"{k}={_quote(v)}" for k, v in sorted(group))
    return f"{matched.route_id}:{{{text}}}", group


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def muted(matched: MatchedRoute, intervals: Mapping[str, TimeInterval], now: float) -> bool:
    """True when the route sends nothing at `now`: inside one of its mute_time_intervals, or outside
    all of its active_time_intervals (the loader checked every name exists)."""
    if any(intervals[n].contains(now) for n in matched.mute_time_intervals if n in intervals):
        return True
    active = [intervals[n] for n in matched.active_time_intervals if n in intervals]
    return bool(active) and not any(i.contains(now) for i in active)
