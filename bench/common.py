"""Shared pieces of the benchmarks: generated series, rules, a fast loopback receiver."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

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


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
