"""Escalation in the delivery job (`python -m bytewax.run flows.notify`) on the real broker.

A route `escalate_after: 3s` + `escalate_to: pager`, two real HTTP receivers (team, pager), a
private alerts topic and a private control topic. A critical alert nobody acknowledges reaches
the team, then the pager (flagged `escalated`); a second one, acknowledged through the control
topic (the API's publisher) before its deadline, never reaches the pager. The second alert fired
first, so its deadline passed before the first one's escalation arrived: that arrival is what
the "never" is asserted after, not a sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.control.publish import ControlPublisher
from rules.control.events import AckEvent, new_id, stamp
from rules.model import AlertEvent
from tests.support.events import alert_event, instance_labels
from tests.support.http_capture import CaptureServer, Script
from tests.support.jobs import stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def alert(instance: str, severity: str, fired_at: float) -> AlertEvent:
    labels = tuple(
        sorted((*instance_labels(instance), ("alertname", "HighCPUUsage"), ("severity", severity)))
    )
    return alert_event(fingerprint=f"fp-{instance}", labels=labels, message_id=f"fire-{instance}",
                       at=fired_at, fired_at=fired_at, active_at=fired_at - 60)  # fmt: skip


def produce(bootstrap: str, topic: str, events: list[AlertEvent]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        p.produce(topic, json.dumps(e.to_record()).encode(), e.fingerprint.encode())
    assert p.flush(30) == 0


def instances(script: Script, path: str) -> list[tuple[str, str]]:
    """(instance_id, status) of every alert the receiver at `path` accepted, in arrival order."""
    with script.lock:
        got = [r for r in script.received if r.path == path and r.status == 200]
    return [(a["labels"]["instance_id"], a["status"]) for r in got for a in r.body["alerts"]]


@pytest.fixture()
def hook() -> Iterator[tuple[Script, CaptureServer]]:
    script = Script()
    server = CaptureServer(script)
    yield script, server
    server.stop()


def test_an_unacknowledged_critical_alert_escalates_and_an_acknowledged_one_does_not(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, hook: tuple[Script, CaptureServer]
) -> None:
    script, server = hook
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "route:\n  receiver: team\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n"
        "  routes:\n    - matchers: ['severity=\"critical\"']\n"
        "      escalate_after: 3s\n      escalate_to: pager\n"
        f"receivers:\n  - name: team\n    webhook_configs: [{{url: '{server.url}/team'}}]\n"
        f"  - name: pager\n    webhook_configs: [{{url: '{server.url}/pager'}}]\n"
    )
    alerts, control = topic_factory("alerts", partitions=2), topic_factory("control")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALERTS_TOPIC": alerts,
        "ALERTS_DLQ_TOPIC": topic_factory("alertsdlq"),
        "DLQ_TOPIC": topic_factory("dlq"),
        "CONTROL_TOPIC": control,
        "NOTIFY_ROUTES": str(routes),
        "NOTIFY_START": "earliest",
        "METRICS_PORT": "0",
        "RECOVERY_DIR": str(tmp_path / "recovery"),
    }
    log = tmp_path / "notify.log"
    job = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.notify"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    publisher = ControlPublisher(kafka_bootstrap, control)

    def wait_for(cond: Any, bound_s: float = 90) -> None:
        deadline = time.time() + bound_s
        while not cond():
            assert job.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.time() < deadline, f"timed out; received {instances(script, '/team')}, " + str(
                instances(script, "/pager")
            )
            time.sleep(0.1)

    try:
        # the job is up and delivering (a warning: no escalation on its route)
        produce(kafka_bootstrap, alerts, [alert("db-00", "warning", time.time())])
        wait_for(lambda: ("db-00", "firing") in instances(script, "/team"))

        acked = alert("db-02", "critical", time.time())  # fires first: its deadline passes first
        produce(kafka_bootstrap, alerts, [acked])
        wait_for(lambda: ("db-02", "firing") in instances(script, "/team"))
        publisher.publish(
            AckEvent(
                acked.fingerprint,
                acked.active_at,
                True,
                "alice",
                stamp(time.time()),
                "looking into it",
                acked.labels,
                new_id(),
            )
        )
        ignored = alert("db-01", "critical", time.time() + 0.5)
        produce(kafka_bootstrap, alerts, [ignored])
        wait_for(lambda: ("db-01", "firing") in instances(script, "/pager"))
    finally:
        publisher.close()
        stop(job)
    assert ("db-01", "firing") in instances(script, "/team")
    assert instances(script, "/pager") == [("db-01", "firing")]  # db-02 was acknowledged in time
    with script.lock:
        paged = [r.body for r in script.received if r.path == "/pager"]
    assert paged[0]["escalated"] is True and paged[0]["receiver"] == "pager"
    assert all("escalated" not in r.body for r in script.received if r.path == "/team")


def test_escalation_is_our_extension_that_amtool_rejects(tmp_path: Path) -> None:
    """The docs say so: a routes file with escalation no longer passes `amtool check-config`."""
    import shutil

    from rules.routing.config import load_routing_file

    if shutil.which("amtool") is None:
        subprocess.run([str(ROOT / "deploy" / "local" / "alertmanager.sh"), "install"], check=True)
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing after deploy/local/alertmanager.sh install"
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "route:\n  receiver: team\n  escalate_after: 15m\n  escalate_to: pager\n"
        "receivers: [{name: team}, {name: pager}]\n"
    )
    assert load_routing_file(routes).route.escalate_to == "pager"
    r = subprocess.run([amtool, "check-config", str(routes)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "escalate_after" in r.stdout + r.stderr, r.stdout + r.stderr
