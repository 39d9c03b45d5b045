"""Cardinality: the alerting job in one process at 10k, 100k and 1M active series (50 rules).

`python bench/cardinality.py [--sizes 10000,100000,1000000] [--min-samples 6]
[--min-messages 1000000]` (needs KAFKA_BOOTSTRAP_SERVERS). Per size a fresh 4-partition topic
holds every series `max(min-samples, min-messages / series)` times, 15 s apart (bench.common's
workload, generated from byte templates), and the job reads it bounded (KAFKA_TAIL=false,
NOTIFY_DELIVERY=separate) with recovery on as a tailing job has it (`-r DIR -s 10 -b 0`, a
snapshot every 10 s and at the end). One JSON line per size:
- `messages_per_s`: messages / (wall time - start-up of the same job on an empty topic, median
  of 3);
- `peak_rss_mib` and `rss_after_load_mib`, VmRSS sampled every 0.5 s from /proc: the latter is
  the median over the second half of the run, when every series exists (each 15 s step holds
  every series) and the input still flows (the last sample can fall into the process's
  teardown: 653 MiB after a 1.85 GiB peak at 1M series); `rss_per_series_bytes` = (after load
  - the RSS of the same job on the empty topic) / series. Both include what the Kafka consumer
  buffers while the job is behind (see bench/catchup.py);
- `snapshot_bytes_per_series`: what the job really wrote: the newest snapshot of every key of
  its evaluation step in the recovery sqlite files (`snaps.ser_change`, pickled), / series.
Generation and produce times are reported apart (`generate_s`, `produce_s`).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.alerting import make_topic
from bench.common import RssSampler, emit, produce_fast, progress, rules_file

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT_S = 10  # the job's default RECOVERY_SNAPSHOT_S


def snapshot_bytes(directory: Path, step_like: str = "%evaluate%") -> tuple[int, int]:
    """Bytes and keys of the newest snapshot of each key of the steps matching `step_like`."""
    total = keys = 0
    for part in directory.glob("part-*.sqlite3"):
        with sqlite3.connect(part) as db:
            row = db.execute(
                "SELECT coalesce(sum(length(s.ser_change)), 0), count(*) FROM snaps s"
                " JOIN (SELECT step_id, state_key, max(snap_epoch) AS e FROM snaps WHERE step_id LIKE ?"
                "       GROUP BY step_id, state_key) m"
                " ON s.step_id = m.step_id AND s.state_key = m.state_key AND s.snap_epoch = m.e",
                (step_like,),
            ).fetchone()
            total += row[0]
            keys += row[1]
    return total, keys


def run_job(env: dict[str, str], recovery: Path) -> tuple[float, RssSampler]:
    """A bounded run of the job with recovery flags: wall seconds and its RSS samples."""
    if recovery.exists():
        shutil.rmtree(recovery)
    recovery.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True, cwd=ROOT)
    cmd = [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1",
           "-r", str(recovery), "-s", str(SNAPSHOT_S), "-b", "0"]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        rss = RssSampler([proc.pid])
        try:
            proc.wait(timeout=3600)
        finally:
            rss.stop()
            if proc.poll() is None:
                proc.kill()
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"the job failed: {log.read().decode(errors='replace')[-3000:]}")
    return elapsed, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000", help="series per run, comma-separated")
    ap.add_argument("--min-samples", type=int, default=6, help="samples per series, at least")
    ap.add_argument("--min-messages", type=int, default=1_000_000, help="messages per run, at least")
    a, _ = ap.parse_known_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tmp = Path(tempfile.mkdtemp(prefix="bench-cardinality-"))
    alerts = f"bench.alerts.{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(alerts, num_partitions=1, replication_factor=1)])[alerts].result(30)
    env = {
        **os.environ,
        "KAFKA_TAIL": "false",
        "RULES_PATH": str(rules_file(tmp / "rules.yml")),
        "NOTIFY_DELIVERY": "separate",
        "ALERTS_TOPIC": alerts,
        "METRICS_PORT": "0",
        "RECOVERY_DIR": "off",  # the flags below are given explicitly
    }
    empty = make_topic(admin, 4)
    progress("cardinality: the job on an empty topic (start-up, RSS with no series)")
    # median of 3: one start-up on a shared machine can be off by seconds
    idle = [run_job({**env, "METRIC_TOPICS": empty}, tmp / "recovery") for _ in range(3)]
    startup = statistics.median(s for s, _ in idle)
    idle_mib = statistics.median(rss.peak_mib() for _, rss in idle)
    first: float | None = None
    try:
        for series in (int(s) for s in a.sizes.split(",")):
            instances = max(1, series // 10)
            samples = max(a.min_samples, math.ceil(a.min_messages / (instances * 10)))
            topic = make_topic(admin, 4)
            progress(f"cardinality {series:,} series: producing {instances * 10 * samples:,} messages")
            made = produce_fast(bootstrap, topic, instances, samples)
            progress(f"cardinality {series:,} series: the job")
            elapsed, rss = run_job({**env, "METRIC_TOPICS": topic}, tmp / "recovery")
            snap, keys = snapshot_bytes(tmp / "recovery")
            admin.delete_topics([topic])
            rate = made["messages"] / max(elapsed - startup, 1e-9)
            first = first or rate
            half = rss.samples[len(rss.samples) // 2 :]
            after = statistics.median(kib for _, kib in half) / 1024 if half else math.nan
            out: dict[str, Any] = {
                "bench": f"cardinality_{series}",
                "series": instances * 10,
                "rules": 50,
                "samples_per_series": samples,
                **made,
                "seconds": round(elapsed, 2),
                "startup_s": round(startup, 2),
                "messages_per_s": round(rate),
                "ratio_to_first_size": round(rate / first, 3),
                "peak_rss_mib": round(rss.peak_mib(), 1),
                "rss_after_load_mib": round(after, 1),
                "rss_no_series_mib": round(idle_mib, 1),
                "rss_per_series_bytes": round((after - idle_mib) * 1048576 / (instances * 10)),
                "snapshot_bytes": snap,
                "snapshot_keys": keys,
                "snapshot_bytes_per_series": round(snap / (instances * 10), 1),
                "snapshot_source": "recovery sqlite (newest snapshot per key of the evaluation step)",
            }
            emit(out)
    finally:
        admin.delete_topics([empty, alerts])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
