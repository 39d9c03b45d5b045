"""The collector flow in-process with fake collectors: TestingSink out, 1 and 2 workers."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.testing import TestingSink, cluster_main, run_main

from connectors.collectors.base import BaseCollector, CollectorError, Target
from flows.collect import build_flow
from rules.collect.policy import CollectPolicy
from rules.metric import Metric


def target(name: str, *, timeout_s: float = 1.0, **options: Any) -> Target:
    return Target(
        name,
        "fake",
        f"{name}-instance",
        "postgresql",
        "test",
        0.05,
        timeout_s,
        {"environment": "test"},
        options,
    )


class SyncFake(BaseCollector):
    def collect(self, now: float) -> list[Metric]:
        return [self.target.sample(now, "cpu_usage_percent", 50.0)]


class FlakyAsync(BaseCollector):
    """Fails on the polls listed in `fail_on` (1-based), like a database restarting."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.polls = 0
        self.closed = False

    async def collect(self, now: float) -> list[Metric]:
        self.polls += 1
        if self.polls in self.target.options["fail_on"]:
            try:
                raise ConnectionRefusedError(111, "Connect call failed")
            except OSError as exc:
                raise CollectorError("target: postgresql://mon:hunter22@db:5432/x refused") from exc
        return [self.target.sample(now, "connection_usage_percent", 10.0 * self.polls)]

    async def close(self) -> None:
        self.closed = True


class Hanging(BaseCollector):
    async def collect(self, now: float) -> list[Metric]:
        await asyncio.sleep(30)
        return []


MADE: list[BaseCollector] = []


def make(t: Target) -> BaseCollector:
    kinds: dict[str, Callable[[Target], BaseCollector]] = {
        "sync": SyncFake,
        "flaky": FlakyAsync,
        "hang": Hanging,
    }
    cls = kinds[t.options["kind"]]
    c = cls(t)
    MADE.append(c)
    return c


def fake_clock() -> Any:
    """Each call (one per poll) is one minute later."""
    ticks = itertools.count()
    return lambda: 1_700_000_000.0 + 60.0 * next(ticks)


TARGETS = [
    target("os-a", kind="sync"),
    target("pg-b", kind="flaky", fail_on=(2,)),
    target("pg-hung", kind="hang", timeout_s=0.2),
]


def run(workers: int = 1, polls: int = 3) -> list[KafkaSinkMessage]:
    out: list[KafkaSinkMessage] = []
    flow = build_flow(TARGETS, TestingSink(out), fake_clock(), make_collector=make, polls=polls)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def decoded(out: list[KafkaSinkMessage]) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in out]


def ups(out: list[KafkaSinkMessage], instance: str) -> list[tuple[float, dict[str, str]]]:
    rows = [d for d in decoded(out) if d["metric_name"] == "up" and d["instance_id"] == instance]
    rows.sort(key=lambda d: d["timestamp"])
    return [(d["value"], d["tags"]) for d in rows]


def test_failures_give_up_zero_with_error_class_and_others_keep_polling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    MADE.clear()
    with caplog.at_level(logging.INFO, logger="flows.collect"):
        out = run()
    assert all(m.topic == "gds.metrics.postgresql.test" for m in out)
    assert {m.key for m in out} == {b"os-a-instance", b"pg-b-instance", b"pg-hung-instance"}
    assert [v for v, _ in ups(out, "os-a-instance")] == [1.0, 1.0, 1.0]
    flaky = ups(out, "pg-b-instance")
    assert [v for v, _ in flaky] == [1.0, 0.0, 1.0]
    assert flaky[1][1] == {"environment": "test", "target": "pg-b", "error": "ConnectionRefusedError"}
    hung = ups(out, "pg-hung-instance")
    assert [(v, t["error"]) for v, t in hung] == [(0.0, "TimeoutError")] * 3
    # one log line per change, never the password
    lines = [r.getMessage() for r in caplog.records]
    assert sum("'pg-b'" in x for x in lines) == 3  # up, down, back up
    assert sum("'pg-hung'" in x for x in lines) == 1
    assert any("no answer within 0.2s" in x for x in lines)
    assert not any("hunter22" in x for x in lines)
    assert all(c.closed for c in MADE if isinstance(c, FlakyAsync))


def test_samples_are_stamped_with_the_injected_clock() -> None:
    out = decoded(run(polls=2))
    stamps = sorted({d["timestamp"] for d in out if d["instance_id"] == "os-a-instance"})
    assert len(stamps) == 2 and all(s.startswith("2023-11-14T22:") for s in stamps)
    metrics = [d for d in out if d["metric_name"] == "connection_usage_percent"]
    assert len(metrics) == 1 and metrics[0]["tags"] == {"environment": "test"}  # poll 2 failed


def test_two_workers_poll_each_target_once_per_tick() -> None:
    out = run(workers=2)
    counts = Counter(d["instance_id"] for d in decoded(out) if d["metric_name"] == "up")
    assert counts == {"os-a-instance": 3, "pg-b-instance": 3, "pg-hung-instance": 3}


def test_policy_is_applied_in_the_flow() -> None:
    class Noisy(BaseCollector):
        def collect(self, now: float) -> list[Metric]:
            return [
                self.target.sample(now, "locks", 1.0, {"mode": f"m{i}", "query": "SELECT 1"})
                for i in range(5)
            ] + [self.target.sample(now + 3600, "cpu_usage_percent", 1.0)]

    out: list[KafkaSinkMessage] = []
    policy = CollectPolicy(tag_allowlist=frozenset({"environment", "mode"}), max_series_per_metric=2)
    flow = build_flow(
        [target("n")], TestingSink(out), lambda: 1000.0, make_collector=Noisy, polls=1, policy=policy
    )
    run_main(flow)
    rows = decoded(out)
    locks = [d for d in rows if d["metric_name"] == "locks"]
    assert [d["tags"] for d in locks] == [
        {"environment": "test", "mode": "m0"},
        {"environment": "test", "mode": "m1"},
    ]
    dropped = {
        d["tags"]["reason"]: d["value"] for d in rows if d["metric_name"] == "collector_dropped_series"
    }
    assert dropped == {"cardinality": 3.0, "future": 1.0}


def test_the_kafka_collector_writes_through_the_spool(tmp_path: Any) -> None:
    """With Kafka configured, the collector's sink spools while the broker is unreachable
    (tests/integration/test_collect_spool.py runs it against a stopped broker)."""
    from connectors.collectors.sink import SpoolingKafkaSink
    from connectors.collectors.targets import load_targets
    from connectors.config import CollectJobSettings
    from flows.collect import from_settings

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "COLLECT_CREATE_TOPICS": "false",
        "SPOOL_DIR": str(tmp_path),
    }
    settings = CollectJobSettings.from_env(env)
    flow = from_settings(settings, load_targets(settings.targets_path))

    def steps(parent: Any) -> Any:
        for step in parent.substeps:
            yield step
            yield from steps(step)

    sinks = [s.sink for s in steps(flow) if hasattr(s, "sink")]
    assert len(sinks) == 1 and isinstance(sinks[0], SpoolingKafkaSink)
    assert vars(sinks[0])["_spool_dir"] == tmp_path / "collect"
