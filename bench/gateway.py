"""The gateway's intake against a plain producer: `python -m bench.gateway [--batches N] [--batch-size B]`.

The same samples (I instances x 10 metrics, stepping 15 s) go to the local broker twice, in one run:

- `gateway`:  `python -m connectors.gateway` started here; Prometheus remote_write 1.0 requests
              (snappy protobuf `WriteRequest`, B samples each, encoded up front) posted by
              `--clients` concurrent clients; a sample counts once its request got a 2xx, i.e.
              after the broker confirmed it (acks=all, idempotent producer);
- `producer`: a plain confluent-kafka loop with the project's PRODUCER_DEFAULTS producing the seed
              JSON messages of the same samples (keyed by instance_id), then `flush()`.

Prints one JSON line {"bench": "gateway", "samples": N, "gateway_samples_per_s": ...,
"producer_samples_per_s": ..., "gateway_to_producer": ratio}; the ratio is what to compare across
machines. Needs KAFKA_BOOTSTRAP_SERVERS (deploy/local/env.sh); its topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cramjam
import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script by bench/run.sh

from bench.common import METRICS, T0, emit
from connectors.gateway.prometheus.remote_pb2 import WriteRequest
from connectors.kafka.serde import encode_json
from connectors.kafka.sink import PRODUCER_DEFAULTS
from connectors.kafka.topics import metric_topic
from rules.metric import Metric

ROOT = Path(__file__).resolve().parent.parent
DATABASE_TYPE = "postgresql"


def samples(n: int, instances: int) -> list[tuple[str, str, float, float]]:
    """(instance, metric, epoch seconds, value): all series at one step, then the next step."""
    out: list[tuple[str, str, float, float]] = []
    step = 0
    while len(out) < n:
        for i in range(instances):
            for m in METRICS:
                out.append((f"bench-db-{i:05d}", m, float(T0 + 15 * step), float((i + step) % 100)))
        step += 1
    return out[:n]


def remote_write(batch: list[tuple[str, str, float, float]]) -> bytes:
    wr = WriteRequest()
    for instance, metric, t, v in batch:
        ts = wr.timeseries.add()
        for name, value in (("__name__", metric), ("instance", instance), ("region", "eu-west-1")):
            label = ts.labels.add()
            label.name, label.value = name, value
        sample = ts.samples.add()
        sample.value, sample.timestamp = v, int(t * 1000)
    return bytes(cramjam.snappy.compress_raw(wr.SerializeToString()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway(environment: str, log: Path) -> Iterator[str]:
    """The gateway on a free loopback port, once /readyz says ready."""
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_DEFAULT_ENVIRONMENT": environment,
        "GATEWAY_DEFAULT_DATABASE_TYPE": DATABASE_TYPE,
        "GATEWAY_OUTPUT_FORMAT": "json",
        "SPOOL_DIR": str(log.parent / "spool"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectors.gateway"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gateway did not start:\n" + log.read_text()[-3000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def bench_gateway(url: str, bodies: list[bytes], batch_size: int, clients: int) -> tuple[float, int]:
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=clients)) as client:

        def post(body: bytes) -> int:
            r = client.post(f"{url}/api/v1/write", content=body, headers=headers)
            if not r.is_success:
                raise SystemExit(f"gateway answered {r.status_code}: {r.text[:500]}")
            return batch_size

        post(bodies[0])  # warm-up: creates the topic, connects the producer
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            accepted = sum(pool.map(post, bodies[1:]))
        return time.perf_counter() - started, accepted


def bench_producer(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS})
    producer.produce(topic, messages[0][1], messages[0][0])  # warm-up, as the gateway's
    producer.flush(30)
    started = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:  # queue full: let deliveries drain
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise SystemExit(f"{left} messages not confirmed by the broker")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200, help="timed remote_write requests")
    ap.add_argument("--batch-size", type=int, default=500, help="samples per request")
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    args, _ = ap.parse_known_args(argv)  # bench/run.sh passes its arguments to every bench
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is not set: `. deploy/local/env.sh` first")
    environment = f"bench{uuid.uuid4().hex[:8]}"
    topic = metric_topic(DATABASE_TYPE, environment)
    all_samples = samples((args.batches + 1) * args.batch_size, args.instances)
    batches = [all_samples[i : i + args.batch_size] for i in range(0, len(all_samples), args.batch_size)]
    bodies = [remote_write(b) for b in batches]
    messages = [
        (i.encode(), encode_json(Metric(t, DATABASE_TYPE, i, m, v, {"region": "eu-west-1"})))
        for i, m, t, v in all_samples[args.batch_size :]
    ]
    out: dict[str, object] = {"bench": "gateway", "batch_size": args.batch_size, "clients": args.clients}
    try:
        with tempfile.TemporaryDirectory() as tmp, gateway(environment, Path(tmp) / "gateway.log") as url:
            took, accepted = bench_gateway(url, bodies, args.batch_size, args.clients)
        out["samples"] = accepted
        out["gateway_samples_per_s"] = round(accepted / took)
        producer_s = bench_producer(bootstrap, topic, messages)
        out["producer_samples_per_s"] = round(len(messages) / producer_s)
        out["gateway_to_producer"] = round((accepted / took) / (len(messages) / producer_s), 3)
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        mine = [t for t in admin.list_topics(timeout=30).topics if t.endswith(f".{environment}")]
        for fut in admin.delete_topics(mine).values() if mine else []:
            with contextlib.suppress(Exception):
                fut.result(timeout=30)
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
