"""Every component real, none written here except the gateway and the job: Debian's
postgres_exporter watches the local PostgreSQL, Debian's Prometheus 2.42 (agent mode, started by
deploy/local/prometheus.sh) scrapes it and remote-writes to the gateway on GATEWAY_PORT, the gateway
writes the seed messages to Kafka, and the alerting job evaluates the bundled exporter rules
(rules/bundled/prometheus/exporters.yml, unchanged) and delivers to an HTTP receiver.

PostgreSQL is stopped (deploy/local/postgres.sh stop): the exporter's next scrape reports pg_up 0,
PostgresDown fires and is delivered; started again, the alert resolves and that is delivered too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.gateway_job import ROOT, TopicTail, start_gateway
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.jobs import stop
from tests.support.live_job import AlertsTail, epoch, live_env, start_job, wait_until

pytestmark = pytest.mark.integration

LOCAL = ROOT / "deploy" / "local"
BUNDLED = ROOT / "rules" / "bundled" / "prometheus" / "exporters.yml"
# The bundled group (interval 10s) as it is; the settings only make the job quick to notice quiet input.
SETTINGS = "settings: {evaluation_interval: 1s, allowed_lateness: 2s, staleness: 30s}\nalert_rules: []\n"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _postgres(action: str) -> None:
    subprocess.run([str(LOCAL / "postgres.sh"), action], check=True, capture_output=True, timeout=60)


@pytest.fixture()
def environment(kafka_bootstrap: str) -> Iterator[str]:
    """The gateway's default environment for this test only: the samples land on metric topics of
    their own (the postgresql one created up front with one partition, for the job to read)."""
    for var, service in (("PROMETHEUS_PORT", "prometheus.sh"), ("PG_EXPORTER_PORT", "exporters.sh")):
        port = os.environ.get(var)
        if not port:
            pytest.fail(
                f"{var} is not set: `source deploy/local/env.sh` (and {service} start)", pytrace=False
            )
    assert _ready(f"http://127.0.0.1:{os.environ['PROMETHEUS_PORT']}/-/ready"), (
        "no Prometheus agent: run deploy/local/prometheus.sh start (services.sh up does)"
    )
    assert _ready(f"http://127.0.0.1:{os.environ['PG_EXPORTER_PORT']}/metrics"), (
        "no postgres exporter: run deploy/local/exporters.sh start (services.sh up does)"
    )
    env = f"prom_{uuid.uuid4().hex[:10]}"
    topic = f"gds.metrics.postgresql.{env}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    yield env
    # the node exporter's samples went to gds.metrics.os.{env}, which the gateway created
    for fut in admin.delete_topics([topic, f"gds.metrics.os.{env}"]).values():
        with contextlib.suppress(Exception):  # cleanup is best effort
            fut.result(timeout=30)


def test_postgres_down_travels_from_the_exporter_through_prometheus_and_the_gateway_to_a_notification(
    kafka_bootstrap: str, topic_factory: Any, environment: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "settings.yml").write_text(SETTINGS)
    shutil.copy(BUNDLED, rules / "exporters.yml")
    topic = f"gds.metrics.postgresql.{environment}"
    env = live_env(kafka_bootstrap, topic_factory, rules, METRIC_TOPICS=topic)
    instance = f"127.0.0.1:{os.environ['PG_EXPORTER_PORT']}"
    rec = Recorder()
    server = RecordingServer(0, rec)
    gw_log, job_log = tmp_path / "gateway.log", tmp_path / "alerting.log"
    started = time.time()
    gateway = start_gateway(
        int(os.environ.get("GATEWAY_PORT", "19201")),
        gw_log,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        GATEWAY_DEFAULT_ENVIRONMENT=environment,
    )
    job = start_job({**env, "NOTIFY_URL": server.url}, job_log)
    metrics = TopicTail(kafka_bootstrap, topic)
    alerts = AlertsTail(kafka_bootstrap, env["ALERTS_TOPIC"])
    stopped_at = 0.0
    try:

        def pg_up(value: float, after: float) -> Any:
            return lambda values: any(
                v["metric_name"] == "pg_up" and v["value"] == value and epoch(v["timestamp"]) >= after
                for v in values
            )

        # Prometheus' samples arrive through the gateway: pg_up 1 scraped since the gateway started
        values = metrics.wait_for(pg_up(1, started), "pg_up 1 remote-written by Prometheus")
        [up] = [v for v in values if v["metric_name"] == "pg_up"][-1:]
        assert (up["instance_id"], up["database_type"]) == (instance, "postgresql")
        assert up["tags"]["job"] == "postgres" and up["tags"]["environment"] == environment
        assert {k for k, _ in metrics.records} == {instance.encode()}  # keyed by instance_id
        # Prometheus' agent may flush samples it kept from before the gateway started (an earlier
        # test stopped PostgreSQL too): only what began since then belongs to this test
        assert not [
            r for r in alerts.poll() if r["alert_name"] == "PostgresDown" and epoch(r["active_at"]) >= started
        ]

        stopped_at = time.time()
        _postgres("stop")
        metrics.wait_for(pg_up(0, stopped_at), "pg_up 0 once PostgreSQL is down")
        fired = alerts.wait_for(  # this outage's incident, not one of an older sample
            lambda r: (
                r["alert_name"] == "PostgresDown"
                and r["notify"] == "first"
                and epoch(r["active_at"]) >= stopped_at
            ),
            job,
            job_log,
        )
        assert fired["labels"]["instance"] == instance and fired["labels"]["severity"] == "critical"
        wait_until(lambda: fired["message_id"] in rec.ok_ids(), job, job_log)
        [post] = [p for p in rec.posts if p.message_id == fired["message_id"]]
        assert post.body["alert_name"] == "PostgresDown" and post.body["severity"] == "critical"
        assert post.body["subject"] or post.body["body_text"]
        assert instance in post.body["body_text"] or instance in post.body["subject"]

        _postgres("start")
        resolved = alerts.wait_for(
            lambda r: (
                r["fingerprint"] == fired["fingerprint"]
                and r["active_at"] == fired["active_at"]
                and r["state"] == "resolved"
            ),
            job,
            job_log,
        )
        wait_until(lambda: resolved["message_id"] in rec.ok_ids(), job, job_log)
        assert gateway.poll() is None, gw_log.read_text(errors="replace")[-3000:]
    finally:
        if stopped_at:
            _postgres("start")  # idempotent: other tests need it
        alerts.close()
        metrics.close()
        stop(job)
        stop(gateway)
        server.stop()
