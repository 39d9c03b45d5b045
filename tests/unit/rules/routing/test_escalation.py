"""rules/routing/escalation.py: one escalation per unacknowledged incident, as a pure function."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from rules.control.events import AckEvent
from rules.model import AlertEvent, AlertState
from rules.routing.escalation import (
    Escalation,
    EscalationState,
    escalate,
    next_escalation,
    take_acks,
)
from rules.routing.group import GroupState, Timers
from rules.routing.group import step as group_step
from rules.routing.payloads import (
    alertmanager_payload,
    notification_service_posts,
    title,
    webhook_payload,
)
from rules.routing.types import GroupNotification
from tests.support.events import T0, alert_event, instance_labels

POLICY = Escalation(after=600.0, to="pager")
TIMERS = Timers(group_wait=30.0, group_interval=300.0, repeat_interval=3600.0)
KEY = '{}:{alertname="HighCPU"}'
FIRED = T0 + 300  # fired_at of the events below: the deadline is FIRED + 600


def fire(i: int = 0, active_at: float = T0, fired_at: float = FIRED) -> AlertEvent:
    labels = (("alertname", "HighCPU"), *instance_labels(f"db-{i}"))
    return alert_event(
        fingerprint=f"fp{i}", labels=labels, at=fired_at, fired_at=fired_at, active_at=active_at
    )


def resolve(e: AlertEvent, at: float) -> AlertEvent:
    return replace(e, state=AlertState.RESOLVED, resolved_at=at, at=at)


def ack(e: AlertEvent, at: float, acked: bool = True, active_at: float | None = None) -> AckEvent:
    return AckEvent(e.fingerprint, e.active_at if active_at is None else active_at, acked, "alice", at,
                    labels=e.labels)  # fmt: skip


@dataclass
class Group:
    """A group and its escalation state, stepped as the delivery flow's GroupLogic does."""

    policy: Escalation | None = POLICY
    start: Mapping[str, AckEvent] = field(default_factory=dict)
    state: GroupState | None = None
    esc: EscalationState = field(default_factory=EscalationState)
    sent: list[GroupNotification] = field(default_factory=list)

    def step(self, now: float, events: Sequence[AlertEvent] = (), acks: Sequence[AckEvent] = ()) -> None:
        self.esc = take_acks(self.esc, acks)
        group = self.state or GroupState.new(KEY, "team", (("alertname", "HighCPU"),))
        self.state, notes = group_step(group, events, now, TIMERS)
        self.esc, more = escalate(self.esc, self.state, events, now, self.policy, self.start,
                                  group_key=KEY, group_labels=group.group_labels)  # fmt: skip
        self.sent += notes + more

    def wake(self) -> float | None:
        return next_escalation(self.esc, self.state, self.policy, self.start)

    @property
    def escalations(self) -> list[tuple[str, str, str]]:
        return [
            (n.receiver, a.fingerprint, a.state.value) for n in self.sent if n.escalated for a in n.alerts
        ]


def test_unacknowledged_alert_escalates_once_at_its_deadline() -> None:
    g = Group()
    g.step(FIRED + 1, [fire()])
    assert g.wake() == FIRED + 600  # the wake-up includes the deadline
    g.step(FIRED + 599)
    assert g.escalations == []
    g.step(FIRED + 600)
    assert g.escalations == [("pager", "fp0", "firing")]
    n = next(n for n in g.sent if n.escalated)
    assert (n.group_key, n.alerts[0].fingerprint) == (KEY, "fp0")
    assert g.wake() is None
    g.step(FIRED + 5000)  # later steps (ticks, repeats) never escalate it again
    assert g.escalations == [("pager", "fp0", "firing")]
    assert [n.receiver for n in g.sent if not n.escalated] == ["team", "team"]  # first + repeat


def test_ack_before_the_deadline_prevents_it_and_after_changes_nothing() -> None:
    g = Group()
    e = fire()
    g.step(FIRED + 1, [e])
    g.step(FIRED + 100, acks=[ack(e, FIRED + 100)])
    assert g.wake() is None
    g.step(FIRED + 10_000)
    assert g.escalations == []

    late = Group()
    late.step(FIRED + 1, [e])
    late.step(FIRED + 700)
    late.step(FIRED + 800, acks=[ack(e, FIRED + 800)])
    assert late.escalations == [("pager", "fp0", "firing")]


def test_withdrawn_ack_rearms_and_escalates_at_once_past_the_deadline() -> None:
    g = Group()
    e = fire()
    g.step(FIRED + 1, [e], acks=[ack(e, FIRED + 1)])
    g.step(FIRED + 900)
    assert g.escalations == []
    g.step(FIRED + 1000, acks=[ack(e, FIRED + 1000, acked=False)])
    assert g.escalations == [("pager", "fp0", "firing")]


def test_an_older_ack_replayed_does_not_undo_a_newer_one() -> None:
    g = Group()
    e = fire()
    g.step(FIRED + 1, [e], acks=[ack(e, FIRED + 2, acked=False)])
    g.step(FIRED + 3, acks=[ack(e, FIRED + 3)])
    g.step(FIRED + 4, acks=[ack(e, FIRED + 2, acked=False)])  # the topic read again from its start
    g.step(FIRED + 1000)
    assert g.escalations == []


def test_resolve_cancels_and_resolve_after_escalation_is_sent_to_the_escalation_receiver() -> None:
    g = Group()
    e = fire()
    g.step(FIRED + 1, [e])
    g.step(FIRED + 500, [resolve(e, FIRED + 500)])
    g.step(FIRED + 1000)
    assert g.escalations == [] and g.wake() is None

    paged = Group()
    paged.step(FIRED + 1, [e])
    paged.step(FIRED + 600)
    paged.step(FIRED + 700, [resolve(e, FIRED + 700)])
    assert paged.escalations == [("pager", "fp0", "firing"), ("pager", "fp0", "resolved")]
    assert paged.state is None or not paged.esc.escalated


def test_a_new_incident_of_the_same_alert_starts_over_and_old_acks_do_not_count() -> None:
    g = Group()
    first = fire()
    g.step(FIRED + 1, [first], acks=[ack(first, FIRED + 1)])
    g.step(FIRED + 50, [resolve(first, FIRED + 50)])
    second = fire(active_at=FIRED + 2000, fired_at=FIRED + 2100)
    g.step(FIRED + 2100, [second])
    assert g.wake() == FIRED + 2700  # the old incident's ack does not name this one
    g.step(FIRED + 2700)
    assert g.escalations == [("pager", "fp0", "firing")]
    assert g.sent[-1].alerts[0].active_at == FIRED + 2000


def test_each_alert_of_a_group_escalates_on_its_own() -> None:
    g = Group()
    a, b = fire(1), fire(2, fired_at=FIRED + 100)
    g.step(FIRED + 1, [a, b])
    g.step(FIRED + 600)
    g.step(FIRED + 700)
    assert g.escalations == [("pager", "fp1", "firing"), ("pager", "fp2", "firing")]
    assert all(len(n.alerts) == 1 for n in g.sent if n.escalated)


def test_no_policy_no_escalation() -> None:
    g = Group(policy=None)
    g.step(FIRED + 1, [fire()])
    assert g.wake() is None
    g.step(FIRED + 10_000)
    assert g.escalations == []


def test_acks_present_at_start_count_unless_a_newer_routed_one_says_otherwise() -> None:
    e = fire()
    g = Group(start={"fp0": ack(e, FIRED + 10)})
    g.step(FIRED + 1000, [e])  # a backlog after a restart: past the deadline, but acknowledged
    assert g.escalations == [] and g.wake() is None
    g.step(FIRED + 1100, acks=[ack(e, FIRED + 5)])  # the topic replayed: the same or older acks
    assert g.escalations == []
    g.step(FIRED + 1200, acks=[ack(e, FIRED + 1200, acked=False)])  # withdrawn after the start
    assert g.escalations == [("pager", "fp0", "firing")]


def test_restart_from_a_snapshot_never_escalates_twice_and_ids_are_stable() -> None:
    g = Group()
    g.step(FIRED + 1, [fire()])
    g.step(FIRED + 600)
    sent = [n for n in g.sent if n.escalated]
    restored = Group(state=pickle.loads(pickle.dumps(g.state)), esc=pickle.loads(pickle.dumps(g.esc)))
    restored.step(FIRED + 601, [fire()])  # the last epoch replayed after the restart
    restored.step(FIRED + 5000)
    assert restored.escalations == []

    # without the snapshot (a replay from scratch) the same incident gets the same message_id
    again = Group()
    again.step(FIRED + 2, [fire()])
    again.step(FIRED + 650)
    assert [n.message_id for n in again.sent if n.escalated] == [n.message_id for n in sent]


def test_ack_state_forgets_alerts_that_left_the_group() -> None:
    g = Group()
    e = fire()
    g.step(FIRED + 1, [e], acks=[ack(e, FIRED + 1), ack(fire(9), FIRED + 1)])
    assert [a.fingerprint for a in g.esc.acks] == ["fp0"]
    g.step(FIRED + 100, [resolve(e, FIRED + 100)])
    g.step(FIRED + 400)
    assert g.state is None or g.esc.acks == ()


def test_escalated_notifications_are_recognisable_and_others_unchanged() -> None:
    e = fire()
    plain = GroupNotification("team", KEY, (("alertname", "HighCPU"),), (e,), FIRED)
    esc = replace(plain, receiver="pager", escalated=True)
    assert "escalated" not in webhook_payload(plain)
    assert webhook_payload(esc)["escalated"] is True
    assert title(esc).startswith("[ESCALATED] ") and not title(plain).startswith("[ESCALATED]")
    assert alertmanager_payload(esc, now=FIRED)[0]["labels"]["escalated"] == "true"
    assert "escalated" not in alertmanager_payload(plain, now=FIRED)[0]["labels"]
    (post,) = notification_service_posts(esc)
    (orig,) = notification_service_posts(plain)
    assert post.body["subject"].startswith("[ESCALATED] ")
    assert post.message_id != orig.message_id == e.message_id  # the service must not drop it as a duplicate
    assert post.headers["Idempotency-Key"] == post.body["message_id"] == post.message_id
    assert esc.message_id != replace(plain, receiver="pager").message_id
