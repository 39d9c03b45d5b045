"""docs/silences.md's example, loaded and run as written (so the page cannot rot).

The YAML block is loaded with the bundled rules and replayed through the backtest (the live
job's own evaluation): the silence mutes the bundled sample's CPU incident, the inhibit rule
mutes a warning under a critical, the staging silence spares critical alerts. The Redis
maintenance commands run against the real Redis and the job's own checker.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.notify.maintenance import maintenance_key, redis_maintenance_checker
from flows import backtest
from rules.loader import BUNDLED, load_rules
from tests.support.data import T0, write_jsonl
from tests.support.events import alert_event

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "silences.md"
SAMPLE = ROOT / "flows" / "sample" / "metrics.jsonl"


def example_file(tmp_path: Path) -> Path:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    path = tmp_path / "silences.yml"
    path.write_text(block)
    return path


def cpu_rows(instance: str, environment: str, value: float, minutes: int = 30) -> list[dict[str, Any]]:
    """`value` from minute 2 to 20 of the sample's day, 20 otherwise, 15 s apart."""
    out = []
    for step in range(minutes * 4):
        ts = T0 + step * 15
        out.append({
            "timestamp": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
            "database_type": "postgresql", "instance_id": instance, "metric_name": "cpu_usage_percent",
            "value": value if 2 <= step / 4 < 20 else 20.0,
            "tags": {"environment": environment, "region": "eu-west-1"},
        })  # fmt: skip
    return out


def transitions(paths: list[Path], inputs: list[Path]) -> list[dict[str, Any]]:
    records, poison = backtest.run(load_rules(paths), inputs, all_states=True)
    assert poison == []
    return records


def one(records: list[dict[str, Any]], name: str, instance: str, state: str) -> dict[str, Any]:
    (r,) = [
        r
        for r in records
        if r["alert_name"] == name and r["labels"]["instance_id"] == instance and r["state"] == state
    ]
    return r


def test_the_example_loads_with_the_bundled_rules(tmp_path: Path) -> None:
    rs = load_rules([BUNDLED, example_file(tmp_path)])
    assert len(rs.silences) == 2 and len(rs.inhibit_rules) == 2
    assert rs.silences[0].comment.startswith("CHG-1234")


def test_the_silence_mutes_the_sample_incident(tmp_path: Path) -> None:
    plain = transitions([BUNDLED], [SAMPLE])
    silenced = transitions([BUNDLED, example_file(tmp_path)], [SAMPLE])
    assert one(plain, "HighCPUUsage", "prod-db-01", "firing")["suppressed"] is None
    fired = one(silenced, "HighCPUUsage", "prod-db-01", "firing")
    assert fired["suppressed"] == "silenced"
    # recorded all the same, and its resolution is not announced either
    assert one(silenced, "HighCPUUsage", "prod-db-01", "resolved")["suppressed"] == "not_announced"


def test_inhibition_and_the_staging_silence(tmp_path: Path) -> None:
    data = tmp_path / "cpu.jsonl"
    write_jsonl(data, sorted(cpu_rows("db-hot", "production", 97.0) + cpu_rows("db-stg", "staging", 97.0),
                             key=lambda r: str(r["timestamp"])))  # fmt: skip
    got = transitions([BUNDLED, example_file(tmp_path)], [data])
    # production: the critical fires first and mutes the warning of the same instance
    assert one(got, "CriticalCPUUsage", "db-hot", "firing")["suppressed"] is None
    assert one(got, "HighCPUUsage", "db-hot", "firing")["suppressed"] == "inhibited"
    # staging: the week's silence mutes everything but critical alerts
    assert one(got, "CriticalCPUUsage", "db-stg", "firing")["suppressed"] is None
    assert one(got, "HighCPUUsage", "db-stg", "firing")["suppressed"] == "silenced"


def test_the_maintenance_commands(redis_url: str) -> None:
    commands = [
        shlex.split(line.split("#", 1)[0])[1:]
        for line in DOC.read_text().splitlines()
        if line.startswith("redis-cli ")
    ]
    set_cmd = next(c for c in commands if c[0] == "SET")
    del_cmd = next(c for c in commands if c[0] == "DEL")
    assert set_cmd[1] == maintenance_key("prod-db-01") == del_cmd[1]
    client = redis.Redis.from_url(redis_url)
    is_muted = redis_maintenance_checker(client)
    events = [alert_event(), alert_event(labels=(("instance_id", "prod-db-02"),))]
    try:
        client.execute_command(*set_cmd)
        assert 0 < int(client.ttl(set_cmd[1])) <= 3600
        assert is_muted(events) == [True, False]
        client.execute_command(*del_cmd)
        assert is_muted(events) == [False, False]
    finally:
        client.delete(set_cmd[1])
        client.close()
