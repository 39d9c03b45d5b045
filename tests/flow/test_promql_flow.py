"""Prometheus rule groups in the alerting dataflow (flows.common.evaluate_groups), in-process:
TestingSource in, TestingSinks out, on one and two workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.kafka.serde import decode_json, make_decoder
from flows.alerting import Outputs, build_flow
from flows.common import Poison, recorded_message
from flows.sample.generate import rows
from rules.loader import BUNDLED, load_rules
from rules.metric import Metric
from rules.model import AlertEvent, AlertState, RuleSet
from rules.promql.rulefile import load_prometheus_rules

GROUPS = load_prometheus_rules([BUNDLED / "prometheus"])
SEED = load_rules([BUNDLED])
DECODE = make_decoder("json", max_future_s=float("inf"))
TOPIC = "gds.metrics.postgresql.production"
NO_SEED_RULES = RuleSet(rules=())


def message(
    r: dict[str, Any], i: int, partition: int = 0, topic: str = TOPIC
) -> KafkaSourceMessage[Any, Any]:
    raw = json.dumps(r).encode()
    return KafkaSourceMessage(str(r["instance_id"]).encode(), raw, topic=topic, partition=partition, offset=i)


def messages() -> list[Any]:
    out = [message(r, i) for i, r in enumerate(rows())]
    out.insert(50, KafkaSourceMessage(b"prod-db-01", b'{"value": "NaN"', topic=TOPIC, partition=0, offset=-1))
    return out


class Collected:
    def __init__(self) -> None:
        self.alerts: list[AlertEvent] = []
        self.dlq: list[Poison] = []
        self.recorded: list[Metric] = []

    def outputs(self) -> Outputs:
        return Outputs(
            TestingSink(self.alerts),
            None,
            TestingSink(self.dlq),
            lambda e: e,
            lambda e: e,
            lambda p: p,
            recorded=TestingSink(self.recorded),
        )


def run_flow(items: list[Any], workers: int = 1, ruleset: RuleSet = NO_SEED_RULES, **kw: Any) -> Collected:
    got = Collected()
    flow = build_flow(
        ruleset,
        TestingSource(items),
        got.outputs(),
        DECODE,
        shards=8,
        wall=None,
        flush_on_eof=True,
        groups=GROUPS,
        **kw,
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


def transitions(events: list[AlertEvent]) -> list[tuple[str, str, float, tuple[tuple[str, str], ...]]]:
    return sorted((e.alert_name, e.state.value, e.at, e.labels) for e in events)


def recorded(ms: list[Metric]) -> list[tuple[float, str, str, float]]:
    return sorted((m.ts, m.metric_name, json.dumps(dict(m.tags), sort_keys=True), m.value) for m in ms)


def test_bundled_groups_fire_the_sample_incident_record_per_region_and_dead_letter_bad_input() -> None:
    got = run_flow(messages())
    fired = [e for e in got.alerts if e.state is AlertState.FIRING]
    assert [(e.alert_name, dict(e.labels)["instance"]) for e in fired] == [("HighCPUUsage", "prod-db-01")]
    resolved = [e for e in got.alerts if e.state is AlertState.RESOLVED]
    assert [e.fingerprint for e in resolved] == [fired[0].fingerprint]
    # prod-db-01 ran hot from 10:10; avg_over_time(1m) > 80 from ~10:11, firing 5m later
    start = 1736935200.0  # 2025-01-15T10:00:00Z
    assert start + 15 * 60 <= fired[0].at <= start + 17 * 60
    # the aggregated recording rule: one series per (environment, region) that has replicas
    regions = {json.dumps(dict(m.tags), sort_keys=True) for m in got.recorded}
    assert regions == {'{"environment": "production", "region": "us-west-2"}'}
    assert {m.metric_name for m in got.recorded} == {"region:replication_lag_seconds:max"}
    ticks = sorted(m.ts for m in got.recorded)
    assert ticks == sorted(set(ticks)) and all(t % 60 == 0 for t in ticks) and len(ticks) >= 40
    # a recorded sample is a seed message any job decodes
    msg = recorded_message(got.recorded[0])
    assert decode_json(msg.value, float("inf")) == got.recorded[0]
    assert [p.msg.offset for p in got.dlq] == [-1]


def test_one_and_two_workers_give_identical_output() -> None:
    one, two = run_flow(messages()), run_flow(messages(), workers=2)
    assert transitions(one.alerts) == transitions(two.alerts) and one.alerts
    assert recorded(one.recorded) == recorded(two.recorded) and one.recorded


def test_a_partition_that_lags_behind_holds_the_group_back_instead_of_losing_its_samples() -> None:
    """prod-db-01 (the incident) on partition 1, read long after partition 0 got ahead: the
    watermark is the slowest partition's, so nothing of it is late and the result is the
    one of the in-order input."""
    in_order = run_flow(messages())
    rs = rows()
    p1 = [message(r, i, 1) for i, r in enumerate(rs) if r["instance_id"] == "prod-db-01"]
    p0 = [message(r, i, 0) for i, r in enumerate(rs) if r["instance_id"] != "prod-db-01"]
    skewed = run_flow([p1[0], *p0, *p1[1:]])
    assert transitions(skewed.alerts) == transitions(in_order.alerts)
    assert any(e.alert_name == "HighCPUUsage" for e in skewed.alerts)
    assert recorded(skewed.recorded) == recorded(in_order.recorded)


def test_seed_rules_and_prometheus_groups_run_in_one_job() -> None:
    got = run_flow(messages(), ruleset=SEED)
    names = {(e.alert_name, e.state.value) for e in got.alerts}
    # the seed rule and its PromQL twin: the same incident, two alerts (distinct fingerprints)
    seed = [e for e in got.alerts if e.alert_name == "HighCPUUsage" and "instance" not in dict(e.labels)]
    prom = [e for e in got.alerts if e.alert_name == "HighCPUUsage" and "instance" in dict(e.labels)]
    assert ("HighCPUUsage", "firing") in names and seed and prom
    assert {e.fingerprint for e in seed}.isdisjoint({e.fingerprint for e in prom})
    assert len(got.dlq) == 1  # dead-lettered once (by the seed engine), not once per path
    assert got.recorded


def test_the_recorded_topic_is_not_fed_back_to_the_groups() -> None:
    """A message on the recorded topic would raise the region's max if the groups read it."""
    lag = [r for r in rows() if r["metric_name"] == "replication_lag_seconds"]
    back = [
        message({**r, "instance_id": "other", "value": 999.0}, i, 0, "gds.metrics.recorded")
        for i, r in enumerate(lag)
    ]
    items = messages()
    got = run_flow(back + items, skip_topics=("gds.metrics.recorded",))
    assert recorded(got.recorded) == recorded(run_flow(items).recorded)
    assert max(m.value for m in run_flow(back + items).recorded) == 999.0  # what skipping prevents


def test_the_backtest_evaluates_prometheus_files_in_rules_path_as_the_live_job_does(tmp_path: Path) -> None:
    from flows import backtest

    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    out = tmp_path / "out.jsonl"
    code = backtest.main(
        ["--rules", str(BUNDLED / "prometheus"), "--input", str(sample), "--output", str(out)]
    )
    assert code == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    live = run_flow(messages())
    notified = [e for e in live.alerts if e.state in (AlertState.FIRING, AlertState.RESOLVED)]
    assert [(r["alert_name"], r["state"], r["fingerprint"]) for r in got] == [
        (e.alert_name, e.state.value, e.fingerprint) for e in sorted(notified, key=lambda e: e.at)
    ]
