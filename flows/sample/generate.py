"""Regenerate the bundled sample: `python -m flows.sample.generate > flows/sample/metrics.jsonl`.

Four instances, 45 minutes at a 15 s scrape interval, seeded so the file is stable.
One incident: prod-db-01's CPU climbs above 80 % from 10:10 to 10:24 (HighCPUUsage fires
once after its 5 m `for` and resolves once when it stops); everything else stays healthy.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta

START = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
STEPS = 180  # 45 minutes
INSTANCES = [
    ("prod-db-01", "postgresql", "production", "us-east-1"),
    ("prod-db-02", "postgresql", "production", "us-east-1"),
    ("prod-replica-01", "postgresql", "production", "us-west-2"),
    ("stg-db-01", "mysql", "staging", "eu-west-1"),
]


def cpu(instance: str, minute: float, rng: random.Random) -> float:
    base = 35.0 + 10 * (instance == "prod-db-02")
    if instance == "prod-db-01" and 10 <= minute < 24:
        base = 91.0  # the incident
    return round(min(99.0, max(1.0, base + rng.gauss(0, 1.5))), 2)


def rows() -> list[dict[str, object]]:
    rng = random.Random(20250115)
    out: list[dict[str, object]] = []
    for i in range(STEPS):
        t = START + i * STEP
        minute = i * STEP.total_seconds() / 60
        stamp = t.isoformat().replace("+00:00", "Z")
        for iid, dbt, env, region in INSTANCES:
            tags = {"environment": env, "region": region}
            values = {
                "cpu_usage_percent": cpu(iid, minute, rng),
                "memory_usage_percent": round(62 + rng.gauss(0, 2), 2),
                "connection_usage_percent": round(40 + rng.gauss(0, 4), 2),
                "up": 1.0,
            }
            if dbt == "postgresql" and "replica" in iid:
                values["replication_lag_seconds"] = round(abs(rng.gauss(2, 1)), 3)
            for name, value in values.items():
                out.append(
                    {
                        "timestamp": stamp,
                        "database_type": dbt,
                        "instance_id": iid,
                        "metric_name": name,
                        "value": value,
                        "tags": tags,
                        "metadata": {"collector": "sample", "version": "1"},
                    }
                )
            out.append(
                {
                    "timestamp": stamp,
                    "database_type": dbt,
                    "instance_id": iid,
                    "metric_name": "disk_usage_percent",
                    "value": round(55 + minute * 0.05, 2),
                    "tags": {**tags, "mount": "/var/lib/data"},
                    "metadata": {"collector": "sample"},
                }
            )
    return out


if __name__ == "__main__":
    for row in rows():
        sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")
