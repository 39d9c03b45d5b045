"""The metrics gateway as an operator runs it (`python -m connectors.gateway`), and a reader of the
metric topics it writes, for the integration tests with real clients (Prometheus, OpenTelemetry)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """The gateway on 127.0.0.1:`port`, returned once /readyz answers 200 (its log on failure)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectors.gateway"],
        cwd=ROOT,
        env={
            **os.environ,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "METRICS_PORT": "0",
            "SPOOL_DIR": str(log.parent / f"spool-{port}"),  # a gateway locks its spool
            **env,
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, "gateway exited:\n" + log.read_text(errors="replace")[-4000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        assert time.time() < deadline, "gateway not ready:\n" + log.read_text(errors="replace")[-4000:]
        time.sleep(0.2)


class TopicTail:
    """A metric topic from its beginning, read incrementally as JSON seed messages (with their key)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{time.monotonic_ns()}",
                "enable.auto.commit": False,
            }
        )
        meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
        assert meta.error is None, f"topic {topic}: {meta.error}"
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self.records: list[tuple[bytes | None, dict[str, Any]]] = []

    def poll(self, seconds: float = 0.2) -> list[tuple[bytes | None, dict[str, Any]]]:
        deadline = time.time() + seconds
        while time.time() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            self.records.append((msg.key(), json.loads(msg.value() or b"{}")))
        return self.records

    def wait_for(
        self, pred: Callable[[list[dict[str, Any]]], bool], what: str, bound_s: float = 60
    ) -> list[dict[str, Any]]:
        """Every record read so far, once `pred` holds for them."""
        deadline = time.time() + bound_s
        while time.time() < deadline:
            values = [v for _, v in self.poll()]
            if pred(values):
                return values
        raise AssertionError(
            f"not on the topic within {bound_s}s: {what}; read {len(self.records)} record(s)"
        )

    def close(self) -> None:
        self.consumer.close()
