"""Shared fixtures. Integration fixtures need the real local services.

They never skip: a missing service is a failure, because CI must run every real-broker
test. `make test` (deploy/local/test.sh) starts the services and exports their addresses.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest


def _need(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.fail(
            f"{var} is not set: start the local services with `deploy/local/services.sh up` "
            "and `source deploy/local/env.sh`, or run `make test`",
            pytrace=False,
        )
    return value


@pytest.fixture(autouse=True)
def _private_recovery_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tailing job started without `-r` snapshots under RECOVERY_DIR (connectors/ops/recovery.py):
    each test gets its own, so no test resumes another's state."""
    monkeypatch.setenv("RECOVERY_DIR", str(tmp_path_factory.mktemp("recovery")))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _need("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return _need("PG_DSN")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _need("REDIS_URL")


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    """The local Alertmanager (deploy/local/alertmanager.sh); its webhooks go to
    127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT."""
    return _need("ALERTMANAGER_URL")


@pytest.fixture(scope="session")
def alertmanager_webhook() -> Iterator:
    """The receiver the local Alertmanager's webhook_configs point at (127.0.0.1:$ALERTMANAGER_WEBHOOK_PORT),
    one for the whole session: Alertmanager keeps its connections alive, and a server bound again
    to the same port after another stopped left its next notification unseen."""
    from tests.support.http_receiver import Recorder, RecordingServer

    recorder = Recorder()
    server = RecordingServer(int(_need("ALERTMANAGER_WEBHOOK_PORT")), recorder)
    yield recorder
    server.stop()


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """The local Apicurio Registry's Confluent-compatible API (deploy/local/apicurio.sh)."""
    return _need("SCHEMA_REGISTRY_URL")


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool 2.42 (deploy/local/prometheus.sh installs it; `make test` already did)."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("promtool") is None:
        script = Path(__file__).resolve().parents[1] / "deploy" / "local" / "prometheus.sh"
        subprocess.run([str(script), "install"], check=True)
    path = shutil.which("promtool")
    assert path, "promtool missing after deploy/local/prometheus.sh install"
    return path


@pytest.fixture()
def topic_factory(kafka_bootstrap: str) -> Iterator:
    """Create fresh, uniquely named topics on the real broker; delete them afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        made.append(name)
        return name

    yield make
    if made:
        for fut in admin.delete_topics(made).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                fut.result(timeout=30)
