"""The gateway against the real broker: each endpoint's samples land on their topic with their key,
a bad item gets its error while the valid ones of the same request are produced, 413 over the
size limit, and a stopped broker gives 503 + Retry-After with nothing lost once it is back."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.gateway.prometheus.remote_pb2 import WriteRequest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RW_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway(tmp_path: Path, environment: str, **env: str) -> Iterator[str]:
    """`python -m connectors.gateway` on a free port; its base URL once /readyz says ready."""
    port = free_port()
    log = tmp_path / f"gateway-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectors.gateway"],
        cwd=ROOT,
        env={
            **os.environ,
            "GATEWAY_PORT": str(port),
            "GATEWAY_DEFAULT_ENVIRONMENT": environment,
            "GATEWAY_DEFAULT_DATABASE_TYPE": "os",
            "SPOOL_DIR": str(tmp_path / f"spool-{port}"),  # a gateway locks its spool
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "gateway exited:\n" + log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gateway not ready:\n" + log.read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture()
def environment(kafka_bootstrap: str) -> Iterator[str]:
    """An environment of this test only, so its metric topics (created by the gateway) are fresh."""
    env = f"g{uuid.uuid4().hex[:10]}"
    yield env
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    mine = [t for t in admin.list_topics(timeout=30).topics if t.endswith(f".{env}")]
    if mine:
        for fut in admin.delete_topics(mine).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def read_topic(
    bootstrap: str, topic: str, count: int, bound_s: float = 30
) -> list[tuple[str, dict[str, Any]]]:
    """(key, message) of the topic from its start, once `count` are there (or the bound passed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        assert meta.error is None, f"{topic}: {meta.error}"
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + bound_s
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(((msg.key() or b"").decode(), json.loads(msg.value() or b"")))
        return out
    finally:
        consumer.close()


def remote_write_body(*series: tuple[dict[str, str], float]) -> bytes:
    wr = WriteRequest()
    t_ms = int(time.time() * 1000)
    for labels, value in series:
        ts = wr.timeseries.add()
        for k, v in labels.items():
            label = ts.labels.add()
            label.name, label.value = k, v
        sample = ts.samples.add()
        sample.value, sample.timestamp = value, t_ms
    return bytes(cramjam.snappy.compress_raw(wr.SerializeToString()))


def test_each_endpoint_lands_on_its_topic_keyed_by_instance_and_bad_items_do_not_drop_good_ones(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    with gateway(tmp_path, environment) as url:
        one = httpx.post(
            f"{url}/metrics",
            json={
                "metric_name": "cpu",
                "value": 91.5,
                "labels": {"instance": "pg-1", "database_type": "postgresql"},
            },
        )
        assert one.status_code == 200, one.text
        assert one.json() == {"accepted": 1, "rejected": 0}

        batch = httpx.post(
            f"{url}/metrics/batch",
            json=[
                {
                    "timestamp": time.time(),
                    "database_type": "postgresql",
                    "instance_id": "pg-2",
                    "metric_name": "connections",
                    "value": 40,
                },
                {"metric_name": "cpu", "value": "NaN-ish", "labels": {"instance": "pg-1"}},
            ],
        )
        assert batch.status_code == 207, batch.text
        assert batch.json()["accepted"] == 1
        assert batch.json()["errors"][0]["item"] == "item 1"

        rw = httpx.post(
            f"{url}/api/v1/write",
            content=remote_write_body(
                ({"__name__": "node_load1", "instance": "host-1:9100", "job": "node"}, 0.75),
                ({"__name__": "node_load5", "job": "node"}, 0.5),  # no instance: refused, alone
            ),
            headers=RW_HEADERS,
        )
        assert rw.status_code == 400, rw.text
        assert 'series 1 node_load5{job="node"} sample 0: no `instance` label' in rw.text
        ok = httpx.post(
            f"{url}/api/v1/write",
            content=remote_write_body(({"__name__": "node_load15", "instance": "host-1:9100"}, 0.25)),
            headers=RW_HEADERS,
        )
        assert ok.status_code == 204, ok.text

        now_ns = str(time.time_ns())
        resource = {"attributes": [{"key": "host.name", "value": {"stringValue": "host-2"}}]}
        otel = httpx.post(
            f"{url}/v1/metrics",
            json={
                "resourceMetrics": [
                    {
                        "resource": resource,
                        "scopeMetrics": [
                            {
                                "metrics": [
                                    {
                                        "name": "disk.free",
                                        "gauge": {"dataPoints": [{"timeUnixNano": now_ns, "asDouble": 12.0}]},
                                    },
                                    {"name": "bad", "summary": {"dataPoints": [{"timeUnixNano": now_ns}]}},
                                ]
                            }
                        ],
                    }
                ]
            },
        )
        assert otel.status_code == 200, otel.text
        assert otel.json()["partialSuccess"]["rejectedDataPoints"] == "1"

    pg = read_topic(kafka_bootstrap, f"gds.metrics.postgresql.{environment}", 2)
    assert sorted((k, m["metric_name"], m["value"]) for k, m in pg) == [
        ("pg-1", "cpu", 91.5),
        ("pg-2", "connections", 40.0),
    ]
    os_topic = read_topic(kafka_bootstrap, f"gds.metrics.os.{environment}", 3)
    assert sorted((k, m["metric_name"], m["value"]) for k, m in os_topic) == [
        ("host-1:9100", "node_load1", 0.75),
        ("host-1:9100", "node_load15", 0.25),
        ("host-2", "disk_free", 12.0),
    ]
    assert all(m["tags"]["environment"] == environment for _, m in pg + os_topic)


def test_a_body_over_the_limit_gets_413_and_a_token_is_required_when_configured(
    environment: str, tmp_path: Path
) -> None:
    secret = "t" * 24
    with gateway(
        tmp_path, environment, GATEWAY_MAX_BODY_BYTES="2048", GATEWAY_TOKENS=f"prom:{secret}"
    ) as url:
        auth = {"Authorization": f"Bearer {secret}"}
        item = {"metric_name": "m", "value": 1, "labels": {"instance": "i"}}
        big = httpx.post(f"{url}/metrics/batch", json=[item] * 100, headers=auth)
        assert big.status_code == 413, big.text
        rw = httpx.post(
            f"{url}/api/v1/write",
            content=remote_write_body(
                *[({"__name__": "m", "instance": "i" * 100}, float(i)) for i in range(40)]
            ),
            headers={**RW_HEADERS, **auth},
        )
        assert rw.status_code == 413, rw.text  # decompressed size counts: the body itself is small
        assert httpx.post(f"{url}/metrics", json=item).status_code == 401
        assert httpx.post(f"{url}/metrics", json=item, headers=auth).status_code == 200


def kafka(action: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/kafka.sh"), action], check=True, capture_output=True, timeout=120
    )


def test_kafka_stopped_gives_503_with_retry_after_and_the_retry_is_delivered(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    body = remote_write_body(({"__name__": "up", "instance": "db-9"}, 1.0))
    # without the spool (GATEWAY_SPOOL=false); with it, see test_gateway_spool.py
    with gateway(tmp_path, environment, GATEWAY_ACK_TIMEOUT_S="2", GATEWAY_SPOOL="false") as url:
        assert httpx.post(f"{url}/api/v1/write", content=body, headers=RW_HEADERS).status_code == 204
        kafka("stop")
        try:
            down = httpx.post(f"{url}/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)
            assert down.status_code == 503, down.text
            assert int(down.headers["retry-after"]) > 0
        finally:
            kafka("start")
        # as Prometheus does: retry until the gateway takes it
        deadline = time.monotonic() + 90
        while (
            r := httpx.post(f"{url}/api/v1/write", content=body, headers=RW_HEADERS, timeout=30)
        ).status_code != 204:
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            time.sleep(1)
    got = read_topic(kafka_bootstrap, f"gds.metrics.os.{environment}", 2)
    assert [(k, m["metric_name"]) for k, m in got][:2] == [("db-9", "up"), ("db-9", "up")]
