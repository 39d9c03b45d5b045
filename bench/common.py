"""Shared pieces of the benchmarks: generated series, rules, a fast loopback receiver."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer

T0 = 1_736_935_200  # 2025-01-15T10:00:00Z
METRICS = [f"bench_metric_{i}" for i in range(10)]


def rules_file(path: Path, metrics: list[str] = METRICS) -> Path:
    """50 rules: 5 per metric, mixing aggregations, thresholds and durations."""
    aggs = ["avg", "max", "p95", "min", "last"]
    rules = []
    for m in metrics:
        for j, agg in enumerate(aggs):
            rules.append({
                "name": f"{m}_{agg}_high", "metric": m, "window": "1m",
                "condition": {
                    "operator": ">", "threshold": 90 + j, "duration": f"{j + 1}m", "aggregation": agg,
                },
                "severity": "critical" if j == 4 else "warning",
                "annotations": {"summary": "{{ $labels.instance_id }} " + m + " at {{ $value }}"},
            })  # fmt: skip
    path.write_text(yaml.safe_dump({"alert_rules": rules}, sort_keys=False))
    return path


def messages(instances: int, samples_per_series: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs in time order: `instances x 10` series, 15 s apart, random walks in 0..100."""
    rng = random.Random(seed)
    level = {(i, m): rng.uniform(20, 70) for i in range(instances) for m in METRICS}
    out = []
    for step in range(samples_per_series):
        stamp = datetime.fromtimestamp(T0 + step * 15, UTC).isoformat().replace("+00:00", "Z")
        for i in range(instances):
            iid = f"bench-db-{i:05d}"
            key = iid.encode()
            for m in METRICS:
                v = min(100.0, max(0.0, level[(i, m)] + rng.gauss(0, 3)))
                level[(i, m)] = v
                body = {
                    "timestamp": stamp,
                    "database_type": "postgresql",
                    "instance_id": iid,
                    "metric_name": m,
                    "value": round(v, 2),
                    "tags": {"environment": "production", "region": "eu-west-1"},
                }
                out.append((key, json.dumps(body, separators=(",", ":")).encode()))
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:
        arrived = time.time()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.posts.append((arrived, body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.posts: list[tuple[float, dict[str, Any]]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


READY = b'"mode"'  # on a job's stderr once it is imported and built, just before it runs


def say_ready(flow: str) -> None:
    """A bench flow's `READY` line (the jobs print their own): `run_flow` times the run from it."""
    print(json.dumps({"job": flow, "mode": "built, running"}), file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# -- fast generation: 1M series x 6 samples is 6M messages; json.dumps per message would take minutes

_HEAD = b'{"timestamp":"'
_TAIL = b',"tags":{"environment":"production","region":"eu-west-1"}}'


def series_mids(instances: int) -> tuple[list[bytes], list[bytes]]:
    """Per series (instance-major, METRICS order): the bytes between the stamp and the value,
    and the Kafka key (instance_id)."""
    mids, keys = [], []
    for i in range(instances):
        iid = f"bench-db-{i:05d}"
        key = iid.encode()
        for m in METRICS:
            mids.append(
                f'","database_type":"postgresql","instance_id":"{iid}","metric_name":"{m}","value":'.encode()
            )
            keys.append(key)
    return mids, keys


def fast_steps(instances: int, samples_per_series: int, seed: int = 1) -> Iterator[list[tuple[bytes, bytes]]]:
    """The `messages` workload (same shape and value distribution, not the same values), one
    list of (key, value) per 15 s step, built from byte templates and a numpy random walk."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mids, keys = series_mids(instances)
    level = rng.uniform(20, 70, len(mids))
    for step in range(samples_per_series):
        stamp = datetime.fromtimestamp(T0 + step * 15, UTC).isoformat().replace("+00:00", "Z").encode()
        head = _HEAD + stamp
        level = np.clip(level + rng.normal(0, 3, len(mids)), 0.0, 100.0)
        values = [b"%.2f" % v for v in level.tolist()]
        yield [(k, b"".join((head, mid, v, _TAIL))) for k, mid, v in zip(keys, mids, values, strict=True)]


def producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
            "compression.type": "lz4",
        }
    )


def produce_fast(bootstrap: str, topic: str, instances: int, samples_per_series: int) -> dict[str, Any]:
    """Generate and produce the workload step by step (never all of it in memory); the
    generation and the produce loop are timed apart."""
    p = producer(bootstrap)
    gen_s = produce_s = 0.0
    n = 0
    said = time.monotonic()
    steps = fast_steps(instances, samples_per_series)
    while True:
        t = time.perf_counter()
        batch = next(steps, None)
        gen_s += time.perf_counter() - t
        if batch is None:
            break
        t = time.perf_counter()
        send = p.produce
        for key, value in batch:
            try:
                send(topic, value, key)
            except BufferError:
                p.poll(0.05)
                send(topic, value, key)
        p.poll(0)
        produce_s += time.perf_counter() - t
        n += len(batch)
        if time.monotonic() - said > 10:
            said = time.monotonic()
            progress(f"produced {n:,} messages to {topic}")
    t = time.perf_counter()
    if p.flush(300) != 0:
        raise SystemExit(f"{topic}: the broker did not confirm every message within 300 s")
    produce_s += time.perf_counter() - t
    return {"messages": n, "generate_s": round(gen_s, 2), "produce_s": round(produce_s, 2)}


def progress(line: str) -> None:
    """Progress of long runs, on stderr (stdout carries only the JSON lines)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (/proc/PID/stat); OSError
    once it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process (KiB), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler:
    """VmRSS of some processes every `interval_s`, summed, from a thread: `samples` holds
    (monotonic seconds, KiB)."""

    def __init__(self, pids: list[int], interval_s: float = 0.5) -> None:
        self.pids = pids
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            values = [rss_kib(pid) for pid in self.pids]
            alive = [v for v in values if v is not None]
            if alive:
                self.samples.append((time.monotonic(), sum(alive)))
            self._stop.wait(interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mib(self, since: float = -math.inf) -> float:
        return max((kib for t, kib in self.samples if t >= since), default=0) / 1024

    def last_mib(self) -> float:
        return self.samples[-1][1] / 1024 if self.samples else 0.0
