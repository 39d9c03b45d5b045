"""RoutedSink's partition: what it does with each outcome, resolved alerts and maintenance (fake senders)."""

from __future__ import annotations

from typing import Any

from connectors.notify.receivers import Outcome, OutcomeKind
from connectors.notify.routed import Part, _Partition
from rules.model import AlertState, NotifyReason
from rules.routing.types import GroupNotification
from tests.support.events import alert_event, instance_labels


class FakeSender:
    def __init__(self, outcomes: list[OutcomeKind]) -> None:
        self.name = "team"
        self.outcomes = outcomes
        self.sent: list[GroupNotification] = []

    def send(self, n: GroupNotification) -> Outcome:
        self.sent.append(n)
        kind = self.outcomes.pop(0) if self.outcomes else OutcomeKind.DELIVERED
        return Outcome(kind, self.name, 1, "" if kind is OutcomeKind.DELIVERED else "boom")

    def close(self) -> None:
        pass


def group(*states: AlertState) -> GroupNotification:
    alerts = tuple(
        alert_event(
            fingerprint=f"fp{i}",
            labels=instance_labels(f"db-{i}"),
            message_id=f"m{i}",
            state=s,
            notify=NotifyReason.RESOLVED if s is AlertState.RESOLVED else NotifyReason.FIRST,
        )
        for i, s in enumerate(states)
    )
    return GroupNotification("team", "{}:{}", (), alerts, 0.0)


def partition(sender: FakeSender, send_resolved: bool = True, **kw: Any) -> tuple[_Partition, list[Any]]:
    rejected: list[Any] = []
    sleeps: list[float] = []
    part = _Partition(
        {"team": [Part(sender, send_resolved)]}, lambda *a: rejected.append(a), sleep=sleeps.append, **kw
    )
    return part, rejected


def test_transient_failures_are_retried_until_delivered_and_rejections_dead_lettered() -> None:
    sender = FakeSender([OutcomeKind.RETRY_LATER, OutcomeKind.RETRY_LATER, OutcomeKind.DELIVERED])
    part, rejected = partition(sender)
    part.write_batch([group(AlertState.FIRING)])
    assert len(sender.sent) == 3 and part.delivered == 1 and rejected == []
    sender = FakeSender([OutcomeKind.REJECTED])
    part, rejected = partition(sender)
    part.write_batch([group(AlertState.FIRING, AlertState.FIRING)])
    assert [r[0].message_id for r in rejected] == ["m0", "m1"]  # each alert of the group, once


def test_a_receiver_without_send_resolved_gets_firing_alerts_only() -> None:
    sender = FakeSender([])
    part, _ = partition(sender, send_resolved=False)
    part.write_batch([group(AlertState.FIRING, AlertState.RESOLVED), group(AlertState.RESOLVED)])
    assert [[a.state for a in n.alerts] for n in sender.sent] == [[AlertState.FIRING]]


def test_alerts_of_instances_in_maintenance_are_left_out() -> None:
    sender = FakeSender([])
    part, _ = partition(sender, is_muted=lambda alerts: [a.instance_id == "db-0" for a in alerts])
    part.write_batch([group(AlertState.FIRING, AlertState.FIRING), group(AlertState.FIRING)])
    assert [[a.instance_id for a in n.alerts] for n in sender.sent] == [["db-1"]]
    assert part.muted == 2


def test_a_receiver_outage_leaves_the_flow_live_and_unready_until_it_delivers() -> None:
    from connectors.ops.health import Health

    health = Health()
    states: list[tuple[bool, bool]] = []
    sender = FakeSender([OutcomeKind.RETRY_LATER])
    part, _ = partition(sender, flow="notify")
    import connectors.notify.routed as routed

    real, routed.HEALTH = routed.HEALTH, health  # the module's process-wide health, swapped for this test
    try:
        part.sleep = lambda _s: states.append(health.report()[:2])
        part.write_batch([group(AlertState.FIRING)])
    finally:
        routed.HEALTH = real
    assert states == [(True, False)]  # live (no restart loop), not ready, while it waits
    _live, _ready, details = health.report()
    assert details["flows"]["notify"]["blocked"] is None  # delivered: unblocked


def test_input_waiting_behind_a_declared_outage_is_not_a_stuck_worker() -> None:
    from connectors.ops.health import Health

    now = [1000.0]
    health = Health(
        clock=lambda: now[0], stale_s=900, ready_stall_s=60, lags=lambda: {("notify", "alerts", 0): 50}
    )
    health.input("notify", "alerts", 0, consumed=10, lag=50)
    now[0] += 1000  # long past stale_s with input waiting
    health.alive("notify")
    assert health.report()[:2] == (False, False)  # stuck: restart it
    health.block("notify", "receiver team unavailable")
    assert health.report()[:2] == (True, False)  # waiting for a receiver: keep it, not ready
