"""The records the delivery subsystem passes around: what a receiver is sent, and how it went.

Shared by the routing/grouping logic (rules/routing/), the payload builders and the senders
(connectors/notify/receivers/) and the delivery flow (flows/notify.py), so each can be built
and tested on its own.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rules.model import AlertEvent, AlertState


class GroupStatus(enum.Enum):
    FIRING = "firing"  # at least one alert of the group fires
    RESOLVED = "resolved"  # every alert of the group resolved


@dataclass(frozen=True, slots=True)
class GroupNotification:
    """One message for one receiver: the alerts of one group at one flush (Alertmanager's
    "notification"). `alerts` holds each alert's newest transition (firing or resolved)."""

    receiver: str  # the receiver's name in the configuration
    group_key: str  # stable across restarts: route path + group labels
    group_labels: tuple[tuple[str, str], ...]
    alerts: tuple[AlertEvent, ...]
    at: float  # flush time (Unix seconds)
    repeat: bool = False  # re-sent after repeat_interval with nothing new
    escalated: bool = False  # sent to a route's escalate_to: nobody acknowledged in time

    @property
    def status(self) -> GroupStatus:
        if any(a.state is AlertState.FIRING for a in self.alerts):
            return GroupStatus.FIRING
        return GroupStatus.RESOLVED

    @property
    def firing(self) -> tuple[AlertEvent, ...]:
        return tuple(a for a in self.alerts if a.state is AlertState.FIRING)

    @property
    def resolved(self) -> tuple[AlertEvent, ...]:
        return tuple(a for a in self.alerts if a.state is AlertState.RESOLVED)

    @property
    def common_labels(self) -> dict[str, str]:
        return _common(dict(a.labels) for a in self.alerts)

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common(dict(a.annotations) for a in self.alerts)

    @property
    def message_id(self) -> str:
        """Same group, same alerts in the same states: same id (a replay or retry re-posts it).
        An escalation is one per incident: its id does not depend on when it went out."""
        parts = sorted(f"{a.fingerprint}|{a.state.value}|{a.active_at!r}" for a in self.alerts)
        text = "\x00".join([self.receiver, self.group_key, str(self.repeat and self.at), *parts])
        if self.escalated:  # only then: the ids of every other notification stay as they were
            text += "\x00escalated"
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _common(maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    it = iter(maps)
    first = next(it, None)
    if first is None:
        return {}
    common = dict(first)
    for m in it:
        common = {k: v for k, v in common.items() if m.get(k) == v}
    return common
