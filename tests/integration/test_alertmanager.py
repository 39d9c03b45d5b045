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
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rules.metric import iso
from rules.model import AlertEvent, AlertState
from rules.routing.types import GroupNotification
from tests.support.events import alert_event, instance_labels
from tests.support.http_receiver import Post, Recorder, RecordingServer

pytestmark = pytest.mark.integration

INSTANCES = [f"prod-db-{i:02d}" for i in range(1, 6)]
RESOLVE_TIMEOUT_S = 300.0  # endsAt of a firing alert: far enough ahead not to expire during the test
WAIT_S = 30.0  # upper bound for Alertmanager's flushes (1 s group_wait, 2 s group_interval)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Recorder]:
    """The receiver Alertmanager's webhook_configs point at."""
    port = os.environ.get("ALERTMANAGER_WEBHOOK_PORT")
    if not port:
        pytest.fail(
            "ALERTMANAGER_WEBHOOK_PORT is not set: `source deploy/local/env.sh` (or run `make test`)",
            pytrace=False,
        )
    recorder = Recorder()
    server = RecordingServer(int(port), recorder)
    yield recorder
    server.stop()


def api_v2_alerts(n: GroupNotification, now: float) -> list[dict[str, Any]]:
    """The body of `POST /api/v2/alerts` for a notification (Prometheus's shape: a firing alert
    ends at now + resolve timeout, so re-sending keeps it alive; a resolved one at its resolve time)."""
    body = []
    for a in n.alerts:
        ends = a.resolved_at if a.state is AlertState.RESOLVED and a.resolved_at is not None else None
        body.append(
            {
                "labels": {**dict(a.labels), "alertname": a.alert_name},
                "annotations": dict(a.annotations),
                "startsAt": iso(a.active_at),
                "endsAt": iso(ends if ends is not None else now + RESOLVE_TIMEOUT_S),
                "generatorURL": a.dashboard_url,
            }
        )
    return body


def outage(name: str, now: float, state: AlertState) -> GroupNotification:
    """Five instances of one alert, all in `state`."""
    resolved = state is AlertState.RESOLVED
    alerts: list[AlertEvent] = [
        alert_event(
            alert_name=name,
            fingerprint=f"{name}-{inst}",
            state=state,
            at=now,
            active_at=now - 60,
            fired_at=now - 30,
            resolved_at=now if resolved else None,
            labels=(*instance_labels(inst), ("severity", "critical")),
            message_id=f"{name}-{inst}-{state.value}",
        )
        for inst in INSTANCES
    ]
    return GroupNotification(
        receiver="alertmanager",
        group_key=f'{{}}:{{alertname="{name}"}}',
        group_labels=(("alertname", name),),
        alerts=tuple(alerts),
        at=now,
    )


def push(url: str, n: GroupNotification) -> None:
    resp = httpx.post(f"{url}/api/v2/alerts", json=api_v2_alerts(n, time.time()), timeout=10)
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


def test_five_instances_fire_as_one_grouped_webhook_and_resolve_as_one(
    alertmanager_url: str, webhook: Recorder
) -> None:
    name = f"AMOutage{uuid.uuid4().hex[:8]}"

    push(alertmanager_url, outage(name, time.time(), AlertState.FIRING))
    wait_for("the firing webhook", lambda: len(group_posts(webhook, name)) >= 1, am_log)

    seen = amtool_query(alertmanager_url, name)
    assert sorted(a["labels"]["instance_id"] for a in seen) == INSTANCES

    push(alertmanager_url, outage(name, time.time(), AlertState.RESOLVED))
    wait_for("the resolved webhook", lambda: len(group_posts(webhook, name)) >= 2, am_log)

    posts = group_posts(webhook, name)
    assert [(p.body["status"], len(p.body["alerts"])) for p in posts] == [("firing", 5), ("resolved", 5)]
    for post, status in zip(posts, ["firing", "resolved"], strict=True):
        body = post.body
        assert body["version"] == "4"
        assert body["receiver"] == "test-webhook"
        assert body["groupLabels"] == {"alertname": name}
        assert body["commonLabels"] == {"alertname": name, "severity": "critical", **common_instance_labels()}
        assert [a["status"] for a in body["alerts"]] == [status] * 5
        assert sorted(a["labels"]["instance_id"] for a in body["alerts"]) == INSTANCES
        assert body["truncatedAlerts"] == 0
    assert amtool_query(alertmanager_url, name) == []  # resolved alerts are no longer active


def common_instance_labels() -> dict[str, str]:
    """The labels the five instances share (instance_labels minus instance_id)."""
    return {k: v for k, v in instance_labels("x") if k != "instance_id"}
