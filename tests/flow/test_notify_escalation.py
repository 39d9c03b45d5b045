"""Escalation as a Bytewax sub-flow (flows.notify.route_and_group with a control stream), on 1 and
2 workers, in event time (clock=None: a replay takes each deadline at its own time)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.notify import route_and_group
from rules.control.events import AckEvent
from rules.model import AlertEvent, AlertState, NotifyReason
from rules.routing.config import load_routing
from rules.routing.types import GroupNotification
from tests.support.events import T0, alert_event, instance_labels

CONFIG = """
route:
  receiver: team
  group_by: [alertname, instance_id]
  group_wait: 30s
  group_interval: 5m
  routes:
    - matchers: ['severity="critical"']
      escalate_after: 10m
      escalate_to: pager
receivers:
  - name: team
  - name: pager
"""


def firing(i: int) -> AlertEvent:
    labels = (("alertname", "HighCPU"), *instance_labels(f"db-{i}"), ("severity", "critical"))
    return alert_event(fingerprint=f"fp{i}", labels=labels, message_id=f"f{i}", at=T0, fired_at=T0,
                       active_at=T0 - 60)  # fmt: skip


def resolved(i: int, at: float) -> AlertEvent:
    return replace(firing(i), state=AlertState.RESOLVED, notify=NotifyReason.RESOLVED, at=at, resolved_at=at,
                   message_id=f"r{i}")  # fmt: skip


def ack(i: int, at: float, acked: bool = True) -> AckEvent:
    e = firing(i)
    return AckEvent(e.fingerprint, e.active_at, acked, "alice", at, labels=e.labels)


def scenario() -> list[Any]:
    """db-1 nobody acknowledges; db-2 is acknowledged within the 10 minutes; db-3 too, but the
    ack is withdrawn before the deadline. All resolve after 20 minutes. In time order."""
    items: list[Any] = [firing(1), firing(2), firing(3), ack(2, T0 + 60), ack(3, T0 + 60)]
    items += [ack(3, T0 + 300, acked=False)]
    items += [resolved(i, T0 + 1200) for i in (1, 2, 3)]
    return items


def run(items: list[Any], workers: int) -> list[GroupNotification]:
    config = load_routing(CONFIG, "inline.yml")
    flow = Dataflow("escalation")
    both = op.branch("split", op.input("in", flow, TestingSource(items)), lambda x: isinstance(x, AlertEvent))
    got: list[GroupNotification] = []
    notes = route_and_group("n", both.trues, config, clock=None, control=both.falses)
    op.output("out", notes, TestingSink(got))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


def summary(got: list[GroupNotification]) -> list[tuple[str, str, str, bool]]:
    return sorted((n.receiver, a.instance_id, a.state.value, n.escalated) for n in got for a in n.alerts)


@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_unacknowledged_and_the_unacknowledged_again_escalate(workers: int) -> None:
    got = run(scenario(), workers)
    escalated = [(r, i, s) for r, i, s, esc in summary(got) if esc]
    assert escalated == [
        ("pager", "db-1", "firing"), ("pager", "db-1", "resolved"),
        ("pager", "db-3", "firing"), ("pager", "db-3", "resolved"),
    ]  # fmt: skip
    team = [(r, i, s) for r, i, s, esc in summary(got) if not esc]
    assert team == [("team", f"db-{i}", s) for i in (1, 2, 3) for s in ("firing", "resolved")]
    first = next(n for n in got if n.escalated and n.alerts[0].instance_id == "db-1")
    assert first.at == T0 + 600  # at its deadline, not when the resolve came


@pytest.mark.parametrize("workers", [1, 2])
def test_acks_known_at_start_prevent_escalation_without_the_control_stream(workers: int) -> None:
    config = load_routing(CONFIG, "inline.yml")
    flow = Dataflow("escalation-start")
    got: list[GroupNotification] = []
    items = [firing(1), firing(2), resolved(1, T0 + 1200), resolved(2, T0 + 1200)]
    start = {"fp2": ack(2, T0 + 60)}
    notes = route_and_group(
        "n", op.input("in", flow, TestingSource(items)), config, None, acks_at_start=start
    )
    op.output("out", notes, TestingSink(got))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert {a.instance_id for n in got if n.escalated for a in n.alerts} == {"db-1"}


def test_group_logic_wakes_at_the_deadline_and_its_snapshot_keeps_what_was_escalated() -> None:
    import pickle

    from flows.notify import GroupLogic, router
    from rules.routing.group import GroupState, Timers

    config = load_routing(CONFIG, "inline.yml")
    [(_, routed)] = router(config)([firing(1)])
    now = [T0]
    logic = GroupLogic(None, lambda: now[0])
    notes, _ = logic.on_batch([routed])
    wake = logic.notify_at()
    assert wake is not None and wake.timestamp() == T0 + 30  # group_wait first
    now[0] = T0 + 30
    logic.on_notify()
    wake = logic.notify_at()
    assert wake is not None and wake.timestamp() == T0 + 600  # then the escalation deadline
    now[0] = T0 + 600
    notes, _ = logic.on_notify()
    assert [(n.receiver, n.escalated) for n in notes] == [("pager", True)]

    resumed = GroupLogic(pickle.loads(pickle.dumps(logic.snapshot())), lambda: now[0])
    now[0] = T0 + 700
    notes, _ = resumed.on_batch([routed])  # the last epoch again, after a restart
    assert not any(n.escalated for n in notes)

    # a snapshot from before escalation existed, (GroupState, Timers), still resumes (and escalates)
    old = (GroupState(routed.group_key, "team", routed.group_labels, (firing(1),), T0, T0 + 330, T0 + 30,
                      (("fp1", AlertState.FIRING),)), Timers())  # fmt: skip
    legacy = GroupLogic(old, lambda: now[0])
    notes, _ = legacy.on_batch([routed])
    assert [(n.receiver, n.escalated) for n in notes] == [("pager", True)]
