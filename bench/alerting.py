"""Alerting flow throughput from the real broker, next to a plain consume+decode ceiling.

`python bench/alerting.py [--instances 1000] [--samples 100]` (10,000 series and 50 rules by
default; needs KAFKA_BOOTSTRAP_SERVERS). Prints one JSON line per measurement; the ratio
to the ceiling measured in the same run is the figure to track, not the absolute rate.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Receiver, emit, messages, rules_file
from connectors.kafka.serde import decode_json

ROOT = Path(__file__).resolve().parents[1]


def make_topic(admin: AdminClient, partitions: int) -> str:
    name = f"bench.metrics.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    return name


def produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
            "compression.type": "lz4",
        }
    )
    for key, value in msgs:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0


def ceiling(bootstrap: str, topic: str, n: int) -> float:
    """The best a Python consumer can do here: consume in batches and decode every message."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    seen = 0
    start = time.perf_counter()
    while seen < n:
        for msg in c.consume(1000, timeout=1.0):
            value = msg.value()
            if msg.error() is None and value is not None:
                decode_json(value, math.inf)
                seen += 1
    elapsed = time.perf_counter() - start
    c.close()
    return n / elapsed


def run_flow(args: list[str], env: dict[str, str], procs: int = 1) -> tuple[float, int]:
    """Wall seconds of a bounded run of the real job, and the peak RSS of its processes (KiB)."""
    start = time.perf_counter()
    children = []
    logs = []
    for i in range(procs):
        extra = ["-i", str(i), "-a", env["_ADDRS"]] if procs > 1 else []
        # stderr to a file, not a pipe: a pipe read only after the other child ends fills up
        # and blocks its writer, and with it the whole cluster
        logs.append(tempfile.TemporaryFile())  # noqa: SIM115 - closed with the process
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "flows.alerting", *args, *extra],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs[-1],
            )
        )
    for c, log in zip(children, logs, strict=True):
        c.wait(timeout=1800)
        if c.returncode != 0:
            log.seek(0)
            raise SystemExit(f"flow failed: {log.read().decode(errors='replace')[-3000:]}")
    elapsed = time.perf_counter() - start
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=100, help="samples per series")
    ap.add_argument("--partitions", type=int, default=4)
    a = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    msgs = messages(a.instances, a.samples)
    n = len(msgs)
    topic, empty = make_topic(admin, a.partitions), make_topic(admin, a.partitions)
    produce(bootstrap, topic, msgs)
    del msgs
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    receiver = Receiver()
    env = {
        **os.environ,
        "KAFKA_TAIL": "false",
        "RULES_PATH": str(rules_file(tmp / "rules.yml")),
        "NOTIFY_URL": receiver.url,
        "ALERTS_TOPIC": f"bench.alerts.{uuid.uuid4().hex[:6]}",
        "_ADDRS": "127.0.0.1:19771;127.0.0.1:19772",
        "METRICS_PORT": "0",
    }
    admin.create_topics([NewTopic(env["ALERTS_TOPIC"], num_partitions=1, replication_factor=1)])
    ceil = ceiling(bootstrap, topic, n)
    emit({"bench": "ceiling_consume_decode", "messages": n, "messages_per_s": round(ceil)})
    startup, _ = run_flow(["-w1"], {**env, "METRIC_TOPICS": empty})
    sent = 0
    for label, args, procs in (
        ("1_worker", ["-w1"], 1),
        ("2_workers", ["-w2"], 1),
        ("2_processes", ["-w1"], 2),
    ):
        elapsed, rss = run_flow(args, {**env, "METRIC_TOPICS": topic}, procs)
        rate = n / max(elapsed - startup, 1e-9)
        emit(
            {
                "bench": f"alerting_{label}",
                "messages": n,
                "series": a.instances * 10,
                "rules": 50,
                "seconds": round(elapsed, 2),
                "startup_s": round(startup, 2),
                "messages_per_s": round(rate),
                "ratio_to_ceiling": round(rate / ceil, 3),
                "peak_rss_mib": round(rss / 1024, 1),
                "notifications": len(receiver.posts) - sent,
            }
        )
        sent = len(receiver.posts)
    admin.delete_topics([topic, empty, env["ALERTS_TOPIC"]])


if __name__ == "__main__":
    main()
