"""The gateway's spool on the real broker (issue 15: "Kafka stopped for 30 s during gateway load loses
no accepted sample"): a load thread POSTs numbered samples to /metrics/batch without pause while
Kafka is stopped for 30 s (deploy/local/kafka.sh stop) and started again; every sample answered
2xx is on Kafka afterwards, in order per series. A spool too small for the outage gives 503 with
Retry-After and counts it. Records whose delivery timed out in flight on a frozen broker, which
wrote them once it thawed, are spooled and yet not written twice.

Stops and restarts the broker of this environment: run it against your own services.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support.gateway_job import free_port, start_gateway

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERIES = ("db-a", "db-b", "db-c")
OUTAGE_S = 30.0  # the number


def kafka(action: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/kafka.sh"), action], check=True, capture_output=True, timeout=180
    )


@pytest.fixture()
def environment(kafka_bootstrap: str) -> Iterator[str]:
    """An environment of this test only: the gateway creates its fresh metric topic."""
    env = f"s{uuid.uuid4().hex[:10]}"
    yield env
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    with contextlib.suppress(Exception):
        mine = [t for t in admin.list_topics(timeout=30).topics if t.endswith(f".{env}")]
        for fut in admin.delete_topics(mine).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


@contextlib.contextmanager
def running_gateway(tmp_path: Path, environment: str, **env: str) -> Iterator[str]:
    port = free_port()
    log = tmp_path / f"gateway-{port}.log"
    proc = start_gateway(
        port,
        log,
        GATEWAY_DEFAULT_ENVIRONMENT=environment,
        GATEWAY_DEFAULT_DATABASE_TYPE="os",
        GATEWAY_ACK_TIMEOUT_S="2",
        **env,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        # what the gateway said is the first thing to read when this fails on another machine
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "Connect to ipv4" not in ln]
        print(f"--- the gateway's log ({log}), last 60 lines without connection retries:")
        print("\n".join(lines[-60:]))
        raise
    finally:
        proc.terminate()
        proc.wait(30)


def batch(first: int, n: int) -> list[dict[str, Any]]:
    """`n` samples per series numbered `first`.. (the value is the number)."""
    return [
        {"metric_name": "seq", "value": i, "labels": {"instance": s}}
        for i in range(first, first + n)
        for s in SERIES
    ]


def read_all(bootstrap: str, topic: str, want: int, bound_s: float = 120) -> list[tuple[str, int]]:
    """(key, seq) of the topic in partition order, once at least `want` were read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out: list[tuple[str, int]] = []
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(((msg.key() or b"").decode(), int(json.loads(msg.value() or b"")["value"])))
            elif msg is None and len(out) >= want:
                return out  # caught up: nothing more for half a second
        raise AssertionError(f"only {len(out)} of {want} accepted samples on {topic} within {bound_s}s")
    finally:
        consumer.close()


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = [ln for ln in text.splitlines() if ln.startswith(name) and not ln.startswith("#")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_kafka_stopped_30s_under_load_loses_no_accepted_sample(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    accepted: list[int] = []  # first number of each accepted batch, in answer order
    refused: list[int] = []
    stop = threading.Event()
    per_batch = 20
    with running_gateway(tmp_path, environment) as url:

        def load() -> None:
            # one sender, one request at a time (as a Prometheus shard): the next batch after an answer
            n = 0
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    r = client.post(f"{url}/metrics/batch", json=batch(n, per_batch))
                    if r.status_code == 200:
                        accepted.append(n)
                        n += per_batch
                    else:  # a 503 is retried with the same numbers, as Prometheus does
                        refused.append(r.status_code)
                        time.sleep(0.2)
                    time.sleep(0.05)

        sender = threading.Thread(target=load, daemon=True)
        sender.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 5:  # Kafka up: some are produced directly
            assert time.monotonic() < deadline and sender.is_alive(), "no batch accepted with Kafka up"
            time.sleep(0.1)
        kafka("stop")
        try:
            during = len(accepted)
            time.sleep(OUTAGE_S)  # the outage itself: the load goes on
            accepted_while_down = len(accepted) - during
            ready = httpx.get(f"{url}/readyz", timeout=10).status_code
        finally:
            kafka("start")
        deadline = time.monotonic() + 120
        want = during + accepted_while_down + 5  # and some accepted after the outage
        while (held := metric(url, "gds_spool_records")) > 0 or len(accepted) < want:
            assert time.monotonic() < deadline, (
                f"the spool did not drain after Kafka came back: {held:g} records held, "
                f"{len(accepted) - during - accepted_while_down} batches accepted since, "
                f"sender alive: {sender.is_alive()}, refused: {refused[:5]}"
            )
            time.sleep(0.5)
        stop.set()
        sender.join(60)
        spooled = metric(url, "gds_spool_spooled_total")
        drained = metric(url, "gds_spool_drained_total")

    assert accepted_while_down > 5, "the gateway did not take samples while Kafka was down"
    assert ready == 200, "not ready while spooling"
    assert spooled > 0 and drained == spooled
    assert refused == [], f"refused while the spool had room: {refused[:5]}"
    expected = [i for first in accepted for i in range(first, first + per_batch)]
    got = read_all(kafka_bootstrap, f"gds.metrics.os.{environment}", len(expected) * len(SERIES))
    for s in SERIES:
        seen = [v for k, v in got if k == s]
        duplicates = len(seen) - len(set(seen))
        assert duplicates == 0, f"{s}: {duplicates} duplicates"
        assert seen[: len(expected)] == expected, f"{s}: accepted samples lost or out of order"


def test_a_full_spool_answers_503_with_retry_after_while_kafka_is_down(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    with running_gateway(tmp_path, environment, SPOOL_MAX_BYTES=str(1 << 20)) as url:
        first = httpx.post(f"{url}/metrics/batch", json=batch(0, 1), timeout=30)
        assert first.status_code == 200, first.text  # the topic exists from now on
        kafka("stop")
        try:
            answers: list[httpx.Response] = []
            n = 1
            while not answers or answers[-1].status_code == 200:
                assert n < 100_000, "the spool never filled"
                answers.append(httpx.post(f"{url}/metrics/batch", json=batch(n, 1000), timeout=30))
                n += 1000
            full = answers[-1]
            assert full.status_code == 503, full.text
            assert int(full.headers["retry-after"]) > 0
            assert "full" in full.text
            assert [a.status_code for a in answers[:-1]] == [200] * (len(answers) - 1)
            assert len(answers) > 1  # some fitted in the spool first
            assert metric(url, "gds_gateway_spool_full_total") == 1
            assert metric(url, "gds_spool_full") == 1
        finally:
            kafka("start")


def test_records_timed_out_in_flight_on_a_frozen_broker_are_written_once(
    kafka_bootstrap: str, environment: str, tmp_path: Path
) -> None:
    """The broker frozen (SIGSTOP) with a produce request in its socket: the gateway's delivery
    times out (2 s) and it spools the records; thawed, the broker writes the request it had. The
    drain reads the partitions back and does not send those records again."""
    pid = int((Path(os.environ.get("GDS_STATE_DIR", "/tmp/gds-local")) / "kafka/kafka.pid").read_text())
    with running_gateway(tmp_path, environment) as url:
        first = httpx.post(f"{url}/metrics/batch", json=batch(0, 20), timeout=30)
        assert first.status_code == 200, first.text  # the topic exists and the producer is connected
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen = httpx.post(f"{url}/metrics/batch", json=batch(20, 20), timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert frozen.status_code == 200, frozen.text
        spooled = metric(url, "gds_spool_spooled_total")
        deadline = time.monotonic() + 120
        while (held := metric(url, "gds_spool_records")) > 0:
            assert time.monotonic() < deadline, f"the spool did not drain: {held:g} records held"
            time.sleep(0.5)
        found = metric(url, "gds_gateway_spool_found_in_kafka_total")

    assert spooled == 20 * len(SERIES)  # the frozen broker's answer never came in time
    got = read_all(kafka_bootstrap, f"gds.metrics.os.{environment}", 40 * len(SERIES))
    for s in SERIES:
        assert [v for k, v in got if k == s] == list(range(40)), f"{s}: not each sample once, in order"
    # those of the requests in the broker's socket (librdkafka may have held some back): without the
    # read-back they would be on the topic twice
    assert 0 < found <= spooled
