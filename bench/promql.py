"""Prometheus rule groups on the stream: `python -m bench.promql [--messages N] [--series S]`.

One recording (bench.backtest's generator: S/4 instances x CPU, memory, connections, disk at a
15 s interval, one instance in 20 with a CPU incident) replayed by `flows.backtest` (event time,
progress off) through, in the same run:

- `seed`:       the bundled seed rules (rules/bundled/alert-rules.yml), the engine's baseline;
- `threshold`:  the same thresholds as a PromQL group (rules/bundled/prometheus/databases.yml);
- `aggregated`: an aggregated rule set (recording `by (region)` rules and alerts on them,
                plus a `max by (region)` alert), what the seed formats cannot express.

Prints one JSON line {"bench": "promql", "messages": N, "<set>_messages_per_s": ..., ...,
"aggregated_to_threshold": ratio, "threshold_to_seed": ratio}; the ratios are what to compare
across machines (same data, same process).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/run.sh runs it as a script

from bench.backtest import generate
from flows import backtest
from rules.loader import BUNDLED, load_rules
from rules.model import RuleSet
from rules.promql.rulefile import load_prometheus_rules

AGGREGATED = """\
groups:
  - name: regions
    interval: 1m
    rules:
      - record: region:cpu_usage_percent:avg
        expr: avg by (environment, region) (avg_over_time(cpu_usage_percent[1m]))
      - record: region:connection_usage_percent:max
        expr: max by (environment, region) (connection_usage_percent)
      - alert: RegionCPUHigh
        expr: region:cpu_usage_percent:avg > 60
        for: 2m
        labels: {severity: warning}
      - alert: RegionConnectionsHigh
        expr: region:connection_usage_percent:max > 47.5
        for: 2m
        labels: {severity: warning}
      - alert: HottestInstanceInRegion
        expr: max by (region) (avg_over_time(cpu_usage_percent[1m])) > 90
        for: 3m
        labels: {severity: critical}
"""


def run(path: Path, ruleset: RuleSet, groups: list[object]) -> tuple[float, int, int]:
    started = time.perf_counter()
    result = backtest.replay(
        [("A", ruleset)],
        backtest.file_input([path], progress_s=0),
        groups={"A": groups} if groups else None,  # type: ignore[dict-item]
    )
    return time.perf_counter() - started, result.messages, len(result.records["A"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.promql", description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--series", type=int, default=4_000)
    args = ap.parse_args(argv)
    out: dict[str, object] = {"bench": "promql"}
    no_seed = RuleSet(rules=(), allowed_lateness_s=load_rules([BUNDLED]).allowed_lateness_s)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        out["generated"] = generate(path, args.messages, args.series)
        (Path(tmp) / "aggregated.yml").write_text(AGGREGATED)
        sets = {
            "seed": (load_rules([BUNDLED]), []),
            "threshold": (no_seed, load_prometheus_rules([BUNDLED / "prometheus" / "databases.yml"])),
            "aggregated": (no_seed, load_prometheus_rules([Path(tmp) / "aggregated.yml"])),
        }
        rates: dict[str, float] = {}
        for name, (ruleset, groups) in sets.items():
            seconds, messages, transitions = run(path, ruleset, list(groups))
            rates[name] = messages / seconds if seconds else 0.0
            out["messages"] = messages
            out[f"{name}_seconds"] = round(seconds, 3)
            out[f"{name}_messages_per_s"] = round(rates[name])
            out[f"{name}_transitions"] = transitions
    out["series"] = args.series
    out["aggregated_to_threshold"] = round(rates["aggregated"] / rates["threshold"], 3)
    out["threshold_to_seed"] = round(rates["threshold"] / rates["seed"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
