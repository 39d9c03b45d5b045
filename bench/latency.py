"""Arrival-to-notification latency of the live alerting job (p50/p99).

Starts `python -m bytewax.run flows.alerting` tailing a fresh topic, then for each of N
instances produces one sample that breaches a `for: 0s` rule on a tick boundary, and
measures from the produce call to the notification POST arriving at a loopback receiver.
The rule file uses a 1 s evaluation interval and 1 s of allowed lateness (the least a tailing
job accepts: flows.alerting refuses less), so a notification trails its sample by at least
that second; with the bundled 1 m interval and 30 s lateness it necessarily trails by more.
`overhead` is measured from the moment the lateness has elapsed (sample time + 1 s, each
instance idle after its sample): the pipeline's share (Kafka, routing, evaluation, delivery).
bench/delivery.py measures the same under a sustained load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Receiver, emit

ROOT = Path(__file__).resolve().parents[1]
LATENESS_S = 1.0


def sample(iid: str, ts: float, value: float) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"
    return json.dumps(
        {
            "timestamp": stamp,
            "database_type": "postgresql",
            "instance_id": iid,
            "metric_name": "bench_latency",
            "value": value,
            "tags": {},
        }
    ).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=200)
    a = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    alerts = f"bench.alerts.{uuid.uuid4().hex[:8]}"
    for t in admin.create_topics(
        [
            NewTopic(topic, num_partitions=4, replication_factor=1),
            NewTopic(alerts, num_partitions=1, replication_factor=1),
        ]
    ).values():
        t.result(30)
    tmp = Path(tempfile.mkdtemp(prefix="bench-lat-"))
    rules = tmp / "rules.yml"
    rules.write_text(yaml.safe_dump({
        "settings": {"evaluation_interval": "1s", "allowed_lateness": f"{LATENESS_S:g}s"},
        "alert_rules": [{
            "name": "LatencyProbe", "metric": "bench_latency", "window": "1s", "severity": "warning",
            "condition": {"operator": ">", "threshold": 50, "duration": "0s", "aggregation": "last"},
        }],
    }))  # fmt: skip
    receiver = Receiver()
    env = {
        **os.environ,
        "METRIC_TOPICS": topic,
        "ALERTS_TOPIC": alerts,
        "RULES_PATH": str(rules),
        "NOTIFY_URL": receiver.url,
        "KAFKA_START": "earliest",
        "METRICS_PORT": "0",  # a bench run must not clash with a job serving 8490
        "RECOVERY_DIR": "off",  # each run starts afresh on its own topic
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "job.log").open("wb"),
    )
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    iids = [f"lat-db-{i:04d}" for i in range(a.instances)]
    # warm up: every instance reports a healthy value, then wait for the job to catch up
    base = float(int(time.time()))
    for iid in iids:
        p.produce(topic, sample(iid, base - 2, 1.0), iid.encode())
    p.flush(10)
    time.sleep(5)
    sent: dict[str, float] = {}
    for iid in iids:
        tick = float(int(time.time()))  # on a tick boundary: it closes the tick that contains it
        p.produce(topic, sample(iid, tick, 99.0), iid.encode())
        p.poll(0)
        sent[iid] = time.time()
        time.sleep(0.01)
    p.flush(10)
    deadline = time.time() + 60
    while len(receiver.posts) < len(iids) and time.time() < deadline:
        time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=30)
    lat = sorted(
        arrived - sent[body["db_instance_id"]]
        for arrived, body in receiver.posts
        if body["state"] == "firing" and body["db_instance_id"] in sent
    )
    admin.delete_topics([topic, alerts])
    if not lat:
        raise SystemExit(f"no notification arrived; job log:\n{(tmp / 'job.log').read_text()[-3000:]}")
    emit(
        {
            "bench": "arrival_to_notification",
            "notifications": len(lat),
            "expected": len(iids),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1),
            "overhead_p50_ms": round((statistics.median(lat) - LATENESS_S) * 1000, 1),
            "overhead_p99_ms": round((lat[min(len(lat) - 1, int(len(lat) * 0.99))] - LATENESS_S) * 1000, 1),
        }
    )


if __name__ == "__main__":
    main()
