"""A running alerting job fed in real time, for the control-plane integration tests.

`LiveMetrics` produces samples with event time = wall time from a thread (what each instance
sends is a function the test can change while it runs), `AlertsTail` reads the alerts topic as
it grows (assigned partitions, no consumer-group join to wait for), `start_job` runs
`python -m bytewax.run flows.alerting` as an operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
Values = Callable[[str, str], float | None]
"""(instance, metric) -> value to send now, or None to send nothing."""


class LiveMetrics:
    """Samples every `step_s` for each (instance, metric) until stopped; `rows` keeps them all."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        series: list[tuple[str, str]],
        values: Values,
        step_s: float = 0.5,
    ) -> None:
        self.bootstrap, self.topic, self.series, self.values, self.step_s = (
            bootstrap,
            topic,
            series,
            values,
            step_s,
        )
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-metrics", daemon=True)

    def start(self) -> LiveMetrics:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        start = time.time()
        k = 0
        while not self._stop.is_set():
            now = time.time()
            for instance, metric in list(self.series):
                value = self.values(instance, metric)
                if value is None:
                    continue
                row = {
                    "timestamp": now,
                    "database_type": "postgresql",
                    "instance_id": instance,
                    "metric_name": metric,
                    "value": value,
                    "tags": {"environment": "test"},
                }
                self.rows.append(row)
                p.produce(self.topic, json.dumps(row).encode(), instance.encode())
            p.poll(0)
            k += 1
            self._stop.wait(max(0.0, start + k * self.step_s - time.time()))
        p.flush(30)


class AlertsTail:
    """The alerts topic from its beginning, read incrementally (heartbeats left out)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{time.monotonic_ns()}",
                "enable.auto.commit": False,
            }
        )
        parts = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.records: list[dict[str, Any]] = []

    def poll(self, seconds: float = 0.2) -> list[dict[str, Any]]:
        deadline = time.time() + seconds
        while time.time() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            record = json.loads(msg.value() or b"{}")
            if record.get("type") != "heartbeat":
                self.records.append(record)
        return self.records

    def wait_for(
        self,
        pred: Callable[[dict[str, Any]], bool],
        job: subprocess.Popen[Any],
        log: Path,
        bound_s: float = 60,
    ) -> dict[str, Any]:
        """The first record that satisfies `pred` (failing with the job's log if none comes)."""
        deadline = time.time() + bound_s
        while time.time() < deadline:
            for r in self.poll():
                if pred(r):
                    return r
            assert job.poll() is None, log.read_text(errors="replace")[-4000:]
        raise AssertionError(f"no such alert record within {bound_s}s; job log:\n" + log.read_text()[-4000:])

    def close(self) -> None:
        self.consumer.close()


def start_job(env: dict[str, str], log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.alerting", f"-w{workers}"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_until(cond: Callable[[], bool], job: subprocess.Popen[Any], log: Path, bound_s: float = 60) -> None:
    deadline = time.time() + bound_s
    while not cond():
        assert job.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.time() < deadline, "timed out; job log:\n" + log.read_text(errors="replace")[-4000:]
        time.sleep(0.2)


def live_env(bootstrap: str, topic_factory: Any, rules_path: Path, **extra: str) -> dict[str, str]:
    """The environment of an alerting job on private topics (metrics and alerts with 2 partitions,
    its own control topic), reading `rules_path`; `extra` adds or overrides variables."""
    import os

    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "METRIC_TOPICS": topic_factory("metrics", partitions=2),
        "ALERTS_TOPIC": topic_factory("alerts", partitions=2),
        "DLQ_TOPIC": topic_factory("dlq"),
        "ALERTS_DLQ_TOPIC": topic_factory("alertsdlq"),
        "CONTROL_TOPIC": topic_factory("control"),
        "RULES_PATH": str(rules_path),
        "METRICS_PORT": "0",
        "HEARTBEAT_INTERVAL_S": "60",
        "HEALTH_STALE_S": "900",
        "NOTIFY_TIMEOUT_S": "3",
        **extra,
    }


def write_atomically(path: Path, text: str) -> None:
    """As an editor or a ConfigMap update does: a new file moved into place."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def first_tick_from(t: float, interval_s: float) -> float:
    """The first evaluation tick at or after `t` (ticks are aligned to the interval)."""
    import math

    return math.ceil(t / interval_s) * interval_s


def epoch(text: Any) -> float:
    """An alert record's ISO 8601 time as Unix seconds."""
    from datetime import datetime

    return datetime.fromisoformat(str(text)).timestamp()


def mute_and_release(
    tail: AlertsTail,
    job: subprocess.Popen[Any],
    log: Path,
    publish: Callable[[Any], None],
    delivered: Callable[[], list[str]],
    fired: dict[str, Any],
    matcher: Any,
    interval_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Silence the delivered alert `fired` (a control-topic silence on `matcher`), then expire it.

    Checks what issue 13 asks: the alert is recorded muted at the first tick inside the silence,
    as the same incident with its own id; the expiry releases it at the first tick after, notified
    (`unsuppressed`) and delivered. Returns (the muted record, the release)."""
    from rules.control.events import SilenceEvent, new_id, stamp

    now = stamp(time.time())
    sil = SilenceEvent(new_id(), (matcher,), now, now + 3600, "alice", "CHG-9", now)
    publish(sil)
    muted = tail.wait_for(lambda r: r["suppressed"] == "silenced", job, log)
    assert epoch(muted["at"]) == first_tick_from(sil.starts_at, interval_s)  # by event time
    assert (muted["state"], muted["notify"], muted["fingerprint"], muted["active_at"]) == (
        "firing",
        None,
        fired["fingerprint"],
        fired["active_at"],
    )
    assert muted["message_id"] != fired["message_id"]

    ends = stamp(time.time())
    publish(sil.expired(ends))
    again = tail.wait_for(lambda r: r["notify"] == "unsuppressed", job, log)
    assert epoch(again["at"]) == first_tick_from(ends, interval_s) and again["suppressed"] is None
    assert (again["fingerprint"], again["active_at"]) == (fired["fingerprint"], fired["active_at"])
    wait_until(lambda: again["message_id"] in delivered(), job, log)
    return muted, again
