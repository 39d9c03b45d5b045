"""Routing and grouping as a Bytewax sub-flow (flows.notify.route_and_group), on 1 and 2 workers."""

from __future__ import annotations

from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.notify import route_and_group
from rules.model import AlertState, NotifyReason
from rules.routing.config import load_routing
from rules.routing.types import GroupNotification, GroupStatus
from tests.support.events import T0, alert_event, instance_labels

CONFIG = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true  # and on to the next sibling
    - matchers: ['alertname=~".+"']
      receiver: team
receivers:
  - name: team
    webhook_configs: [{url: "http://127.0.0.1:9/team"}]
  - name: pager
    webhook_configs: [{url: "http://127.0.0.1:9/pager"}]
"""


def outage() -> list:
    """Five instances of one alert fire within a minute and resolve ten minutes later."""
    out = []
    for n in range(5):
        common = {"fingerprint": f"fp{n}", "labels": (*instance_labels(f"db-{n}"), ("alertname", "HighCPU"),
                  ("severity", "warning")), "active_at": T0 + n}  # fmt: skip
        out.append(alert_event(**common, message_id=f"f{n}", at=T0 + 300 + 5 * n))  # within group_wait
    for n in range(5):
        common = {"fingerprint": f"fp{n}", "labels": (*instance_labels(f"db-{n}"), ("alertname", "HighCPU"),
                  ("severity", "warning")), "active_at": T0 + n}  # fmt: skip
        out.append(alert_event(**common, message_id=f"r{n}", state=AlertState.RESOLVED,
                               notify=NotifyReason.RESOLVED, at=T0 + 900, resolved_at=T0 + 900))  # fmt: skip
    return out


def run(events: list, workers: int) -> list[GroupNotification]:
    config = load_routing(CONFIG, "inline.yml")
    flow = Dataflow("routing")
    got: list[GroupNotification] = []
    notes = route_and_group("n", op.input("in", flow, TestingSource(events)), config, clock=None)
    op.output("out", notes, TestingSink(got))
    if workers == 1:
        run_main(flow)
    else:
        from bytewax.testing import cluster_main

        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


@pytest.mark.parametrize("workers", [1, 2])
def test_an_outage_of_five_instances_is_one_notification_and_one_resolve(workers: int) -> None:
    got = run(outage(), workers)
    assert [(n.receiver, n.status, len(n.alerts)) for n in got] == [
        ("team", GroupStatus.FIRING, 5),
        ("team", GroupStatus.RESOLVED, 5),
    ]
    assert got[0].group_labels == (("alertname", "HighCPU"),)


def test_continue_sends_a_critical_to_the_pager_and_the_team() -> None:
    crit = [e.__class__(**{**{f: getattr(e, f) for f in e.__dataclass_fields__},
                           "labels": tuple((k, "critical" if k == "severity" else v) for k, v in e.labels)})
            for e in outage()]  # fmt: skip
    got = run(crit, 1)
    assert sorted((n.receiver, n.status.value) for n in got) == [
        ("pager", "firing"), ("pager", "resolved"), ("team", "firing"), ("team", "resolved")
    ]  # fmt: skip


def test_the_docs_example_config_loads(tmp_path: Path) -> None:
    assert set(load_routing(CONFIG, "inline.yml").receivers) == {"team", "pager"}


def test_the_readme_example_and_the_sample_routes_load() -> None:
    from rules.routing.config import load_routing_file

    root = Path(__file__).resolve().parents[2]
    section = (root / "README.md").read_text().split("## Routing and receivers", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_routing(example, "README.md")
    assert set(config.receivers) == {"dba-team", "on-call", "mail", "upstream-alertmanager"}
    assert config.receivers["dba-team"].fallback == "mail"
    assert set(load_routing_file(root / "flows/sample/routes.yml").receivers) == {"dba-team", "on-call"}


def test_alerts_pushed_to_an_alertmanager_are_refreshed_before_they_expire() -> None:
    from flows.notify import ALERTMANAGER_RESEND_S, router

    config = load_routing(
        "route: {receiver: am, repeat_interval: 4h}\n"
        "receivers: [{name: am, alertmanager_configs: [{url: 'http://127.0.0.1:9093'}]}]\n",
        "am.yml",
    )
    [(_, routed)] = router(config)(outage()[:1])
    assert routed.timers.repeat_interval == ALERTMANAGER_RESEND_S < 300  # Alertmanager's resolve_timeout
