"""The delivery job pushing to a real Alertmanager 0.25 (`alertmanager_configs` receiver): alert records
on the `alerts` topic come back from Alertmanager as one grouped webhook when they fire, one when
they resolve. deploy/local's Alertmanager groups by alertname and posts to ALERTMANAGER_WEBHOOK_PORT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from rules.model import AlertState, NotifyReason
from tests.support.events import alert_event, instance_labels
from tests.support.http_receiver import Recorder, RecordingServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def webhook() -> Iterator[Recorder]:
    port = os.environ.get("ALERTMANAGER_WEBHOOK_PORT")
    if not port:
        pytest.fail("ALERTMANAGER_WEBHOOK_PORT is not set: run `make test`", pytrace=False)
    recorder = Recorder()
    server = RecordingServer(int(port), recorder)
    yield recorder
    server.stop()


def produce(bootstrap: str, topic: str, events: list[Any]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for e in events:
        p.produce(topic, json.dumps(e.to_record()).encode(), e.fingerprint.encode())
    assert p.flush(30) == 0


def grouped(webhook: Recorder, name: str, status: str) -> list[dict[str, Any]]:
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
        produce(kafka_bootstrap, alerts, fires)
        wait(lambda: grouped(webhook, name, "firing"))
        produce(kafka_bootstrap, alerts, resolves)
        wait(lambda: grouped(webhook, name, "resolved"))
    finally:
        job.terminate()
        job.wait(30)
    firing = grouped(webhook, name, "firing")
    resolved = grouped(webhook, name, "resolved")
    assert firing and len(firing[0]["alerts"]) == 5  # Alertmanager grouped our five pushes
    assert resolved and len(resolved[-1]["alerts"]) == 5
    assert {a["labels"]["instance_id"] for a in resolved[-1]["alerts"]} == {f"db-{i}" for i in range(5)}
