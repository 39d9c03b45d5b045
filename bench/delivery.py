"""Delivery's cost and latency: the alerting job with delivery off vs on, then latency under load.

`python bench/delivery.py [--instances 1000] [--seconds 40] [--load-seconds 45]` (about 5 minutes;
needs KAFKA_BOOTSTRAP_SERVERS). One workload throughout, shaped like a live feed: every instance
sends its 10 metrics once a second, every 10th instance also a `bench_probe` metric that is
high 3 s out of every 10 s, and 51 rules (the 50 of bench/common.py plus `BenchProbe`,
`bench_probe > 50` for 0 s), evaluated every 1 s with 1 s of allowed lateness (the least a
live job accepts) and a 5 s flap window, so probes fire and resolve all the time and each
firing is notified.

1. Throughput, bounded runs (KAFKA_TAIL=false) over the same pre-produced topic, next to a
   consume+decode ceiling measured in the same run: delivery off (`NOTIFY_DELIVERY=separate`:
   the job only writes the alerts topic) and on (inline, one POST per transition to a
   loopback receiver). The ratios to that ceiling are the figures to compare across runs.
2. The live maximum (`alerting_live_max`): the job tails a fresh topic that a producer
   *process* feeds in real time at the delivery-on rate just measured, more than it can follow
   live: on two cores the producer and the broker's writes share the job's cores, which a
   bounded run does not. Its `gds_messages_in` is read every second; the rate once the rules'
   1 m windows are full (each evaluation aggregates 60 samples then, not a few) is the maximum.
3. Latency under load: the job tails a fresh topic that a producer *process* (not a thread:
   it would share the GIL with the receiver's clock) feeds in real time at `--load` (80 %) of
   that live maximum, event time = wall time, measured after a `--warmup` that fills the
   windows (60 s). For each `BenchProbe`
   firing notification, the issue's figure `arrival_to_receiver_p99_ms`: from the "arrival" of
   the sample that makes the alert decidable, i.e. the produce of the instance's first sample
   at or past tick + lateness (it moves the instance's watermark past the tick), to the
   receiver's answer (given at once). Also: `decidable_to_receiver`, from the earlier of that
   sample and wall time reaching tick + lateness (a live engine ages a caught-up instance by
   wall time at the cadence of the source's progress markers, so it often decides before the
   closing sample exists), split at the alert record's produce into `decidable_to_decision`
   (Kafka, source, evaluation) and `decision_to_receiver` (the rest of the dataflow, the notify
   sink); `breach_to_receiver` from the breaching sample itself, which adds the window
   semantics (1 s ticks, 1 s lateness: the next-but-one sample). `--dump` writes each
   notification's timestamps.

One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.alerting import ceiling, make_topic, produce, run_flow
from bench.catchup import free_port, messages_in
from bench.common import METRICS, T0, Receiver, emit, process_cpu_s, rules_file

ROOT = Path(__file__).resolve().parents[1]
PROBE = "BenchProbe"
PROBE_EVERY = 10  # every 10th instance carries a probe
PROBE_PERIOD, PROBE_HIGH = 10, 3  # high 3 s out of every 10 s
LATENESS_S = 1.0  # flows.alerting refuses less on a tailing job
TAIL_S = 5.0  # the feed goes on after the measured window, so its last ticks close as the others
WINDOWS_FULL_S = 60.0  # the rules' longest window (bench/common.py): evaluation costs the most from then on
TARGET_P99_MS = 250.0  # issue 16: arrival to the receiver's answer at 80 % of the maximum throughput


def write_rules(path: Path) -> Path:
    rules = yaml.safe_load(rules_file(path).read_text())["alert_rules"]
    rules.append({
        "name": PROBE, "metric": "bench_probe", "window": "1s", "severity": "warning",
        "condition": {"operator": ">", "threshold": 50, "duration": "0s", "aggregation": "last"},
    })  # fmt: skip
    # flap_window 5 s: a probe that fires every 10 s is a run of incidents, not one flapping
    # alert (whose notifications the engine would hold back)
    settings = {"evaluation_interval": "1s", "allowed_lateness": f"{LATENESS_S:g}s", "flap_window": "5s"}
    path.write_text(yaml.safe_dump({"settings": settings, "alert_rules": rules}, sort_keys=False))
    return path


def per_second(instances: int) -> int:
    """Messages one second of the workload holds."""
    return instances * len(METRICS) + len(range(0, instances, PROBE_EVERY))


REVERT = 0.03  # pull towards each series' own mean per second
STEP_SD = 3.0
STATIONARY_SD = STEP_SD / math.sqrt(REVERT * (2 - REVERT))  # ~12.3, the walk's spread at any time


class Workload:
    """The feed, one second of event time at a time; probes square waves, the rest mean-reverting
    walks in 0..100 (Ornstein-Uhlenbeck), started in their stationary spread.

    Stationary on purpose: the load is a fraction of the throughput measured on the first 40
    seconds, and plain random walks drifted further past the rules' thresholds every second,
    so the alert events (and the job's work a message) grew eightfold over a latency run."""

    def __init__(self, instances: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.iids = [f"bench-db-{i:05d}" for i in range(instances)]
        self.mean = [[self.rng.uniform(20, 70) for _ in METRICS] for _ in self.iids]
        self.level = [[mu + self.rng.gauss(0, STATIONARY_SD) for mu in means] for means in self.mean]

    def second(self, k: int) -> Iterator[tuple[int, str, str, float]]:
        """(instance index, instance id, metric, value) of second `k`, instance by instance."""
        gauss = self.rng.gauss
        for i, iid in enumerate(self.iids):
            levels, means = self.level[i], self.mean[i]
            for j, m in enumerate(METRICS):
                lv = levels[j] = levels[j] + REVERT * (means[j] - levels[j]) + gauss(0, STEP_SD)
                yield i, iid, m, round(min(100.0, max(0.0, lv)), 2)
            if i % PROBE_EVERY == 0:
                yield i, iid, "bench_probe", probe_value(i, k)


def probe_value(i: int, k: int) -> float:
    # phases spread over the period: breaches arrive all the time, not in one burst every 10 s
    return 99.0 if (k + i // PROBE_EVERY) % PROBE_PERIOD < PROBE_HIGH else 1.0


def body(iid: str, metric: str, value: float, stamp: str) -> bytes:
    return (
        f'{{"timestamp":"{stamp}","database_type":"postgresql","instance_id":"{iid}",'
        f'"metric_name":"{metric}","value":{value},'
        '"tags":{"environment":"production","region":"eu-west-1"}}'
    ).encode()


def iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bounded_messages(instances: int, seconds: int) -> list[tuple[bytes, bytes]]:
    w = Workload(instances)
    out = []
    for k in range(seconds):
        stamp = iso_ms(T0 + k + 0.5)
        out += [(iid.encode(), body(iid, m, v, stamp)) for _, iid, m, v in w.second(k)]
    return out


def pace(bootstrap: str, topic: str, instances: int, seconds: float, out: str) -> None:
    """Producer process: the workload in real time (event time = wall time), spread evenly over
    each second; writes what it sent and when each probe breach was produced to `out`."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    w = Workload(instances, seed=2)
    n_sec = per_second(instances)
    chunk = max(1, n_sec // 200)  # ~5 ms slices
    breaches: list[tuple[str, float, float]] = []  # (iid, event ts, produced at)
    probes: dict[str, list[float]] = {}  # every probe sample's event time (= its produce time)
    sent = 0
    start = time.time()
    k = 0
    while time.time() - start < seconds:
        base = start + k
        for n, (i, iid, m, v) in enumerate(w.second(k)):
            if n % chunk == 0:
                due = base + n / n_sec
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                now = time.time()
                stamp = iso_ms(now)
                p.poll(0)
            while True:
                try:
                    p.produce(topic, body(iid, m, v, stamp), iid.encode())
                    break
                except BufferError:
                    p.poll(0.01)
            sent += 1
            if m == "bench_probe":
                ts = math.floor(now * 1000) / 1000  # as stamped
                probes.setdefault(iid, []).append(ts)
                if v > 50 and probe_value(i, k - 1) < 50:
                    breaches.append((iid, ts, time.time()))
        k += 1
    p.flush(30)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    fed = {
        "sent": sent, "seconds": time.time() - start, "breaches": breaches, "probes": probes,
        "cpu_s": ru.ru_utime + ru.ru_stime,
    }  # fmt: skip
    Path(out).write_text(json.dumps(fed))


def active_at(correlation_id: str) -> float:
    return datetime.fromisoformat(correlation_id.rsplit("@", 1)[1].replace("Z", "+00:00")).timestamp()


def quantiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 1),
        "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000, 1),
        "max_ms": round(xs[-1] * 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (Linux /proc), 0 when unreadable."""
    try:
        return process_cpu_s(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


def decided_at(bootstrap: str, topic: str) -> dict[str, float]:
    """message_id -> when the job produced the alert record of a probe firing (its Kafka
    timestamp): the moment evaluation decided, between the sample's produce and the POST."""
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    c.subscribe([topic])
    out: dict[str, float] = {}
    parts = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        msgs = c.consume(1000, 1.0)
        for m in msgs:
            if m.error() is not None:
                parts += 1  # _PARTITION_EOF: the alerts topic has one partition
                continue
            rec = json.loads(m.value() or b"{}")
            if rec.get("alert_name") == PROBE and rec.get("state") == "firing":
                out[rec["message_id"]] = m.timestamp()[1] / 1000
        if parts:
            break
    c.close()
    return out


def start_job(env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    """The live alerting job, one worker, its log in `tmp`."""
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "job.log").open("wb"),
    )


def feed_instances(rate: float) -> int:
    """Instances whose samples make `rate` messages a second."""
    return max(PROBE_EVERY, round(rate / (len(METRICS) + 1 / PROBE_EVERY)))


def live_max_rate(bootstrap: str, env: dict[str, str], rate: float, seconds: float) -> dict[str, Any]:
    """The most the job takes in live: a producer process feeds it in real time at `rate` (more
    than it can follow, e.g. its bounded rate), and the job's `gds_messages_in` is read every
    second. On this machine the producer and the broker's writes share the job's cores, which a
    bounded run over a pre-produced topic does not: its rate is no live maximum."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = make_topic(admin, 4)
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    port = free_port()
    job_env = {
        **env, "METRIC_TOPICS": topic, "NOTIFY_URL": receiver.url, "KAFKA_TAIL": "true",
        "METRICS_PORT": str(port),
    }  # fmt: skip
    job = start_job(job_env, tmp)
    time.sleep(3)
    report = tmp / "producer.json"
    producer = mp.get_context("spawn").Process(
        target=pace, args=(bootstrap, topic, feed_instances(rate), seconds, str(report))
    )
    started = time.time()
    producer.start()
    seen: list[tuple[float, float]] = []  # (wall time, messages taken in so far)
    while producer.is_alive():
        n = messages_in(port)
        if n is not None:
            seen.append((time.time(), n))
        producer.join(1.0)
    job.terminate()
    job.wait(timeout=30)
    admin.delete_topics([topic])
    fed = json.loads(report.read_text())
    # once the rules' windows are full: until then each evaluation aggregates fewer samples
    late = [s for s in seen if s[0] >= started + min(WINDOWS_FULL_S, seconds / 2)]
    if len(late) < 2:
        log = (tmp / "job.log").read_text()[-3000:]
        raise SystemExit(f"the job's /metrics did not answer; job log:\n{log}")
    taken = (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])
    fed_rate = fed["sent"] / fed["seconds"]
    return {
        "bench": "alerting_live_max",
        "fed_messages_per_s": round(fed_rate),
        "messages_per_s": round(taken),
        # fell behind the feed: `messages_per_s` is the job's live maximum; else a lower bound
        "saturated": taken < 0.95 * fed_rate,
        "seconds": round(seconds),
        "producer_cores": round(fed["cpu_s"] / fed["seconds"], 2),
    }


def latency_under_load(
    bootstrap: str,
    env: dict[str, str],
    rate: float,
    load_seconds: float,
    warmup: float,
    dump: str | None = None,
) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = make_topic(admin, 4)
    instances = feed_instances(rate)
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    job_env = {**env, "METRIC_TOPICS": topic, "NOTIFY_URL": receiver.url, "KAFKA_TAIL": "true"}
    job_started = time.time()
    job = start_job(job_env, tmp)
    time.sleep(3)  # let it subscribe; anything earlier is read from the start anyway
    report = tmp / "producer.json"
    producer = mp.get_context("spawn").Process(
        target=pace, args=(bootstrap, topic, instances, warmup + load_seconds + TAIL_S, str(report))
    )
    producer.start()
    producer.join(warmup + load_seconds + TAIL_S + 120)
    time.sleep(2)
    job_cpu_s = cpu_seconds(job.pid)
    job_wall_s = time.time() - job_started
    job.terminate()
    job.wait(timeout=30)
    admin.delete_topics([topic])
    if job.returncode not in (0, -15):
        raise SystemExit(f"job failed: {(tmp / 'job.log').read_text()[-3000:]}")
    fed = json.loads(report.read_text())
    start = min((b[2] for b in fed["breaches"]), default=0.0)
    # measured: breaches after the warm-up and before the tail (whose ticks the feed still closes)
    window = (start + warmup, start + warmup + load_seconds)
    # probe breaches by instance, oldest first: a firing notification belongs to the newest
    # breach at or before its alert's active_at
    by_iid: dict[str, list[tuple[float, float]]] = {}
    for iid, ts, produced in fed["breaches"]:
        by_iid.setdefault(iid, []).append((ts, produced))
    decided = decided_at(bootstrap, env["ALERTS_TOPIC"])
    total: list[float] = []
    overhead: list[float] = []
    strict: list[float] = []  # decidable by either rule -> POST at the receiver
    evaluation: list[float] = []  # decidable -> alert record produced
    delivery: list[float] = []  # alert record produced -> POST at the receiver
    rows: list[dict[str, Any]] = []  # --dump: one per notification, to see where a tail comes from
    with receiver.lock:
        posts = list(receiver.posts)
    for arrived, post in posts:
        if post.get("alert_name") != PROBE or post.get("state") != "firing":
            continue
        at = active_at(post["correlation_id"])
        cands = [b for b in by_iid.get(post["db_instance_id"], []) if b[0] <= at + 1e-3]
        if not cands or not window[0] <= cands[-1][1] < window[1]:
            continue
        ts, produced = cands[-1]
        total.append(arrived - produced)
        # the instance's first sample at or past tick + lateness moves its watermark over the
        # tick: before it is produced the alert cannot fire (live, quiet inputs aside)
        closing = next((t for t in fed["probes"][post["db_instance_id"]] if t >= at + LATENESS_S), ts)
        arrival = max(produced, closing)
        overhead.append(arrived - arrival)
        # decidable by either rule: a sample moves the watermark past the tick (`closing`), or
        # wall time does once the input is caught up (tick + lateness, rules/engine.advance_idle;
        # event time is wall time here), whichever comes first
        decidable = max(produced, min(closing, at + LATENESS_S))
        strict.append(arrived - decidable)
        decision = decided.get(post.get("message_id", ""))
        if decision is not None:
            evaluation.append(decision - decidable)
            delivery.append(arrived - decision)
        rows.append({"instance": post["db_instance_id"], "breach_produced": produced, "closing": closing,
                     "active_at": at, "decided": decision, "received": arrived})  # fmt: skip
    if dump:
        Path(dump).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    expected = sum(1 for b in fed["breaches"] if window[0] <= b[2] < window[1])
    if not total:
        raise SystemExit(f"no probe notification matched; job log:\n{(tmp / 'job.log').read_text()[-3000:]}")
    share = quantiles(overhead)
    return {
        "bench": "delivery_latency_under_load",
        # the figure: from the arrival (produce) of the sample that makes the alert
        # decidable (moves its instance's watermark past the tick) to the receiver's answer
        "arrival_to_receiver_p99_ms": share["p99_ms"],
        "arrival_to_receiver_p50_ms": share["p50_ms"],
        "target_p99_ms": TARGET_P99_MS,
        "met": share["p99_ms"] < TARGET_P99_MS,
        "load_messages_per_s": round(fed["sent"] / fed["seconds"]),
        "target_messages_per_s": round(rate),
        "instances": instances,
        "seconds": round(load_seconds),
        "notifications": len(total),
        "breaches": expected,
        # cores used: on a 2-core machine the feeding producer and the broker compete with the job
        "job_cores": round(job_cpu_s / job_wall_s, 2),
        "producer_cores": round(fed["cpu_s"] / fed["seconds"], 2),
        "arrival_to_receiver": share,
        # the same from the moment the alert was decidable by either rule (the closing sample, or
        # wall time past tick + lateness with the input caught up): the wall-time rule often
        # decides before the closing sample is even produced, at the cadence of SourceProgress
        "decidable_to_receiver": quantiles(strict),
        # where that goes: to the alert record's produce (Kafka, the source, evaluation, progress
        # markers), then to the POST (the rest of the dataflow, the notify sink)
        "decidable_to_decision": quantiles(evaluation) if evaluation else None,
        "decision_to_receiver": quantiles(delivery) if delivery else None,
        # from the breaching sample itself: adds the window semantics (1 s ticks, 1 s lateness)
        "breach_to_receiver": quantiles(total),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000, help="throughput runs")
    ap.add_argument("--seconds", type=int, default=40, help="event seconds of the throughput runs")
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the live maximum")
    ap.add_argument("--load-seconds", type=float, default=45.0)
    ap.add_argument("--live-max-seconds", type=float, default=90.0, help="the live maximum's feed")
    # windows full (WINDOWS_FULL_S) before the measured breaches: a steady state, not a ramp
    ap.add_argument("--warmup", type=float, default=WINDOWS_FULL_S)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=float, help="feed the latency run this many msg/s; skip part 1")
    ap.add_argument("--live-max", type=float, help="only the live maximum, fed this many msg/s")
    ap.add_argument("--dump", help="write each probe notification's timestamps here (JSON lines)")
    a = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if a.rate or a.live_max:
        env = {**os.environ, "METRICS_PORT": "0", "RECOVERY_DIR": "off"}
        env["RULES_PATH"] = str(write_rules(Path(tempfile.mkdtemp(prefix="bench-delivery-")) / "rules.yml"))
        env["ALERTS_TOPIC"] = f"bench.alerts.{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(env["ALERTS_TOPIC"], num_partitions=1)])[env["ALERTS_TOPIC"]].result(30)
        if a.live_max:
            emit(live_max_rate(bootstrap, env, a.live_max, a.live_max_seconds))
        else:
            emit(latency_under_load(bootstrap, env, a.rate, a.load_seconds, a.warmup, a.dump))
        admin.delete_topics([env["ALERTS_TOPIC"]])
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    msgs = bounded_messages(a.instances, a.seconds)
    n = len(msgs)
    topic, empty = make_topic(admin, a.partitions), make_topic(admin, a.partitions)
    alerts = f"bench.alerts.{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(alerts, num_partitions=1, replication_factor=1)])[alerts].result(30)
    produce(bootstrap, topic, msgs)
    del msgs
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    receiver = Receiver()
    env = {
        **os.environ,
        "KAFKA_TAIL": "false",
        "RULES_PATH": str(write_rules(tmp / "rules.yml")),
        "NOTIFY_URL": receiver.url,
        "ALERTS_TOPIC": alerts,
        "METRICS_PORT": "0",
        "RECOVERY_DIR": "off",
    }
    ceil = ceiling(bootstrap, topic, n)
    emit({"bench": "delivery_ceiling_consume_decode", "messages": n, "messages_per_s": round(ceil)})
    startup = run_flow(["-w1"], {**env, "METRIC_TOPICS": empty}).seconds
    on_rate = 0.0
    for label, delivery in (("off", "separate"), ("on", "inline")):
        before = len(receiver.posts)
        elapsed = run_flow(["-w1"], {**env, "METRIC_TOPICS": topic, "NOTIFY_DELIVERY": delivery}).seconds
        rate = n / max(elapsed - startup, 1e-9)
        on_rate = rate
        emit(
            {
                "bench": f"alerting_delivery_{label}",
                "messages": n,
                "series": a.instances * len(METRICS) + len(range(0, a.instances, PROBE_EVERY)),
                "rules": 51,
                "seconds": round(elapsed, 2),
                "startup_s": round(startup, 2),
                "messages_per_s": round(rate),
                "ratio_to_ceiling": round(rate / ceil, 3),
                "notifications": len(receiver.posts) - before,
            }
        )
    admin.delete_topics([topic, empty])
    env.pop("KAFKA_TAIL")
    # "80 % of its maximum throughput": of what the job takes in while fed live, when that is
    # less than the bounded rate (on two cores it is: the producer and the broker share them)
    live = live_max_rate(bootstrap, env, on_rate, a.live_max_seconds)
    emit(live)
    top = live["messages_per_s"] if live["saturated"] else on_rate
    result = latency_under_load(bootstrap, env, a.load * top, a.load_seconds, a.warmup, a.dump)
    emit({**result, "load_fraction": a.load, "max_messages_per_s": round(top)})
    admin.delete_topics([alerts])


if __name__ == "__main__":
    main()
