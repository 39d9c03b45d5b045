"""The monitoring server over real HTTP on loopback, a real `bytewax.run` process, a real broker.

Health is driven by an injected clock: no assertion depends on how long anything took. Waits
on the child process are bounded polls of what it serves.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import httpx
import pytest
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from connectors.config import ConfigError
from connectors.kafka.sink import kafka_sink
from connectors.ops import health, server
from connectors.ops.health import Health
from connectors.ops.heartbeat import HeartbeatSource, heartbeat_message
from connectors.ops.metrics import METRICS, InstrumentedSource, Metrics
from connectors.ops.server import MonitoringServer, MonitoringSettings, serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = 1736937000.0
DEADLINE_S = 60.0  # an upper bound for a child process or the broker, not a timing assertion


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def served(clock: FakeClock) -> Iterator[tuple[MonitoringServer, Health]]:
    health = Health(clock, stale_s=60, lags=None)
    server = serve("127.0.0.1", 0, health)
    try:
        yield server, health
    finally:
        server.close()


def get(server: MonitoringServer, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10)


def test_metrics_endpoint_serves_our_metrics_and_bytewax_consumer_lag(
    served: tuple[MonitoringServer, Health],
) -> None:
    server, health = served
    flow = f"http-{uuid.uuid4().hex[:8]}"
    METRICS.record_batch(flow, 7, 1, 2, health=health)  # the process's metrics: what `serve` serves
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    # KafkaSource sets this gauge from librdkafka statistics, in the same default registry
    # (a flow name of its own: the process's Health reads the gauge by flow)
    BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=f"{flow}.metrics", topic=topic, partition=3).set(42)

    r = get(server, "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")  # Prometheus text format
    text = r.text
    assert f'gds_messages_in_total{{flow="{flow}"}} 7.0' in text
    assert f'gds_dlq_total{{flow="{flow}",stage="decode"}} 1.0' in text
    assert f'gds_late_samples_total{{flow="{flow}"}} 2.0' in text
    assert f'gds_last_batch_timestamp_seconds{{flow="{flow}"}} 1.736937e+09' in text
    assert (
        f'bytewax_kafka_consumer_lag{{partition="3",step_id="{flow}.metrics",topic="{topic}"}} 42.0' in text
    )
    assert "# TYPE gds_notify_latency_seconds histogram" in text
    assert "process_resident_memory_bytes" in text


def test_healthz_and_readyz_follow_activity_and_the_clock(
    served: tuple[MonitoringServer, Health], clock: FakeClock
) -> None:
    server, health = served
    assert get(server, "/healthz").status_code == 200  # process up, nothing built yet
    r = get(server, "/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not ready"

    health.register("alerting")
    assert get(server, "/readyz").status_code == 503  # built, dataflow not running yet
    clock.now += 5
    health.alive("alerting")  # first heartbeat tick: running, idle
    assert get(server, "/healthz").status_code == 200
    r = get(server, "/readyz")
    assert r.status_code == 200
    assert r.json()["flows"]["alerting"] == {
        "batches": 0,
        "blocked": None,
        "heartbeats": 1,
        "idle_s": 0.0,
        "lag": 0.0,
        "last_batch_age_s": None,
        "live": True,
        "ready": True,
        "stalled_s": 0.0,
        "started": True,
    }

    clock.now += 61  # no batch, no heartbeat for longer than stale_s: the worker is stuck
    r = get(server, "/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "stale" and body["stale_s"] == 60
    assert body["flows"]["alerting"]["idle_s"] == 61.0
    assert get(server, "/readyz").status_code == 503

    METRICS.record_batch("alerting", 3, health=health)  # it moves again
    assert get(server, "/healthz").status_code == 200
    assert get(server, "/readyz").json()["flows"]["alerting"]["batches"] == 1


@pytest.fixture()
def own_metrics() -> Iterator[tuple[MonitoringServer, Metrics]]:
    """A server of a registry of the test's own: exact counts, nothing else in it."""
    metrics = Metrics(CollectorRegistry())
    server = serve("127.0.0.1", 0, Health(FakeClock(), lags=None), metrics.registry)
    try:
        yield server, metrics
    finally:
        server.close()


def test_metrics_negotiate_openmetrics(own_metrics: tuple[MonitoringServer, Metrics]) -> None:
    server, metrics = own_metrics
    metrics.notify_delivered.inc(3)
    metrics.record_dlq("alerting", "notify")
    r = httpx.get(server.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(OPENMETRICS)  # + `; escaping=...` on 1.0.0
    assert r.text.endswith("# EOF\n")  # the OpenMetrics terminator, absent from the text format
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    delivered = {x.name: x.value for x in families["gds_notify_delivered"].samples}
    assert delivered["gds_notify_delivered_total"] == 3.0  # beside OpenMetrics' `_created`
    assert families["gds_dlq"].samples[0].labels == {"flow": "alerting", "stage": "notify"}

    plain = httpx.get(server.url + "/metrics")  # no Accept: the Prometheus text format
    assert plain.headers["content-type"].startswith("text/plain; version=")
    assert "# EOF" not in plain.text and "gds_notify_delivered_total 3.0" in plain.text


def test_metrics_are_gzipped_when_accepted(
    own_metrics: tuple[MonitoringServer, Metrics],
) -> None:
    server, metrics = own_metrics
    metrics.notify_retried.inc()
    # httpx decodes gzip itself: read the raw bytes to see what went over the wire
    with httpx.stream("GET", server.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip"
        assert int(r.headers["content-length"]) == len(raw)
    assert b"gds_notify_retried_total 1.0" in gzip.decompress(raw)
    with httpx.stream("GET", server.url + "/metrics", headers={"Accept-Encoding": "identity"}) as r:
        assert "content-encoding" not in r.headers
        assert b"gds_notify_retried_total 1.0" in b"".join(r.iter_raw())


def test_metrics_name_filter(own_metrics: tuple[MonitoringServer, Metrics]) -> None:
    server, metrics = own_metrics
    metrics.notify_muted.inc()
    text = httpx.get(server.url + "/metrics?name[]=gds_notify_muted_total").text
    assert "gds_notify_muted_total 1.0" in text and "gds_notify_retried" not in text


def test_unknown_paths_are_404_and_query_strings_ignored(served: tuple[MonitoringServer, Health]) -> None:
    server, _ = served
    assert get(server, "/").status_code == 404
    assert get(server, "/metrics?x=1").status_code == 200


@pytest.fixture()
def process_server() -> Iterator[None]:
    """`start` keeps a per-process server; close it so other tests can start their own."""
    assert health._PROCESS.server is None, "a server from an earlier test is still running"
    try:
        yield
    finally:
        if health._PROCESS.server is not None:
            health._PROCESS.server.close()
            health._PROCESS.server = None


@pytest.mark.usefixtures("process_server")
def test_start_is_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = MonitoringSettings(port=port, host="127.0.0.1")
    first = server.start("flow-a", settings)
    second = server.start("flow-b", settings)  # another flow, or a second worker thread
    assert first is not None and first is second
    assert first.port == port
    flows = get(first, "/healthz").json()["flows"]
    assert {"flow-a", "flow-b"} <= set(flows)


@pytest.mark.usefixtures("process_server")
def test_start_disabled_never_serves_and_a_taken_port_is_a_config_error() -> None:
    """Issue 10 item 11: a taken port only warned; the probes then asked whoever held it."""
    assert server.start("flow-off", MonitoringSettings(port=0)) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(ConfigError) as err:
            server.start("flow-clash", MonitoringSettings(port=port, host="127.0.0.1"))
    (line,) = err.value.problems
    assert line.startswith(f"METRICS_PORT={port}: cannot serve on 127.0.0.1:{port}")
    assert "METRICS_PORT=0" in line
    assert health._PROCESS.server is None


FLOW_MODULE = '''
"""A heartbeat-only flow that starts the monitoring server the way flows do."""
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
import bytewax.operators as op

from connectors.ops import health, heartbeat, server

settings = server.MonitoringSettings.from_env()
flow = Dataflow("probe")
beats = op.input("heartbeat", flow, heartbeat.HeartbeatSource("probe", 0.2, limit=600))
op.output("out", op.map("line", beats, lambda h: f"beat {h.worker}"), StdOutSink())
server.start("probe", settings)
'''


def test_a_bytewax_run_process_serves_probes_and_metrics(tmp_path: Path) -> None:
    """`python -m bytewax.run` with two workers: one server, ready once the heartbeats run."""
    (tmp_path / "probe_flow.py").write_text(FLOW_MODULE)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "HEARTBEAT_INTERVAL_S": "1",
        "HEALTH_STALE_S": "1000",
    }
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "probe_flow", "-w", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_S
        ready: httpx.Response | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(url + "/readyz", timeout=5)
                if ready.status_code == 200 and ready.json()["flows"]["probe"]["heartbeats"] >= 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, log.read_text(errors="replace")[-3000:]
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        metrics = httpx.get(url + "/metrics", timeout=5)
        assert metrics.status_code == 200 and "# TYPE gds_messages_in_total counter" in metrics.text
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE_S)
    assert "cannot serve" not in log.read_text(errors="replace")  # one server for both workers


def test_heartbeats_reach_a_real_topic_with_their_shape(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("alerts", 1)
    df = Dataflow("heartbeat-kafka")
    beats = op.input("hb", df, HeartbeatSource("alerting", 0.01, host="pod-0", health=Health(), limit=2))
    op.output("alerts", op.map("msg", beats, heartbeat_message), kafka_sink([kafka_bootstrap], topic))
    run_main(df)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
    finally:
        consumer.close()
    assert len(got) == 2
    for msg in got:
        raw = msg.value()
        assert raw is not None
        record = json.loads(raw)
        assert record["type"] == "heartbeat" and record["flow"] == "alerting"
        assert record["host"] == "pod-0" and record["worker"] == 0
        assert record["at"].endswith("Z")
        assert msg.key() == b"heartbeat:alerting:pod-0:0"
        assert dict(msg.headers() or []) == {"type": b"heartbeat"}


class GateSink(DynamicSink[Any]):
    """Passes batches until Bytewax's lag gauge shows input waiting, then blocks the worker."""

    def __init__(self, flow: str, topic: str) -> None:
        self.flow, self.topic = flow, topic
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.written = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        gate = self

        class Part(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                gate.written += len(items)
                if health.consumer_lag().get((gate.flow, gate.topic, 0), 0) > 0:
                    gate.blocked.set()  # a sink stuck with messages waiting: ingestion frozen
                    gate.release.wait(DEADLINE_S)
                else:
                    time.sleep(0.001)  # let librdkafka's 1 s statistics report the lag first

        return Part()


def test_input_waiting_while_the_flow_makes_no_progress_fails_readiness_then_liveness(
    kafka_bootstrap: str, topic_factory: Callable[..., str], clock: FakeClock
) -> None:
    """Issue 10 item 20: `/healthz` stayed 200 while ingestion was frozen and the lag grew.

    A real KafkaSource over a real topic, a sink that blocks once the lag gauge shows input
    waiting; health is judged on an injected clock, so no assertion depends on timing.
    """
    topic = topic_factory("stall", 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5000):
        producer.produce(topic, value=b"%d" % i)
    assert producer.flush(DEADLINE_S) == 0
    flow = f"stall-{uuid.uuid4().hex[:8]}"
    health = Health(clock, stale_s=300, ready_stall_s=60)  # the real gauge reader
    gate = GateSink(flow, topic)
    source = KafkaSource(
        [kafka_bootstrap], [topic], tail=False, batch_size=1, starting_offset=OFFSET_BEGINNING
    )
    df = Dataflow(flow)
    op.output("out", op.input("in", df, InstrumentedSource(source, health)), gate)
    health.register(flow)
    server = serve("127.0.0.1", 0, health)
    runner = threading.Thread(target=run_main, args=(df,), daemon=True)
    runner.start()
    try:
        assert gate.blocked.wait(DEADLINE_S), f"never saw lag > 0 (wrote {gate.written})"
        assert get(server, "/readyz").status_code == 200  # blocked, but not for long yet
        metrics = get(server, "/metrics").text
        assert f'step_id="{flow}.in",topic="{topic}"' in metrics  # the lag it judges is Kafka's

        clock.now += 61  # READY_STALL_S passed: input waits, nothing read
        r = get(server, "/readyz")
        assert r.status_code == 503, r.text
        state = r.json()["flows"][flow]
        assert state["lag"] > 0 and state["stalled_s"] == 61 and state["ready"] is False
        assert get(server, "/healthz").status_code == 200  # not yet a restart

        clock.now += 240  # HEALTH_STALE_S passed: restart it
        r = get(server, "/healthz")
        assert r.status_code == 503 and r.json()["flows"][flow]["stalled_s"] == 301

        gate.release.set()  # it moves again: reads are progress, ready once more
        deadline = time.monotonic() + DEADLINE_S
        while get(server, "/readyz").status_code != 200 and runner.is_alive():
            assert time.monotonic() < deadline, get(server, "/readyz").text
            time.sleep(0.1)
        assert get(server, "/healthz").status_code == 200
    finally:
        gate.release.set()
        runner.join(DEADLINE_S)
        server.close()
    assert not runner.is_alive() and gate.written == 5000
