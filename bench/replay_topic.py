"""Issue 5's acceptance run: a topic of millions of messages replayed by the backtest must
give the live job's transitions. `python bench/replay_topic.py [--instances 1000 --samples 500]`
(5,000,000 messages by default; needs KAFKA_BOOTSTRAP_SERVERS; several minutes).

Prints one JSON line: both rates and whether the two transition sets are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.alerting import make_topic, produce
from bench.common import emit, messages, rules_file

ROOT = Path(__file__).resolve().parents[1]
NOTIFIED = ("first", "resolved")


def live_transitions(bootstrap: str, topic: str) -> set[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})  # fmt: skip
    c.assign([TopicPartition(topic, 0, 0)])
    ids: set[str] = set()
    idle = 0
    while idle < 5:
        batch = c.consume(1000, timeout=1.0)
        idle = idle + 1 if not batch else 0
        for m in batch:
            value = m.value()
            if m.error() is None and value is not None:
                rec = json.loads(value)
                if rec.get("notify") in NOTIFIED:
                    ids.add(rec["message_id"])
    c.close()
    return ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=500)
    a = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    rules = rules_file(tmp / "rules.yml")
    topic = make_topic(admin, 4)
    alerts = f"bench.alerts.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(alerts, num_partitions=1, replication_factor=1)])[alerts].result(30)
    msgs = messages(a.instances, a.samples)
    n = len(msgs)
    produce(bootstrap, topic, msgs)
    del msgs
    env = {**os.environ, "METRIC_TOPICS": topic, "ALERTS_TOPIC": alerts, "KAFKA_TAIL": "false",
           "RULES_PATH": str(rules), "METRICS_PORT": "0"}  # fmt: skip
    env.pop("NOTIFY_URL", None)
    start = time.perf_counter()
    job = [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1"]
    subprocess.run(job, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    live_s = time.perf_counter() - start
    out = tmp / "backtest.jsonl"
    start = time.perf_counter()
    replay = [sys.executable, "-m", "flows.backtest", "--rules", str(rules), "--topic", topic,
              "--from", "2025-01-01T00:00:00Z", "--output", str(out), "--progress", "0"]  # fmt: skip
    subprocess.run(replay, cwd=ROOT, check=True)
    replay_s = time.perf_counter() - start
    replayed = {json.loads(line)["message_id"] for line in out.open()}
    live = live_transitions(bootstrap, alerts)
    emit({"bench": "replay_topic_vs_live", "messages": n, "live_messages_per_s": round(n / live_s),
          "backtest_messages_per_s": round(n / replay_s), "transitions": len(replayed),
          "equal": replayed == live, "only_live": len(live - replayed),
          "only_backtest": len(replayed - live)})  # fmt: skip
    admin.delete_topics([topic, alerts])


if __name__ == "__main__":
    main()
