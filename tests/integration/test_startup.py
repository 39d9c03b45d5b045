"""The jobs as pods start them: `python -m bytewax.run flows.<job>` against the real services.

What a start must say in one line and exit on (a topic it writes is missing, the monitoring
port is taken), what it must survive and report (a broker that does not answer), and that
every live job serves `/metrics`, `/healthz` and `/readyz` while it runs. Waits are bounded
polls of what the child serves or prints; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 90.0  # an upper bound for a child process, not a timing assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRICS_", "NOTIFY_", "BYTEWAX_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["METRICS_HOST"] = "127.0.0.1"
    env.update(extra)
    return env


def run_to_exit(job: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", f"flows.{job}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE_S,
    )


class Job:
    """A running job process and its monitoring server."""

    def __init__(self, job: str, env: dict[str, str], log: Path) -> None:
        self.port = int(env["METRICS_PORT"])
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"flows.{job}"],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the job exited ({self.proc.returncode}) before {what}:\n{self.output()[-4000:]}"
                )
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        pytest.fail(f"not reached within {DEADLINE_S}s: {what}\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture()
def jobs(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    started: list[Job] = []

    def start(job: str, env: dict[str, str]) -> Job:
        j = Job(job, env, tmp_path / f"{job}-{len(started)}.log")
        started.append(j)
        return j

    yield start
    for j in started:
        j.stop()


def one_problem_line(stderr: str, start: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith(f"- {start}")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "panicked" not in stderr, stderr
    return lines[0]


# -- what a start refuses -------------------------------------------------------------------


def test_a_missing_topic_the_job_writes_is_one_line_not_a_panic(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """Issue 10 item 7: a wrong ALERTS_TOPIC passed validation and panicked at the first heartbeat."""
    missing = f"test.alertz.{uuid.uuid4().hex[:8]}"
    env = job_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        METRIC_TOPICS=topic_factory("metrics"),
        ALERTS_TOPIC=missing,
        METRICS_PORT=str(free_port()),
        HEARTBEAT_INTERVAL_S="1",
    )
    r = run_to_exit("alerting", env)
    assert r.returncode == 2, r.stderr
    line = one_problem_line(r.stderr, "ALERTS_TOPIC=")
    assert f"ALERTS_TOPIC='{missing}': no such topic on {kafka_bootstrap}" in line
    assert "python -m connectors.kafka.topics" in line


def test_missing_topics_of_storage_and_rollups_are_listed_together(kafka_bootstrap: str, pg_dsn: str) -> None:
    dlq, aggregated = (f"test.missing.{uuid.uuid4().hex[:8]}" for _ in range(2))
    base = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DLQ_TOPIC": dlq, "METRICS_PORT": str(free_port())}
    r = run_to_exit("rollups", job_env(**base, AGGREGATED_TOPIC=aggregated))
    assert r.returncode == 2, r.stderr
    one_problem_line(r.stderr, "DLQ_TOPIC=")
    one_problem_line(r.stderr, "AGGREGATED_TOPIC=")
    r = run_to_exit("storage", job_env(**base, PG_DSN=pg_dsn))
    assert r.returncode == 2, r.stderr
    one_problem_line(r.stderr, "DLQ_TOPIC=")


def test_a_taken_metrics_port_stops_the_job_at_start(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """Issue 10 item 11: it only warned, and the probes then asked whoever held the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = job_env(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            METRIC_TOPICS=topic_factory("metrics"),
            METRICS_PORT=str(port),
        )
        r = run_to_exit("alerting", env)
    assert r.returncode == 2, r.stderr
    line = one_problem_line(r.stderr, f"METRICS_PORT={port}")
    assert f"cannot serve on 127.0.0.1:{port}" in line and "METRICS_PORT=0" in line


def test_an_unknown_kafka_extra_config_key_is_one_line(kafka_bootstrap: str) -> None:
    """Issue 10 item 23: it ended in a traceback from inside the Kafka client."""
    env = job_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_EXTRA_CONFIG="client.id=gds;sasl.pasword=S3cret",
        METRICS_PORT=str(free_port()),
    )
    r = run_to_exit("alerting", env)
    assert r.returncode == 2, r.stderr
    line = one_problem_line(r.stderr, "KAFKA_EXTRA_CONFIG")
    assert 'No such configuration property: "sasl.pasword"' in line
    assert "S3cret" not in r.stderr


def test_environment_and_rule_problems_are_listed_together(tmp_path: Path) -> None:
    """Issue 10 item 23: only the environment's were listed; the rules' came after a fix."""
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "alert_rules": [
                    {
                        "name": "Broken",
                        "metric": "cpu",
                        "condition": {"operator": "~", "threshold": 1},
                    }
                ]
            }
        )
    )
    env = job_env(RULES_PATH=str(rules), NOTIFY_TIMEOUT_S="nan", NOTIFY_URL="ftp://u:S3cret@h:1")
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    r = run_to_exit("alerting", env)
    assert r.returncode == 2, r.stderr
    one_problem_line(r.stderr, "NOTIFY_TIMEOUT_S='nan'")
    one_problem_line(r.stderr, "NOTIFY_URL='ftp://u:***@h:1'")
    assert any(str(rules) in line and "Broken" in line for line in r.stderr.splitlines()), r.stderr
    assert "S3cret" not in r.stderr


# -- what a start survives ------------------------------------------------------------------


def test_an_unreachable_broker_is_said_once_and_keeps_the_job_unready(jobs: Callable[..., Job]) -> None:
    """Issue 10 item 23: it started and waited silently (Bytewax blocks on the topic metadata)."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    job = jobs("alerting", job_env(KAFKA_BOOTSTRAP_SERVERS=dead, METRICS_PORT=str(free_port())))

    def unready() -> bool:
        r = job.get("/readyz")
        return r.status_code == 503 and "unreachable" in (r.json()["flows"]["alerting"]["blocked"] or "")

    job.wait_for("/readyz 503 naming the broker", unready)
    assert job.get("/healthz").status_code == 200  # up: restarting would not bring Kafka back
    job.wait_for("the log line", lambda: f"Kafka at {dead} is unreachable" in job.output())
    assert unready()  # still waiting, still saying why
    assert job.output().count("is unreachable") == 1


# -- every live job serves its endpoints ----------------------------------------------------


def collect_targets(tmp_path: Path) -> Path:
    path = tmp_path / "targets.yml"
    env = f"it{uuid.uuid4().hex[:8]}"
    path.write_text(
        yaml.safe_dump(
            {
                "settings": {"environment": env, "interval": "1s", "timeout": "1s"},
                "targets": [{"name": "host", "type": "os", "instance_id": "host", "mounts": ["/"]}],
            }
        )
    )
    return path


@pytest.mark.parametrize("job", ["alerting", "storage", "rollups", "collect"])
def test_every_live_job_serves_metrics_healthz_and_readyz(
    job: str,
    jobs: Callable[..., Job],
    kafka_bootstrap: str,
    pg_dsn: str,
    redis_url: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    """Issue 10 item 19: storage, rollups and collect served none, and their pods probe them."""
    env: dict[str, Any] = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METRIC_TOPICS": topic_factory("metrics", 2),
        "ALERTS_TOPIC": topic_factory("alerts"),
        "PG_DSN": pg_dsn,
        "PG_SCHEMA": f"it_{uuid.uuid4().hex[:8]}",
        "REDIS_URL": redis_url,
        "CLICKHOUSE_PATH": str(tmp_path / "chdb"),
        "COLLECT_TARGETS": str(collect_targets(tmp_path)),
        "METRICS_PORT": str(free_port()),
        "HEARTBEAT_INTERVAL_S": "1",
    }
    running = jobs(job, job_env(**env))

    def ready() -> bool:
        r = running.get("/readyz")
        return r.status_code == 200 and r.json()["flows"][job]["started"]

    running.wait_for(f"{job}: /readyz 200", ready)
    assert running.get("/healthz").status_code == 200
    metrics = running.get("/metrics")
    assert metrics.status_code == 200 and "# TYPE gds_messages_in_total counter" in metrics.text
