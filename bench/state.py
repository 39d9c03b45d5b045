"""Bytes of recovery state per series: the engine snapshot after 10,000 series x 50 rules."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, messages, rules_file
from connectors.kafka.serde import decode_json
from rules.engine import ShardEngine
from rules.loader import load_rules


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args()
    rules = load_rules([rules_file(Path(tempfile.mkdtemp()) / "rules.yml")])
    engine = ShardEngine(rules)
    for _, raw in messages(a.instances, a.samples):
        engine.ingest([decode_json(raw, math.inf)])
    series = sum(1 for inst in engine.instances.values() for s in inst.series.values() if s is not None)
    blob = engine.snapshot()
    emit(
        {
            "bench": "state_bytes_per_series",
            "series": series,
            "rules": len(rules.rules),
            "snapshot_bytes": len(blob),
            "bytes_per_series": round(len(blob) / series, 1),
        }
    )


if __name__ == "__main__":
    main()
