"""Catch-up memory: peak RSS while the alerting job reads a backlog vs its RSS once caught up.

`python bench/catchup.py [--instances 1000] [--history 500] [--steady-s 90] [--diagnose]`
(needs KAFKA_BOOTSTRAP_SERVERS). 10,000 series (instances x 10 metrics), one sample a second
each: `--history` seconds of backlog (5M messages by default) stamped up to the wall time,
then a feeder *process* keeps producing the next seconds in real time (10k msg/s, a moderate
live rate), so the backlog and the live feed are one continuous workload. The job (tailing,
recovery on with its default 10 s snapshots, notifications posted inline to a loopback
receiver: the slow sink) starts on the backlog; its VmRSS is sampled every 0.5 s from /proc.
It has caught up when its `gds_messages_in` (its /metrics) is within 2 s of feed of what the
feeder produced; `peak_catchup_mib` is its highest RSS until then, `after_catchup_median_mib`
its median over the next 20 s (memory a process took is rarely given back: that is no steady
state). Steady state is a second run of the same job, same series and rules, started at the
live end (KAFKA_START=latest) so it is never behind, for `--steady-s` (by default the backlog's
`--history` plus a minute): `steady_median_mib` is its median RSS over the last minute. It runs
that long because the job's state is not stationary after its windows fill: an alert instance
that left INACTIVE keeps its record (resolved, with its fire/resolve times for flapping, over a
30 min window), so it grows with the seconds of data seen, and a job that has caught up on 500 s
of backlog holds 500 s worth of alert state (16k instances against 3.5k after 90 s of live
data). Compared after the same seconds of data, the two jobs hold the same state, and the ratio
measures what the catch-up itself costs. `steady_curve_mib` is the steady job's median RSS in
each minute, and `steady_90s_mib` the median over 45-90 s (the reference before 2026-11-29).
`ratio` = peak / steady (target <= 1.5). `catchup_cpu_s`: the job's user + system CPU until
caught up, of which `catchup_malloc_trim_cpu_s` went to the periodic malloc_trim (connectors/ops/runtime.py).

`--diagnose` answers *what grows*: the job runs with bench/probe on PYTHONPATH (a
sitecustomize that counts the heap's objects by type, glibc's totals and each malloc arena's
size and free bytes and, with tracemalloc on, the bytes by allocating line, on request) and
the line gets `probe`: the answers at the catch-up's peak and in steady state. tracemalloc
slows the job, so those runs' rates are not figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.alerting import make_topic
from bench.common import (
    Receiver,
    RssSampler,
    emit,
    process_cpu_s,
    producer,
    progress,
    rules_file,
    series_mids,
)

ROOT = Path(__file__).resolve().parents[1]
_HEAD = b'{"timestamp":"'
_TAIL = b',"tags":{"environment":"production","region":"eu-west-1"}}'


def step_messages(
    mids: list[bytes], keys: list[bytes], ts: int, level: Any, rng: Any
) -> list[tuple[bytes, bytes]]:
    import numpy as np

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)).encode()
    level[:] = np.clip(level + rng.normal(0, 3, len(mids)), 0.0, 100.0)
    head = _HEAD + stamp
    return [
        (k, b"".join((head, m, b"%.2f" % v, _TAIL)))
        for k, m, v in zip(keys, mids, level.tolist(), strict=True)
    ]


def feed(
    bootstrap: str, topic: str, instances: int, first: int, last: int, produced: Any, live: bool
) -> None:
    """Produce one sample per series for each second in [first, last); `live`: not before that
    second has come (wall time), so a backlog burst is followed by a real-time feed."""
    import numpy as np

    rng = np.random.default_rng(first)
    mids, keys = series_mids(instances)
    level = rng.uniform(20, 70, len(mids))
    p = producer(bootstrap)
    for ts in range(first, last):
        if live:
            wait = ts + 1 - time.time()  # second `ts` is complete at ts + 1
            if wait > 0:
                time.sleep(wait)
        for key, value in step_messages(mids, keys, ts, level, rng):
            try:
                p.produce(topic, value, key)
            except BufferError:
                p.poll(0.05)
                p.produce(topic, value, key)
        p.poll(0)
        if live:
            p.flush(10)
            with produced.get_lock():
                produced.value += len(mids)
    if p.flush(300) != 0:
        raise SystemExit("the broker did not confirm every message")
    if not live:
        with produced.get_lock():
            produced.value += len(mids) * (last - first)


def metric_total(port: int, name: str) -> float | None:
    """The sum of a counter over its labels in the job's /metrics, None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def messages_in(port: int) -> float | None:
    """gds_messages_in of the job's /metrics, None while it does not answer."""
    return metric_total(port, "gds_messages_in_total")


def median_between(samples: list[tuple[float, int]], since: float, until: float) -> float:
    """Median MiB of the RSS samples taken in [since, until), 0 if none."""
    inside = [kib / 1024 for t, kib in samples if since <= t < until]
    return statistics.median(inside) if inside else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(probe: Path, name: str, timeout_s: float = 300) -> dict[str, Any]:
    """One answer of bench/probe/sitecustomize.py in the job."""
    import json

    (probe / f"req-{name}").touch()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = probe / f"{name}.json"
        if answer.exists():
            try:
                return dict(json.loads(answer.read_text()))
            except ValueError:  # still being written
                pass
        time.sleep(0.2)
    return {"error": f"no answer within {timeout_s:g} s"}


class Job:
    """The alerting job, tailing, with its own recovery directory and /metrics port; VmRSS
    sampled every 0.5 s."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        recovery = tmp / f"recovery-{name}"
        recovery.mkdir()
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True, cwd=ROOT)
        cmd = [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1",
               "-r", str(recovery), "-s", "10", "-b", "0"]  # fmt: skip
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("wb")
        env = {**env, "METRICS_PORT": str(self.port)}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        self.rss = RssSampler([self.proc.pid])
        self.started = time.monotonic()

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"the job exited: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.rss.stop()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000, help="10 series each")
    ap.add_argument("--history", type=int, default=500, help="seconds of backlog (one sample a series)")
    ap.add_argument(
        "--steady-s", type=float, default=None, help="seconds of the steady run (default: --history + 60)"
    )
    ap.add_argument("--timeout-s", type=float, default=1200, help="give up catching up after this")
    ap.add_argument("--diagnose", action="store_true", help="probe the job's heap at the catch-up's peak")
    ap.add_argument("--tracemalloc", action="store_true", help="with --diagnose: bytes by line (17x slower)")
    ap.add_argument(
        "--job-env", action="append", default=[], metavar="K=V", help="extra environment of the job"
    )
    a, _ = ap.parse_known_args()
    if a.steady_s is None:
        a.steady_s = a.history + 60.0
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tmp = Path(tempfile.mkdtemp(prefix="bench-catchup-"))
    topic = make_topic(admin, 4)
    alerts, control = f"bench.alerts.{uuid.uuid4().hex[:6]}", f"bench.control.{uuid.uuid4().hex[:6]}"
    for t in (alerts, control):
        admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(30)
    series = a.instances * 10
    now = int(time.time())
    produced = mp.Value("q", 0)
    progress(f"catch-up: producing a backlog of {series * a.history:,} messages")
    t0 = time.perf_counter()
    feed(bootstrap, topic, a.instances, now - a.history, now, produced, live=False)
    produce_s = time.perf_counter() - t0
    live_until = now + 100_000  # the feeder is stopped, never runs out
    feeder = mp.Process(target=feed, args=(bootstrap, topic, a.instances, now, live_until, produced, True))
    feeder.start()
    receiver = Receiver()
    env = {
        **os.environ,
        "METRIC_TOPICS": topic,
        "RULES_PATH": str(rules_file(tmp / "rules.yml")),
        "NOTIFY_URL": receiver.url,
        "NOTIFY_DELIVERY": "inline",
        "ALERTS_TOPIC": alerts,
        "CONTROL_TOPIC": control,
        "KAFKA_START": "earliest",
    }
    env.pop("KAFKA_TAIL", None)
    probe = tmp / "probe"
    if a.diagnose:
        probe.mkdir()
        env["PYTHONPATH"] = f"{ROOT / 'bench' / 'probe'}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["GDS_BENCH_PROBE_DIR"] = str(probe)
        env["GDS_BENCH_TRACEMALLOC"] = "1" if a.tracemalloc else "0"
    env.update(kv.split("=", 1) for kv in a.job_env)
    out: dict[str, Any] = {
        "bench": "catchup_memory",
        "series": series,
        "backlog_messages": series * a.history,
    }
    out.update({"produce_s": round(produce_s, 2), "live_messages_per_s": series, "diagnose": a.diagnose})
    if a.job_env:
        out["job_env"] = a.job_env
    probes: dict[str, Any] = {}
    jobs: list[Job] = []
    try:
        # 1. catch-up: from the start of the topic (the backlog, then the live feed)
        job = Job(tmp, "catchup", env)
        jobs.append(job)
        said = peak_probe_at = 0.0
        while True:
            job.check()
            if time.monotonic() - job.started > a.timeout_s:
                raise SystemExit(
                    f"the job did not catch up within {a.timeout_s:g} s: slower than the live feed"
                    f" ({series:,} msg/s) on this machine now? Try fewer --instances"
                )
            seen = messages_in(job.port)
            if seen is not None and seen >= produced.value - 2 * series:
                break
            if a.diagnose and seen and job.rss.samples and job.rss.last_mib() > 1.1 * peak_probe_at:
                # a new high: the heap near the peak is the evidence
                peak_probe_at = job.rss.last_mib()
                answer = ask(probe, "catchup")
                probes["catchup"] = {"rss_mib": round(peak_probe_at, 1), "messages_in": seen, **answer}
            if time.monotonic() - said > 15:
                said = time.monotonic()
                progress(
                    f"catch-up: {seen or 0:,.0f} of {produced.value:,} read, RSS {job.rss.last_mib():.0f} MiB"
                )
            time.sleep(0.5)
        caught_up = time.monotonic()
        catchup_s = caught_up - job.started
        catchup_cpu_s = process_cpu_s(job.proc.pid)
        trim_cpu_s = metric_total(job.port, "gds_malloc_trim_seconds_total")
        progress(f"caught up after {catchup_s:.0f} s; tailing for 20 s more")
        time.sleep(20)
        peak = max(kib for t, kib in job.rss.samples if t <= caught_up) / 1024
        after = [kib / 1024 for t, kib in job.rss.samples if t > caught_up]
        out.update({
            "catchup_s": round(catchup_s, 1),
            "catchup_messages_per_s": round(series * a.history / catchup_s),
            "catchup_cpu_s": round(catchup_cpu_s, 1),
            "catchup_malloc_trim_cpu_s": round(trim_cpu_s or 0.0, 2),
            "peak_catchup_mib": round(peak, 1),
            "after_catchup_median_mib": round(statistics.median(after), 1),
        })  # fmt: skip
        if a.diagnose:
            probes["after_catchup"] = {"rss_mib": round(job.rss.last_mib(), 1), **ask(probe, "after_catchup")}
        job.stop()
        # 2. steady state: the same job with the same series, started at the live end, never behind
        progress(f"steady state: a fresh job tailing the live feed for {a.steady_s:g} s")
        steady_job = Job(tmp, "steady", {**env, "KAFKA_START": "latest"})
        jobs.append(steady_job)
        deadline = time.monotonic() + a.steady_s
        while time.monotonic() < deadline:
            steady_job.check()
            time.sleep(0.5)
        if a.diagnose:
            probes["steady"] = {"rss_mib": round(steady_job.rss.last_mib(), 1), **ask(probe, "steady")}
        # the last minute (or half): the job has seen as many seconds of data as the backlog held
        start = steady_job.started
        tail = max(start + a.steady_s / 2, start + a.steady_s - 60)
        steady = [kib / 1024 for t, kib in steady_job.rss.samples if t > tail]
        out.update({
            "steady_s": a.steady_s,
            "steady_median_mib": round(statistics.median(steady), 1),
            "steady_peak_mib": round(max(steady), 1),
            "steady_curve_mib": [
                round(median_between(steady_job.rss.samples, start + m, start + m + 60), 1)
                for m in range(0, int(a.steady_s) - 59, 60)
            ],
            "ratio": round(peak / statistics.median(steady), 3),
            "notifications": len(receiver.posts),
        })  # fmt: skip
        if a.steady_s >= 90:  # the reference before 2026-11-29, for comparison
            out["steady_90s_mib"] = round(median_between(steady_job.rss.samples, start + 45, start + 90), 1)
        if probes:
            out["probe"] = probes
    finally:
        feeder.terminate()
        feeder.join(10)
        for j in jobs:
            if j.proc.poll() is None or not j._log.closed:
                j.stop()
        admin.delete_topics([topic, alerts, control])
        shutil.rmtree(tmp, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
