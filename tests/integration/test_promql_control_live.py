"""A Prometheus rule group under the control plane of a running alerting job, with the real broker
and a real HTTP receiver: its firing alert is delivered, a silence published to the job's
(private) control topic mutes it at the first tick inside the silence, its expiry delivers it
once more, and an edit of the Prometheus rule file (the threshold) is applied without a restart:
the alert resolves and its resolution is delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.control.publish import ControlPublisher
from rules.model import Matcher
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop
from tests.support.live_job import (
    AlertsTail,
    LiveMetrics,
    live_env,
    mute_and_release,
    start_job,
    wait_until,
    write_atomically,
)

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
SETTINGS = "settings: {evaluation_interval: 1s, allowed_lateness: 2s, staleness: 15s}\nalert_rules: []\n"
GROUP = """\
groups:
  - name: database
    interval: 1s
    rules:
      - alert: HotCPU
        expr: avg_over_time(cpu_usage_percent[2s]) > {threshold}
        labels: {{severity: critical}}
        annotations: {{summary: "{{{{ $labels.instance }}}} at {{{{ $value }}}}%"}}
"""
WARM = """      - alert: WarmCPU
        expr: avg_over_time(cpu_usage_percent[2s]) > 50
        labels: {severity: info}
"""


@pytest.fixture()
def env(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "settings.yml").write_text(SETTINGS)
    (rules / "prometheus.yml").write_text(GROUP.format(threshold=80))
    yield live_env(
        kafka_bootstrap, topic_factory, rules, RECORDED_TOPIC=topic_factory("recorded"), RULES_RELOAD_S="1"
    )


def test_a_group_alert_is_muted_released_and_its_edited_rule_applied_without_restart(
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
        fired = tail.wait_for(lambda r: r["alert_name"] == "HotCPU" and r["notify"] == "first", job, log)
        assert fired["suppressed"] is None and fired["labels"]["instance"] == "db-0"
        wait_until(lambda: fired["message_id"] in rec.ok_ids(), job, log)

        muted, again = mute_and_release(
            tail, job, log, publisher.publish, rec.ok_ids, fired, Matcher("instance", "db-0"), INTERVAL_S
        )
        # while muted nothing was delivered: the receiver saw the first notification, then the release
        assert rec.ok_ids()[:2] == [fired["message_id"], again["message_id"]]
        muted_records = [r for r in tail.records if r["suppressed"] == "silenced"]
        assert [r["message_id"] for r in muted_records] == [muted["message_id"]]  # recorded once

        # the threshold edited to above the samples and a rule added: applied live, the alert
        # resolves (delivered) and the new rule fires
        write_atomically(Path(env["RULES_PATH"]) / "prometheus.yml", GROUP.format(threshold=99) + WARM)
        resolved = tail.wait_for(
            lambda r: r["fingerprint"] == fired["fingerprint"] and r["state"] == "resolved", job, log
        )
        assert resolved["notify"] == "resolved" and resolved["suppressed"] is None
        wait_until(lambda: resolved["message_id"] in rec.ok_ids(), job, log)
        warm = tail.wait_for(lambda r: r["alert_name"] == "WarmCPU" and r["notify"] == "first", job, log)
        wait_until(lambda: warm["message_id"] in rec.ok_ids(), job, log)
        assert job.poll() is None  # no restart
        assert "1 Prometheus rule group(s)" in log.read_text(errors="replace")
        firsts = [r for r in tail.records if r["notify"] == "first"]
        assert [r["message_id"] for r in firsts] == [fired["message_id"], warm["message_id"]]
    finally:
        metrics.stop()
        stop(job)
        tail.close()
        publisher.close()
        server.stop()
