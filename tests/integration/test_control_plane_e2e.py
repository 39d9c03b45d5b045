"""Issue 13 end to end: Debian's amtool -> the control-plane API -> the control topic -> a running
alerting job -> the receiver, every part real (Kafka, PostgreSQL, the API process, the job process).

A firing alert has been delivered. `amtool silence add` mutes it at the first evaluation tick inside
the silence (the alerts topic shows it `suppressed: silenced`, nothing more is delivered);
`amtool silence expire` releases it and the still-firing alert is delivered once more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_server import Api, amtool, running_api
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop
from tests.support.live_job import AlertsTail, LiveMetrics, live_env, start_job, wait_until

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
RULES = """
settings: {evaluation_interval: 1s, allowed_lateness: 3s, staleness: 15s}
alert_rules:
  - name: E2EHotCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 80, duration: 0s, aggregation: avg}
    window: 2s
    severity: critical
    repeat_interval: 1h
"""


@pytest.fixture()
def setup(
    kafka_bootstrap: str, pg_dsn: str, topic_factory: Any, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Api]]:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    control = topic_factory("control")
    env = live_env(kafka_bootstrap, topic_factory, rules, CONTROL_TOPIC=control)
    with running_api(kafka_bootstrap, pg_dsn, control, tmp_path) as api:
        yield env, api


def test_amtool_silence_mutes_a_firing_alert_on_a_running_job_and_its_expiry_releases_it(
    setup: tuple[dict[str, str], Api], tmp_path: Path
) -> None:
    env, api = setup
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    rec = Recorder()
    server = RecordingServer(0, rec)
    log = tmp_path / "alerting.log"
    metrics = LiveMetrics(bootstrap, env["METRIC_TOPICS"], [("db-0", "cpu_usage_percent")], lambda i, m: 95.0)
    job = start_job({**env, "NOTIFY_URL": server.url}, log)
    tail = AlertsTail(bootstrap, env["ALERTS_TOPIC"])
    try:
        metrics.start()
        fired = tail.wait_for(lambda r: r["state"] == "firing" and r["notify"] == "first", job, log)
        wait_until(lambda: fired["message_id"] in rec.ok_ids(), job, log)

        sid = amtool(api, tmp_path, "silence", "add", "alertname=E2EHotCPU", "instance_id=db-0",
                     "--duration=1h", "--comment=CHG-42 e2e").strip()  # fmt: skip
        (silence,) = json.loads(
            amtool(api, tmp_path, "-o", "json", "silence", "query", "alertname=E2EHotCPU")
        )
        assert silence["id"] == sid
        starts = datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00")).timestamp()

        muted = tail.wait_for(lambda r: r["suppressed"] == "silenced", job, log)
        # the first evaluation tick inside the silence shows the same incident muted
        assert datetime.fromisoformat(muted["at"]).timestamp() == math.ceil(starts / INTERVAL_S) * INTERVAL_S
        assert (muted["fingerprint"], muted["active_at"], muted["state"], muted["notify"]) == (
            fired["fingerprint"],
            fired["active_at"],
            "firing",
            None,
        )

        amtool(api, tmp_path, "silence", "expire", sid)
        again = tail.wait_for(
            lambda r: r["notify"] == "unsuppressed" and r["suppressed"] is None and r["at"] > muted["at"],
            job,
            log,
        )
        wait_until(lambda: again["message_id"] in rec.ok_ids(), job, log)
        assert again["fingerprint"] == fired["fingerprint"]
        # exactly two deliveries: the first firing and the release; nothing while it was muted
        assert rec.ok_ids() == [fired["message_id"], again["message_id"]]
    finally:
        metrics.stop()
        stop(job)
        tail.close()
        server.stop()
