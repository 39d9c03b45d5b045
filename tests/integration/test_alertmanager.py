"""A real Alertmanager 0.25 (Debian's prometheus-alertmanager, started by deploy/local/alertmanager.sh)
behind the `alertmanager` receiver kind: what we push to its API v2 comes back grouped on its webhook.

deploy/local writes Alertmanager's configuration: one route, group_by [alertname], group_wait 1s,
group_interval 2s, to a webhook at 127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT, where this test listens.
Each test uses its own alertname, so its group is its own even when Alertmanager still holds the
alerts of an earlier run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from rules.model import AlertEvent, AlertState, NotifyReason
from rules.routing.payloads import alertmanager_payload, webhook_payload
from rules.routing.types import GroupNotification
from tests.support.events import alert_event, instance_labels
from tests.support.http_receiver import Post, Recorder

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

INSTANCES = [f"prod-db-{i:02d}" for i in range(1, 6)]
WAIT_S = 30.0  # upper bound for Alertmanager's flushes (1 s group_wait, 2 s group_interval)


@pytest.fixture()
def webhook(alertmanager_webhook: Recorder) -> Recorder:
    """The receiver Alertmanager's webhook_configs point at (tests/conftest.py)."""
    return alertmanager_webhook


def outage(name: str, fired_at: float, now: float, state: AlertState) -> GroupNotification:
    """Five instances of one alert that fired at `fired_at`, all in `state` at `now`."""
    resolved = state is AlertState.RESOLVED
    alerts: list[AlertEvent] = [
        alert_event(
            alert_name=name,
            fingerprint=f"{name}-{inst}",
            state=state,
            at=now,
            active_at=fired_at - 30,
            fired_at=fired_at,
            resolved_at=now if resolved else None,
            labels=(*instance_labels(inst), ("severity", "critical")),
            annotations=(("summary", f"{name} on {inst}"),),
            message_id=f"{name}-{inst}-{state.value}",
        )
        for inst in INSTANCES
    ]
    return GroupNotification(
        receiver="test-webhook",  # the receiver's name in deploy/local's alertmanager.yml
        group_key=f'{{}}:{{alertname="{name}"}}',
        group_labels=(("alertname", name),),
        alerts=tuple(alerts),
        at=now,
    )


def push(url: str, n: GroupNotification) -> None:
    resp = httpx.post(f"{url}/api/v2/alerts", json=alertmanager_payload(n, now=time.time()), timeout=10)
    assert resp.status_code == 200, resp.text


def group_posts(webhook: Recorder, name: str) -> list[Post]:
    with webhook.lock:
        return [
            p
            for p in webhook.posts
            if any(a.get("labels", {}).get("alertname") == name for a in p.body.get("alerts", []))
        ]


def wait_for(what: str, check: Callable[[], bool], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen within {WAIT_S:.0f} s; Alertmanager log:\n{log()}")
        time.sleep(0.1)


def am_log() -> str:
    path = os.path.join(os.environ.get("GDS_STATE_DIR", "/tmp/gds-local"), "alertmanager", "alertmanager.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-30:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def amtool_query(url: str, name: str) -> list[dict[str, Any]]:
    """Active alerts of `name` as amtool (the real CLI from the same package) sees them."""
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: `deploy/local/alertmanager.sh install` installs it"
    out = subprocess.run(
        [amtool, "alert", "query", f"--alertmanager.url={url}", "-o", "json", f"alertname={name}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    alerts: list[dict[str, Any]] = json.loads(out)
    return alerts


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A webhook body with what legitimately differs taken out: Alertmanager's own alert
    fingerprints (a hash of the labels; ours are the engine's) and the spelling of timestamps
    (Go trims trailing zeros of the fraction), which are compared as instants."""

    def when(text: str) -> datetime | str:
        return text if text.startswith("0001-") else datetime.fromisoformat(text.replace("Z", "+00:00"))

    alerts = [
        {
            **{k: v for k, v in a.items() if k != "fingerprint"},
            "startsAt": when(a["startsAt"]),
            "endsAt": when(a["endsAt"]),
        }
        for a in body["alerts"]
    ]
    return {**body, "alerts": sorted(alerts, key=lambda a: sorted(a["labels"].items()))}


def test_five_instances_fire_as_one_grouped_webhook_and_resolve_as_one(
    alertmanager_url: str, webhook: Recorder
) -> None:
    name = f"AMOutage{uuid.uuid4().hex[:8]}"

    fired_at = time.time()
    firing = outage(name, fired_at, fired_at, AlertState.FIRING)
    push(alertmanager_url, firing)
    wait_for("the firing webhook", lambda: len(group_posts(webhook, name)) >= 1, am_log)

    seen = amtool_query(alertmanager_url, name)
    assert sorted(a["labels"]["instance_id"] for a in seen) == INSTANCES

    resolved = outage(name, fired_at, time.time(), AlertState.RESOLVED)
    push(alertmanager_url, resolved)
    wait_for("the resolved webhook", lambda: len(group_posts(webhook, name)) >= 2, am_log)

    posts = group_posts(webhook, name)
    assert [(p.body["status"], len(p.body["alerts"])) for p in posts] == [("firing", 5), ("resolved", 5)]
    for post, sent in zip(posts, [firing, resolved], strict=True):
        assert post.body["groupLabels"] == {"alertname": name}
        assert post.body["commonLabels"] == {
            "alertname": name,
            "severity": "critical",
            **common_instance_labels(),
        }
        # Our `webhook` receiver kind builds the body the real Alertmanager sent for the same group.
        assert comparable(post.body) == comparable(webhook_payload(sent, external_url=alertmanager_url))
    assert amtool_query(alertmanager_url, name) == []  # resolved alerts are no longer active


def common_instance_labels() -> dict[str, str]:
    """The labels the five instances share (instance_labels minus instance_id)."""
    return {k: v for k, v in instance_labels("x") if k != "instance_id"}


# -- the delivery job (flows.notify) pushing here through its `alertmanager` receiver --------


def produce_records(bootstrap: str, topic: str, events: list[Any]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        p.produce(topic, json.dumps(e.to_record()).encode(), e.fingerprint.encode())
    assert p.flush(30) == 0


def delivered_groups(webhook: Recorder, name: str, status: str) -> list[dict[str, Any]]:
    with webhook.lock:
        return [
            p.body
            for p in webhook.posts
            if p.body.get("status") == status
            and any(a.get("labels", {}).get("alertname") == name for a in p.body.get("alerts", []))
        ]


def test_the_delivery_job_pushes_to_a_real_alertmanager(
    kafka_bootstrap: str, alertmanager_url: str, topic_factory: Any, tmp_path: Path, webhook: Recorder
) -> None:
    name = f"NotifyFlow{uuid.uuid4().hex[:6]}"
    now = time.time()
    fires, resolves = [], []
    for i in range(5):
        common = {
            "alert_name": name,
            "fingerprint": f"{name}-{i}",
            "labels": (*instance_labels(f"db-{i}"), ("alertname", name), ("severity", "critical")),
            "active_at": now - 60,
            "fired_at": now - 30,
        }
        fires.append(alert_event(**common, message_id=f"{name}-{i}-f", at=now - 30))
        resolves.append(
            alert_event(
                **common,
                message_id=f"{name}-{i}-r",
                state=AlertState.RESOLVED,
                notify=NotifyReason.RESOLVED,
                at=now,
                resolved_at=now,
            )
        )
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "route:\n  receiver: am\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n"
        f"receivers:\n  - name: am\n    alertmanager_configs: [{{url: '{alertmanager_url}'}}]\n"
    )
    alerts = topic_factory("alerts", partitions=2)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALERTS_TOPIC": alerts,
        "ALERTS_DLQ_TOPIC": topic_factory("alertsdlq"),
        "DLQ_TOPIC": topic_factory("dlq"),
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

    def wait(check: Any) -> None:
        deadline = time.time() + 120
        while not check():
            assert job.poll() is None, log.read_text(errors="replace")[-3000:]
            if time.time() > deadline:
                pytest.fail(f"no webhook from Alertmanager; delivery job log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    try:
        produce_records(kafka_bootstrap, alerts, fires)
        # the job may push the five in more than one group notification (its own group_wait is
        # 1 s, and the two partitions can be read a second apart on a loaded machine); those
        # that join later come back in Alertmanager's next flush of the group, with all five
        wait(lambda: any(len(g["alerts"]) == 5 for g in delivered_groups(webhook, name, "firing")))
        produce_records(kafka_bootstrap, alerts, resolves)
        wait(lambda: delivered_groups(webhook, name, "resolved"))
    finally:
        job.terminate()
        job.wait(30)
    firing = delivered_groups(webhook, name, "firing")
    resolved = delivered_groups(webhook, name, "resolved")
    assert firing and len(firing[-1]["alerts"]) == 5  # Alertmanager grouped our five pushes
    assert resolved and len(resolved[-1]["alerts"]) == 5
    assert {a["labels"]["instance_id"] for a in resolved[-1]["alerts"]} == {f"db-{i}" for i in range(5)}
