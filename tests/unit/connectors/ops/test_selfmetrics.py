"""connectors.ops.selfmetrics: the registry read as seed-format samples; the store gauges of retry_call."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.kafka.serde import make_decoder
from connectors.ops.selfmetrics import SelfSample, _Rates, read_health, seed_record, self_metrics_topic
from connectors.storage.retry import STORAGE_RETRY, STORE_ERRORS, STORE_UP, RetryExhaustedError, retry_call
from rules.loader import BUNDLED, load_rules

ROOT = Path(__file__).resolve().parents[4]


def registry() -> tuple[CollectorRegistry, Gauge, Gauge, Counter, Counter]:
    reg = CollectorRegistry()
    lag = Gauge("bytewax_kafka_consumer_lag", "lag", ("step_id", "topic", "partition"), registry=reg)
    up = Gauge("gds_store_up", "up", ("store",), registry=reg)
    errors = Counter("gds_store_errors", "errors", ("store",), registry=reg)
    dlq = Counter("gds_dlq", "dlq", ("flow", "stage"), registry=reg)
    return reg, lag, up, errors, dlq


def by_name(samples: list[SelfSample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.metric_name, s.tags): s.value for s in samples}


def test_registry_values_become_samples_and_counters_rates() -> None:
    reg, lag, up, errors, dlq = registry()
    lag.labels("storage.metrics", "gds.metrics.pg.prod", "3").set(12000)
    lag.labels("alerting.metrics", "gds.metrics.pg.prod", "0").set(5)  # another flow's: not ours
    up.labels("timescaledb").set(0)
    up.labels("somewhere").set(1)  # unknown store: not reported
    errors.labels("clickhouse").inc(4)
    dlq.labels("storage", "decode").inc(10)
    rates = _Rates(at=100.0)
    got = by_name(read_health(reg, "storage", rates, now=110.0))
    assert got == {
        ("up", ()): 1.0,
        ("kafka_consumer_lag", (("partition", "3"), ("topic", "gds.metrics.pg.prod"))): 12000.0,
        ("timescaledb_up", ()): 0.0,
        ("clickhouse_insert_error_rate", ()): 0.4,
        ("dlq_rate", (("stage", "decode"),)): 1.0,
    }
    errors.labels("clickhouse").inc(2)
    again = by_name(read_health(reg, "storage", rates, now=130.0))
    assert again[("clickhouse_insert_error_rate", ())] == pytest.approx(0.1)
    assert again[("dlq_rate", (("stage", "decode"),))] == 0.0


def test_the_seed_record_decodes_and_the_bundled_rule_matches_it() -> None:
    rec = seed_record(
        SelfSample("timescaledb_up", 0.0), flow="storage", host="pod-1", environment="prod", at=1e9
    )
    assert rec["instance_id"] == "storage@pod-1" and rec["database_type"] == "pipeline"
    assert self_metrics_topic("prod") == "gds.metrics.pipeline.prod"
    metric = make_decoder("json", max_future_s=float("inf"))(json.dumps(rec).encode(), float("inf"))
    assert (metric.metric_name, metric.value, metric.instance_id) == ("timescaledb_up", 0.0, "storage@pod-1")
    rules = {r.name: r for r in load_rules([BUNDLED]).rules}
    for name, metric_name in (
        ("TimescaleDBDown", "timescaledb_up"),
        ("KafkaConsumerLagHigh", "kafka_consumer_lag"),
        ("ClickHouseInsertErrors", "clickhouse_insert_error_rate"),
        ("DeadLetterRate", "dlq_rate"),
    ):
        assert rules[name].metric == metric_name and rules[name].database_types == ("pipeline",)


def test_bundled_rules_and_the_k8s_copy_are_identical() -> None:
    assert (ROOT / "deploy/k8s/rules/alert-rules.yml").read_text() == (
        ROOT / "rules/bundled/alert-rules.yml"
    ).read_text()


def test_retry_call_keeps_the_store_gauge() -> None:
    policy = replace(STORAGE_RETRY, base_s=0.01, cap_s=0.01, deadline_s=None, max_attempts=3)
    seen: list[float] = []
    up = STORE_UP.labels("unit-store")
    before = STORE_ERRORS.labels("unit-store")._value.get()
    calls = [0]

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionRefusedError("down")
        return "ok"

    def sleep(_s: float) -> None:
        seen.append(up._value.get())  # the gauge while the sink waits to retry

    assert (
        retry_call(
            flaky, what="t", is_transient=lambda e: True, policy=policy, sleep=sleep, store="unit-store"
        )
        == "ok"
    )
    assert seen == [0.0, 0.0] and up._value.get() == 1.0
    assert STORE_ERRORS.labels("unit-store")._value.get() - before == 2
    with pytest.raises(RetryExhaustedError):
        retry_call(
            flaky_down,
            what="t",
            is_transient=lambda e: True,
            policy=policy,
            sleep=lambda s: None,
            store="unit-store",
        )
    assert up._value.get() == 0.0
    retry_call(lambda: None, what="t", is_transient=lambda e: True, policy=policy, store="unit-store")
    assert up._value.get() == 1.0
    with pytest.raises(ValueError):  # the store answered (bad data): counted, but not "down"
        retry_call(bad_data, what="t", is_transient=lambda e: False, policy=policy, store="unit-store")
    assert up._value.get() == 1.0


def flaky_down() -> None:
    raise ConnectionRefusedError("down")


def bad_data() -> None:
    raise ValueError("bad row")
