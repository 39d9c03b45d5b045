"""Live silences on a running alerting job (issue 13), with the real broker and a real receiver.

A firing alert has been delivered; a silence published to the job's control topic (as the API
and amtool publish them, with `ControlPublisher`) shows it `suppressed: silenced` on the alerts
topic at the first evaluation tick inside the silence, and nothing more is delivered; expiring
the silence delivers the still-firing alert once more, with a new message_id. Then a backtest of
the recorded metrics plus the control topic (`python -m flows.backtest --topic ...`) shows the
same transitions and suppressions the live job made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.control.publish import ControlPublisher
from rules.metric import iso
from rules.model import Matcher
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop
from tests.support.live_job import (
    ROOT,
    AlertsTail,
    LiveMetrics,
    epoch,
    live_env,
    mute_and_release,
    start_job,
    wait_until,
)

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
LATENESS_S = 3.0  # a control event has this long to reach the job before the tick it affects
RULES = f"""
settings: {{evaluation_interval: {INTERVAL_S:g}s, allowed_lateness: {LATENESS_S:g}s, staleness: 15s}}
alert_rules:
  - name: HotCPU
    metric: cpu_usage_percent
    condition: {{operator: ">", threshold: 80, duration: 0s, aggregation: avg}}
    window: 2s
    severity: critical
    repeat_interval: 1h
"""


@pytest.fixture()
def env(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    yield live_env(kafka_bootstrap, topic_factory, rules)


def key(r: dict[str, Any]) -> tuple[str, ...]:
    fields = (r["alert_name"], r["labels"]["instance_id"], r["state"], r["at"], r["notify"], r["suppressed"])
    return (*map(str, fields), str(r["message_id"]))


def test_a_silence_mutes_a_delivered_alert_within_a_tick_and_its_expiry_notifies_it_again(
    env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    rec = Recorder()
    server = RecordingServer(0, rec)
    log = tmp_path / "alerting.log"
    metrics = LiveMetrics(bootstrap, env["METRIC_TOPICS"], [("db-0", "cpu_usage_percent")], lambda i, m: 95.0)
    job = start_job({**env, "NOTIFY_URL": server.url}, log)
    tail = AlertsTail(bootstrap, env["ALERTS_TOPIC"])
    publisher = ControlPublisher(bootstrap, env["CONTROL_TOPIC"])
    try:
        metrics.start()
        fired = tail.wait_for(lambda r: r["state"] == "firing" and r["notify"] == "first", job, log)
        wait_until(lambda: fired["message_id"] in rec.ok_ids(), job, log)

        _, again = mute_and_release(
            tail, job, log, publisher.publish, rec.ok_ids, fired, Matcher("instance_id", "db-0"), INTERVAL_S
        )
        time.sleep(3 * INTERVAL_S)
        assert rec.ok_ids() == [fired["message_id"], again["message_id"]]  # once more, once
    finally:
        metrics.stop()
        stop(job)
        tail.close()
        publisher.close()
        server.stop()

    # (c) the backtest over the recorded metrics plus the control topic shows what live showed
    live = tail.records
    first_ts = min(float(r["timestamp"]) for r in metrics.rows)
    last_ts = max(float(r["timestamp"]) for r in metrics.rows)
    out = tmp_path / "backtest.jsonl"
    window = ["--from", iso(first_ts - 60), "--to", iso(last_ts + 60), "--full-scan"]
    args = ["--rules", env["RULES_PATH"], "--topic", env["METRIC_TOPICS"], *window]
    args += ["--control-topic", env["CONTROL_TOPIC"], "--all-states", "--output", str(out), "--progress", "0"]
    bt = subprocess.run(
        [sys.executable, "-m", "flows.backtest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bt.returncode == 0, bt.stdout + bt.stderr
    assert "control: 1 silence(s)" in bt.stdout, bt.stdout
    assert json.loads(bt.stderr.strip().splitlines()[-1])["control_silences"] == 1
    backtested = [json.loads(line) for line in out.read_text().splitlines()]
    # both evaluated every tick up to here (the live job's last ones depend on when it stopped)
    cutoff = last_ts - LATENESS_S - 2 * INTERVAL_S
    assert sorted(key(r) for r in live if epoch(r["at"]) < cutoff) == sorted(
        key(r) for r in backtested if epoch(r["at"]) < cutoff
    )
    assert {r["suppressed"] for r in backtested} >= {"silenced"}
