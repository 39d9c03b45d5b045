"""Backtest throughput: `python -m bench.backtest [--messages N] [--series S] [--keep FILE]`.

Generates a JSONL recording of N seed-format messages over S series (S/4 instances x CPU,
memory, connections, disk; 15 s scrape interval; one instance in 20 has a CPU incident),
replays it through the bundled rules with `flows.backtest` exactly as the CLI does (progress
off) and prints one JSON line:
{"bench": "backtest", "messages": N, "seconds": s, "messages_per_s": r, ...}.
Generation is not timed; the file is deleted afterwards unless --keep names it.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flows import backtest
from rules.loader import BUNDLED, load_rules

T0 = 1_736_935_200  # 2025-01-15T10:00:00Z
STEP_S = 15
METRICS = ("cpu_usage_percent", "memory_usage_percent", "connection_usage_percent", "disk_usage_percent")


def _stamp(ts: int) -> str:
    h, rest = divmod(ts - T0, 3600)
    m, s = divmod(rest, 60)
    d, h = divmod(10 + h, 24)
    return f"2025-01-{15 + d:02d}T{h:02d}:{m:02d}:{s:02d}Z"


def generate(path: Path, messages: int, series: int, seed: int = 1) -> int:
    """Write the recording; returns the number of lines (a whole number of scrapes)."""
    rng = random.Random(seed)
    instances = max(1, series // len(METRICS))
    steps = max(1, messages // (instances * len(METRICS)))
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for step in range(steps):
            ts = T0 + step * STEP_S
            stamp = _stamp(ts)
            minute = step * STEP_S / 60
            lines = []
            for k in range(instances):
                iid = f"db-{k:05d}"
                hot = k % 20 == 0 and 5 + k % 7 <= minute < 15 + k % 7
                values = (
                    (97.0 if hot else 35.0) + rng.random() * 2,
                    60.0 + rng.random() * 5,
                    40.0 + rng.random() * 8,
                    55.0 + minute * 0.01,
                )
                region = ("us-east-1", "eu-west-1", "ap-south-1")[k % 3]
                for name, value in zip(METRICS, values, strict=True):
                    tags = {"environment": "production", "region": region}
                    if name == "disk_usage_percent":
                        tags["mount"] = "/var/lib/data"
                    row = {
                        "timestamp": stamp,
                        "database_type": "postgresql",
                        "instance_id": iid,
                        "metric_name": name,
                        "value": round(value, 2),
                        "tags": tags,
                    }
                    lines.append(json.dumps(row, separators=(",", ":")))
            f.write("\n".join(lines) + "\n")
            n += len(lines)
    return n


def topic_backtest(topic: str, rules: Path, env: dict[str, str]) -> dict[str, Any]:
    """`python -m flows.backtest` from a topic, as an operator runs it: its own summary (`seconds`
    and `messages_per_s` after its start-up, `transitions`) plus `command_s`, the wall time of
    the whole command."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "flows.backtest", "--rules", str(rules), "--topic", topic,
               "--from", "2025-01-01T00:00:00Z", "--output", str(Path(tmp) / "out.jsonl"),
               "--progress", "0"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        command_s = time.perf_counter() - started
    summary = next(
        (json.loads(line) for line in reversed(done.stderr.decode().splitlines()) if line.startswith("{")),
        None,
    )
    if summary is None:
        raise SystemExit(f"flows.backtest printed no summary: {done.stderr.decode()[-2000:]}")
    return {**summary, "command_s": round(command_s, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backtest", description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--shards", type=int, default=backtest.DEFAULT_SHARDS)
    ap.add_argument("--keep", type=Path, help="write the recording here and keep it")
    args, _ = ap.parse_known_args(argv)  # bench/run.sh passes its arguments to every bench
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.jsonl"
        n = generate(path, args.messages, args.series)
        ruleset = load_rules([BUNDLED])
        started = time.perf_counter()
        result = backtest.replay(
            [("A", ruleset)], backtest.file_input([path], progress_s=0), shards=args.shards
        )
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bench": "backtest",
                "messages": result.messages,
                "seconds": round(seconds, 3),
                "messages_per_s": round(result.messages / seconds) if seconds else None,
                "generated": n,
                "series": args.series,
                "transitions": len(result.records["A"]),
                "bad_messages": len(result.poison),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
