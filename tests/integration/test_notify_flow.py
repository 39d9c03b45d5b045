"""The delivery job (`python -m bytewax.run flows.notify`) on the real broker, with a real receiver.

- A receiver that is down for longer than every retry deadline gets every notification once it
  is back, in order per alert, and nothing is dead-lettered.
- SIGKILL of the delivery process mid-backlog, restart: nothing is lost, and what is posted
  again has a message_id that was already posted (receivers deduplicate).
- A permanent rejection goes to the DLQ, and `python -m flows.notify --redrive` delivers it
  again once the receiver accepts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from rules.model import AlertState, NotifyReason
from tests.support.data import record_count
from tests.support.events import T0, alert_event, instance_labels
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ALERTS = 12  # alerts, each FIRING then RESOLVED: 24 notifications


def events() -> list[Any]:
    out = []
    for n in range(ALERTS):
        common = {"fingerprint": f"fp{n:03d}", "labels": instance_labels(f"db-{n:02d}"), "active_at": T0 + n}
        out.append(alert_event(**common, message_id=f"fire-{n:03d}", at=T0 + 300 + n))
        out.append(
            alert_event(
                **common,
                message_id=f"resolve-{n:03d}",
                state=AlertState.RESOLVED,
                notify=NotifyReason.RESOLVED,
                at=T0 + 900 + n,
                resolved_at=T0 + 900 + n,
            )
        )
    return out


def produce(bootstrap: str, topic: str, evs: list[Any]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for e in evs:
        p.produce(topic, json.dumps(e.to_record()).encode(), e.fingerprint.encode())
    p.produce(topic, b'{"type": "heartbeat", "flow": "alerting"}', b"hb", headers=[("type", b"heartbeat")])
    assert p.flush(30) == 0


@pytest.fixture()
def env(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALERTS_TOPIC": topic_factory("alerts", partitions=4),
        "ALERTS_DLQ_TOPIC": topic_factory("alertsdlq"),
        "DLQ_TOPIC": topic_factory("dlq"),
        "NOTIFY_START": "earliest",
        "NOTIFY_TIMEOUT_S": "1",
        "NOTIFY_MAX_ATTEMPTS": "2",  # budgets far shorter than the outage: transient never dead-letters
        "NOTIFY_DEADLINE_S": "1",
        "NOTIFY_BREAKER_COOLDOWN_S": "0.5",
        "METRICS_PORT": "0",
        "RECOVERY_DIR": str(tmp_path / "recovery"),
        "RECOVERY_SNAPSHOT_S": "1",
    }


def start(env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.notify"],
        cwd=ROOT,
        env={**env, "NOTIFY_URL": url},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for(cond: Any, job: subprocess.Popen[bytes], log: Path, bound_s: float = 120) -> None:
    deadline = time.time() + bound_s
    while time.time() < deadline and not cond():
        assert job.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.3)


def in_order_per_alert(rec: Recorder) -> bool:
    """Each alert's FIRING reached the receiver before its RESOLVED."""
    seen = [p.message_id for p in rec.posts if 200 <= p.status < 300]
    return all(seen.index(f"fire-{n:03d}") < seen.index(f"resolve-{n:03d}") for n in range(ALERTS))


def test_a_receiver_down_longer_than_every_deadline_gets_everything_afterwards(
    env: dict[str, str], tmp_path: Path
) -> None:
    evs = events()
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], evs)
    rec = Recorder()
    probe = RecordingServer(0, rec)
    port = probe.server_address[1]
    probe.stop()  # the receiver is down: connections are refused
    log = tmp_path / "notify.log"
    job = start(env, f"http://127.0.0.1:{port}", log)
    server = None
    try:
        time.sleep(8)  # many times NOTIFY_DEADLINE_S: the old sink had dead-lettered everything
        assert job.poll() is None, log.read_text(errors="replace")[-3000:]
        server = RecordingServer(port, rec)  # back
        want = {e.message_id for e in evs}
        wait_for(lambda: want <= set(rec.ok_ids()), job, log)
    finally:
        stop(job)
        if server is not None:
            server.stop()
    assert set(rec.ok_ids()) == {e.message_id for e in evs}
    assert in_order_per_alert(rec)
    assert record_count(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_DLQ_TOPIC"]) == 0


def test_sigkill_mid_backlog_then_restart_loses_nothing(env: dict[str, str], tmp_path: Path) -> None:
    evs = events()
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], evs)
    rec = Recorder(fallback=lambda mid, attempt: "sluggish")  # a slow receiver builds a backlog
    server = RecordingServer(0, rec)
    log = tmp_path / "notify.log"
    want = {e.message_id for e in evs}
    env = {**env, "NOTIFY_MAX_IN_FLIGHT": "2", "NOTIFY_TIMEOUT_S": "10"}  # 2 s per post, never timed out
    try:
        job = start(env, server.url, log)
        wait_for(lambda: len(set(rec.ok_ids())) >= 6, job, log)
        stop(job, signal.SIGKILL)  # mid-backlog, no goodbye
        first = set(rec.ok_ids())
        assert first < want, "the backlog was already gone: nothing to prove"
        job = start(env, server.url, log)  # same command: resumes from its recovery directory
        wait_for(lambda: want <= set(rec.ok_ids()), job, log)
        stop(job)
    finally:
        server.stop()
    assert set(rec.ok_ids()) == want  # nothing lost
    assert rec.all_ids() == want  # anything posted twice was posted with a known message_id
    assert in_order_per_alert(rec)


def test_a_rejected_notification_is_dead_lettered_then_redriven(env: dict[str, str], tmp_path: Path) -> None:
    evs = events()[:4]  # two alerts
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], evs)
    rec = Recorder(script={"fire-001": ["422"]})  # one payload the receiver refuses, once
    server = RecordingServer(0, rec)
    log = tmp_path / "notify.log"
    try:
        job = start(env, server.url, log)
        others = {e.message_id for e in evs} - {"fire-001"}
        # the batch's posts run concurrently: the others can be answered before the sink has
        # written the refused one's dead letter, so wait for both (a stop is a crash to Bytewax)
        wait_for(
            lambda: (
                others <= set(rec.ok_ids())
                and record_count(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_DLQ_TOPIC"]) > 0
            ),
            job,
            log,
        )
        stop(job)
        assert record_count(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_DLQ_TOPIC"]) == 1
        redrive = subprocess.run(
            [sys.executable, "-m", "flows.notify", "--redrive", "--match", "instance_id=db-01"],
            cwd=ROOT,
            env={**env, "NOTIFY_URL": server.url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        server.stop()
    assert redrive.returncode == 0, redrive.stderr
    assert json.loads(redrive.stdout.strip().splitlines()[-1]) == {"redriven": 1, "matched": 1}
    assert set(rec.ok_ids()) == {e.message_id for e in evs}


def test_routing_groups_an_outage_of_five_instances_into_one_notification_and_one_resolve(
    env: dict[str, str], tmp_path: Path
) -> None:
    from tests.support.http_capture import CaptureServer, Script

    script = Script()
    hook = CaptureServer(script)
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 5s\n  group_interval: 2s\n"
        f"receivers:\n  - name: team\n    webhook_configs:\n      - url: {hook.url}/hook\n"
    )
    named = ("alertname", "HighCPUUsage")  # as the engine labels every alert
    evs = [replace(e, labels=tuple(sorted((*e.labels, named)))) for e in events()[:10]]
    # fired just now: the group waits group_wait for its members, whichever partition's batch
    # brings them first (alerts that fired long ago are a backlog, flushed at once)
    fires = [replace(e, fired_at=time.time()) for e in evs if e.state is AlertState.FIRING]
    resolves = [e for e in evs if e.state is AlertState.RESOLVED]
    log = tmp_path / "notify.log"
    job = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.notify"],
        cwd=ROOT,
        env={**env, "NOTIFY_ROUTES": str(routes)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], fires)
        wait_for(lambda: len(script.bodies()) >= 1, job, log)
        produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], resolves)
        wait_for(lambda: len(script.bodies()) >= 2, job, log)
        time.sleep(3)  # a few more group intervals: nothing else may come
    finally:
        stop(job)
        hook.stop()
    bodies = script.bodies()
    assert [(b["status"], len(b["alerts"]), b["groupLabels"]) for b in bodies] == [
        ("firing", 5, {"alertname": "HighCPUUsage"}),
        ("resolved", 5, {"alertname": "HighCPUUsage"}),
    ]
    assert all(b["version"] == "4" for b in bodies)


def test_routed_delivery_survives_a_sigkill_mid_backlog(env: dict[str, str], tmp_path: Path) -> None:
    """Grouped delivery with the receiver failing: the process is killed while it retries, and the
    restarted one (recovery: group state and offsets) sends every alert once the receiver is back."""
    from tests.support.http_capture import CaptureServer, Script

    script = Script(default="503")
    hook = CaptureServer(script)
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "route:\n  receiver: team\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n"
        f"receivers:\n  - name: team\n    webhook_configs:\n      - url: {hook.url}/hook\n"
    )
    fires = [e for e in events() if e.state is AlertState.FIRING]
    produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_TOPIC"], fires)
    log = tmp_path / "notify.log"
    routed_env = {**env, "NOTIFY_ROUTES": str(routes)}
    cmd = [sys.executable, "-m", "bytewax.run", "flows.notify"]

    def delivered() -> set[str]:
        return {a["labels"]["instance_id"] for b in script.bodies(200) for a in b["alerts"]}

    try:
        job = subprocess.Popen(cmd, cwd=ROOT, env=routed_env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: len(script.bodies(None)) >= 3, job, log)  # failing, retried: a backlog
        stop(job, signal.SIGKILL)
        assert delivered() == set()
        script.default = "ok"  # the receiver is back
        job = subprocess.Popen(cmd, cwd=ROOT, env=routed_env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        want = {f"db-{n:02d}" for n in range(ALERTS)}
        wait_for(lambda: want <= delivered(), job, log)
        stop(job)
    finally:
        hook.stop()
    assert delivered() == want
    assert record_count(env["KAFKA_BOOTSTRAP_SERVERS"], env["ALERTS_DLQ_TOPIC"]) == 0
