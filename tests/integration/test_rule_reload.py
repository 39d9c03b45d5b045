"""Rule reload without a restart (issue 13) on a running alerting job with two workers.

An edited rule file (one rule's threshold changed, one rule added, written as editors and
ConfigMap updates write: a new file moved into place) is loaded by the running job: the rule now
above its threshold and the new rule fire, while the alert that was already firing and delivered
is not notified again (its message_ids at the receiver are unchanged). A broken edit is refused,
the log lists the problem with file:line, and the set loaded before keeps running. Each attempt
is one `RuleSetEvent` on the control topic (once per process, not per worker). SIGHUP makes the
job look at the files at once, and does not stop it.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.control.reader import read_all
from rules.control.events import RuleSetEvent
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop
from tests.support.live_job import AlertsTail, LiveMetrics, live_env, start_job, wait_until, write_atomically

pytestmark = pytest.mark.integration

RULES = """
settings: {evaluation_interval: 1s, allowed_lateness: 2s, staleness: 15s}
alert_rules:
  - name: HotCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 80, duration: 0s, aggregation: avg}
    window: 2s
    severity: warning
    repeat_interval: 1h
  - name: HighMemory
    metric: memory_usage_percent
    condition: {operator: ">", threshold: 90, duration: 0s, aggregation: avg}
    window: 2s
    severity: warning
    repeat_interval: 1h
"""
EDITED = (
    RULES.replace("threshold: 90", "threshold: 60")
    + """
  - name: WarmCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 50, duration: 0s, aggregation: avg}
    window: 2s
    severity: info
    repeat_interval: 1h
"""
)
BROKEN = EDITED.replace('operator: ">", threshold: 50', 'operator: "~>", threshold: 50')


@pytest.fixture()
def env(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cpu.yml").write_text(RULES)
    yield live_env(kafka_bootstrap, topic_factory, rules, RULES_RELOAD_S="1")


def test_an_edited_rule_file_is_applied_without_restart_or_renotification(
    env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    rules_file = Path(env["RULES_PATH"]) / "cpu.yml"
    rec = Recorder()
    server = RecordingServer(0, rec)
    log = tmp_path / "alerting.log"
    hot = {"db-0"}
    series = [("db-0", "cpu_usage_percent"), ("db-0", "memory_usage_percent")]

    def values(instance: str, metric: str) -> float:
        if metric == "memory_usage_percent":
            return 70.0  # above the edited threshold only
        return 95.0 if instance in hot else 20.0

    metrics = LiveMetrics(bootstrap, env["METRIC_TOPICS"], series, values)
    job = start_job({**env, "NOTIFY_URL": server.url}, log, workers=2)
    tail = AlertsTail(bootstrap, env["ALERTS_TOPIC"])

    def firing(name: str, instance: str = "db-0") -> Any:
        return lambda r: (
            (r["alert_name"], r["labels"]["instance_id"], r["notify"]) == (name, instance, "first")
        )

    try:
        metrics.start()
        hot_cpu = tail.wait_for(firing("HotCPU"), job, log)
        wait_until(lambda: hot_cpu["message_id"] in rec.ok_ids(), job, log)

        write_atomically(rules_file, EDITED)  # HighMemory's threshold 90 -> 60, WarmCPU added
        memory = tail.wait_for(firing("HighMemory"), job, log)
        warm = tail.wait_for(firing("WarmCPU"), job, log)
        wait_until(lambda: {memory["message_id"], warm["message_id"]} <= set(rec.ok_ids()), job, log)
        time.sleep(3)
        hot_ids = [p.message_id for p in rec.posts if p.body.get("alert_name") == "HotCPU"]
        assert hot_ids == [hot_cpu["message_id"]]  # the unchanged firing alert: not notified again
        assert [r for r in tail.poll() if r["alert_name"] == "HotCPU" and r["notify"]] == [hot_cpu]

        write_atomically(rules_file, BROKEN)
        wait_until(lambda: "refused" in log.read_text(errors="replace"), job, log)
        time.sleep(1.5)
        text = log.read_text(errors="replace")
        located = re.search(
            rf"ERROR .*{re.escape(str(rules_file))}:\d+(:\d+)?: rule 'WarmCPU': operator", text
        )
        assert located, text[-3000:]
        hot.add("db-1")  # the set loaded before keeps running: db-1 gets both CPU alerts
        series.append(("db-1", "cpu_usage_percent"))
        tail.wait_for(firing("HotCPU", "db-1"), job, log)
        tail.wait_for(firing("WarmCPU", "db-1"), job, log)

        job.send_signal(signal.SIGHUP)  # look now (the default action would have ended the job)
        wait_until(
            lambda: "SIGHUP: looking at the rule files now" in log.read_text(errors="replace"), job, log
        )
        time.sleep(1)
        assert job.poll() is None
    finally:
        metrics.stop()
        stop(job)
        tail.close()
        server.stop()

    events = [e for e in read_all(bootstrap, env["CONTROL_TOPIC"]) if isinstance(e, RuleSetEvent)]
    assert [(e.job, e.status, e.rules, e.files) for e in events] == [
        ("alerting", "loaded", 3, (str(rules_file),)),
        ("alerting", "refused", 0, (str(rules_file),)),
    ]
    (problem,) = events[1].problems
    assert problem.startswith(f"{rules_file}:") and "WarmCPU" in problem
    assert events[0].version != events[1].version and events[0].host == events[1].host
