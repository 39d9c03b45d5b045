"""Self-monitoring: metrics move, health follows an injected clock, heartbeats have their shape."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import REGISTRY, CollectorRegistry

from connectors.config import ConfigError, MonitoringSettings
from connectors.ops import health, heartbeat, metrics, server
from connectors.ops.health import Health
from connectors.ops.heartbeat import Heartbeat, HeartbeatSource, heartbeat_message, heartbeat_record
from connectors.ops.metrics import (
    METRICS,
    InstrumentedPartitionedSink,
    InstrumentedSink,
    Metrics,
    kafka_timestamp_s,
    transition_label,
)
from rules.model import AlertState, NotifyReason
from tests.unit.rules.test_payload import make_event

T0 = 1736937000.0  # 2025-01-15T10:30:00Z
Reader = Callable[..., float]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reader(registry: CollectorRegistry) -> Reader:
    """`value(name, **labels)` of one registry, 0 for a sample it does not have."""

    def value(name: str, **labels: str) -> float:
        v = registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    return value


@pytest.fixture()
def m() -> Metrics:
    """Metrics of the test's own: counts start at 0 and no other test sees them."""
    return Metrics(CollectorRegistry())


def flow_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


# -- metrics ------------------------------------------------------------------------------


def test_record_batch_moves_counters_and_marks_the_flow_ready(m: Metrics) -> None:
    value = reader(m.registry)
    flow = flow_name()
    health = Health(FakeClock())
    m.record_batch(flow, 10, 2, 3, health=health)
    m.record_batch(flow, 5, 0, 0, health=health)
    m.record_batch(flow, 1, 1, stage="notify", health=health)
    assert value("gds_messages_in_total", flow=flow) == 16
    assert value("gds_dlq_total", flow=flow, stage="decode") == 2
    assert value("gds_dlq_total", flow=flow, stage="notify") == 1
    assert value("gds_late_samples_total", flow=flow) == 3
    assert value("gds_last_batch_timestamp_seconds", flow=flow) == T0
    live, ready, details = health.report()
    assert live and ready
    assert details["flows"][flow]["batches"] == 3


def test_record_events_counts_by_rule_and_state_and_keeps_firing_gauge(m: Metrics) -> None:
    value = reader(m.registry)
    flow = flow_name()
    rule = f"Rule{uuid.uuid4().hex[:6]}"
    pending = make_event(alert_name=rule, state=AlertState.PENDING, fired_at=None, notify=None)
    firing = make_event(alert_name=rule)
    repeat = make_event(alert_name=rule, at=T0 + 4000, notify=NotifyReason.REPEAT_ELAPSED)
    resolved = make_event(alert_name=rule, state=AlertState.RESOLVED, resolved_at=T0 + 5000)
    dropped = make_event(alert_name=rule, state=AlertState.INACTIVE, fired_at=None, notify=None)

    m.record_events(flow, [pending, firing, repeat])
    assert value("gds_alert_transitions_total", flow=flow, rule=rule, state="pending") == 1
    assert value("gds_alert_transitions_total", flow=flow, rule=rule, state="firing") == 1
    assert value("gds_alert_transitions_total", flow=flow, rule=rule, state="repeat") == 1
    assert value("gds_alerts_firing", rule=rule) == 1  # a repeat is not a new firing alert

    m.record_events(flow, [resolved, dropped])
    assert value("gds_alert_transitions_total", flow=flow, rule=rule, state="resolved") == 1
    assert value("gds_alert_transitions_total", flow=flow, rule=rule, state="inactive") == 1
    assert value("gds_alerts_firing", rule=rule) == 0

    # restored from a snapshot: resolving an alert this process never saw fire stays at 0
    m.record_events(flow, [resolved])
    assert value("gds_alerts_firing", rule=rule) == 0


def test_transition_label() -> None:
    assert transition_label(make_event()) == "firing"
    assert transition_label(make_event(notify=NotifyReason.REPEAT_ELAPSED)) == "repeat"
    assert transition_label(make_event(state=AlertState.RESOLVED)) == "resolved"


def test_notify_latency_histogram_and_kafka_timestamps(m: Metrics) -> None:
    value = reader(m.registry)
    before = value("gds_notify_latency_seconds_count")
    below_1s = value("gds_notify_latency_seconds_bucket", le="1.0")
    m.observe_notify_latency(0.4)
    m.observe_notify_latency(-2.0)  # clock skew: counted as 0
    m.observe_notify_latency(45.0)
    assert value("gds_notify_latency_seconds_count") == before + 3
    assert value("gds_notify_latency_seconds_bucket", le="1.0") == below_1s + 2
    assert kafka_timestamp_s((1, 1736937000123)) == pytest.approx(1736937000.123)
    assert kafka_timestamp_s((0, -1)) is None
    assert kafka_timestamp_s(None) is None


class _ListPartition(StatelessSinkPartition[int]):
    def __init__(self, out: list[int], fail: bool) -> None:
        self.out = out
        self.fail = fail

    def write_batch(self, items: list[int]) -> None:
        if self.fail:
            raise RuntimeError("sink down")
        self.out.extend(items)


class _ListSink(DynamicSink[int]):
    def __init__(self, fail: bool = False) -> None:
        self.out: list[int] = []
        self.fail = fail

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ListPartition:
        return _ListPartition(self.out, self.fail)


def test_instrumented_sink_observes_batch_sizes_and_errors(m: Metrics) -> None:
    value = reader(m.registry)
    flow = flow_name()
    inner = _ListSink()
    part = InstrumentedSink(inner, flow, "alerts", m).build("out", 0, 1)
    part.write_batch([1, 2, 3])
    part.write_batch([4])
    assert inner.out == [1, 2, 3, 4]
    assert value("gds_sink_batch_size_count", flow=flow, sink="alerts") == 2
    assert value("gds_sink_batch_size_sum", flow=flow, sink="alerts") == 4

    failing = InstrumentedSink(_ListSink(fail=True), flow, "notify", m).build("out", 0, 1)
    with pytest.raises(RuntimeError, match="sink down"):
        failing.write_batch([1])
    assert value("gds_sink_errors_total", flow=flow, sink="notify") == 1


class _EpochListPartition(StatefulSinkPartition[int, None]):
    """Takes items at once and fails (or not) only when the epoch ends, as the pipelined
    notification sink does."""

    def __init__(self, out: list[int], fail: bool) -> None:
        self.out = out
        self.fail = fail

    def write_batch(self, values: list[int]) -> None:
        self.out.extend(values)

    def snapshot(self) -> None:
        if self.fail:
            raise RuntimeError("receiver down")


class _EpochListSink(FixedPartitionedSink[int, None]):
    def __init__(self, fail: bool = False) -> None:
        self.out: list[int] = []
        self.fail = fail

    def list_parts(self) -> list[str]:
        return ["one"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _EpochListPartition:
        return _EpochListPartition(self.out, self.fail)


def test_instrumented_partitioned_sink_counts_batches_and_errors_at_the_epoch_end(m: Metrics) -> None:
    value = reader(m.registry)
    flow = flow_name()
    inner = _EpochListSink()
    part = InstrumentedPartitionedSink(inner, flow, "notify", m).build_part("out", "one", None)
    part.write_batch([1, 2])
    part.snapshot()
    assert inner.out == [1, 2]
    assert value("gds_sink_batch_size_count", flow=flow, sink="notify") == 1
    failing = InstrumentedPartitionedSink(_EpochListSink(fail=True), flow, "notify", m).build_part(
        "out", "one", None
    )
    failing.write_batch([3])
    with pytest.raises(RuntimeError, match="receiver down"):
        failing.snapshot()
    assert value("gds_sink_errors_total", flow=flow, sink="notify") == 1


def test_instrumented_sink_in_a_dataflow(m: Metrics) -> None:
    value = reader(m.registry)
    flow = flow_name()
    out: list[int] = []
    df = Dataflow("sink-metrics")
    s = op.input("in", df, TestingSource([1, 2, 3, 4, 5]))
    op.output("out", s, InstrumentedSink(TestingSink(out), flow, "out", m))
    run_main(df)
    assert out == [1, 2, 3, 4, 5]
    assert value("gds_sink_batch_size_sum", flow=flow, sink="out") == 5


def test_instrumented_sink_rejects_fixed_partitioned_sinks() -> None:
    with pytest.raises(TypeError, match="only DynamicSink"):
        InstrumentedSink(object(), "f", "x")  # type: ignore[arg-type]


def test_two_metrics_on_their_own_registries_are_independent() -> None:
    """Replaces the reload-guard tests: metrics are injected, nothing is re-registered."""
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.record_batch("f", 3, health=Health(FakeClock()))
    b.record_batch("f", 5, health=Health(FakeClock()))
    a.notify_delivered.inc()
    assert reader(a.registry)("gds_messages_in_total", flow="f") == 3
    assert reader(b.registry)("gds_messages_in_total", flow="f") == 5
    assert reader(a.registry)("gds_notify_delivered_total") == 1
    assert reader(b.registry)("gds_notify_delivered_total") == 0


def test_one_metrics_per_registry_and_the_process_default_is_on_the_default_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
    assert METRICS.registry is REGISTRY


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = MonitoringSettings.from_env({})
    # local by default (pods set 0.0.0.0), on a port no common exporter uses (README)
    assert s == MonitoringSettings(
        port=8490, host="127.0.0.1", heartbeat_interval_s=30.0, health_stale_s=900.0, ready_stall_s=60.0
    )
    assert s.enabled
    assert not MonitoringSettings.from_env({"METRICS_PORT": "0"}).enabled
    custom = MonitoringSettings.from_env(
        {
            "METRICS_PORT": "9200",
            "METRICS_HOST": "127.0.0.1",
            "HEARTBEAT_INTERVAL_S": "5",
            "HEALTH_STALE_S": "700",
            "READY_STALL_S": "20",
        }
    )
    assert custom == MonitoringSettings(
        port=9200, host="127.0.0.1", heartbeat_interval_s=5.0, health_stale_s=700.0, ready_stall_s=20.0
    )
    assert MonitoringSettings.from_env({"METRICS_HOST": "::"}).host == "::"


def test_settings_list_every_problem() -> None:
    env = {
        "METRICS_PORT": "70000",
        "METRICS_HOST": "not a host",
        "HEARTBEAT_INTERVAL_S": "soon",
        "HEALTH_STALE_S": "-1",
    }
    with pytest.raises(ConfigError) as info:
        MonitoringSettings.from_env(env)
    problems = info.value.problems
    assert any(p.startswith("METRICS_PORT=70000") for p in problems)
    assert any(p.startswith("METRICS_HOST='not a host'") for p in problems)
    assert any(p.startswith("HEARTBEAT_INTERVAL_S='soon': not a number") for p in problems)
    assert any(p.startswith("HEALTH_STALE_S='-1': must be >= 1") for p in problems)
    assert len(problems) >= 4


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_settings_refuse_non_finite_numbers(value: str) -> None:
    """`HEALTH_STALE_S=inf` would keep a stuck pod live forever."""
    names = ("HEARTBEAT_INTERVAL_S", "HEALTH_STALE_S", "READY_STALL_S")
    with pytest.raises(ConfigError) as info:
        MonitoringSettings.from_env(dict.fromkeys(names, value))
    for name in names:
        assert any(p.startswith(f"{name}={value!r}") for p in info.value.problems), info.value.problems


def test_settings_stale_threshold_must_exceed_heartbeat_and_sink_retry_deadlines() -> None:
    with pytest.raises(ConfigError) as info:
        MonitoringSettings.from_env({"HEARTBEAT_INTERVAL_S": "60", "HEALTH_STALE_S": "60"})
    assert any("greater than HEARTBEAT_INTERVAL_S=60" in p for p in info.value.problems)
    with pytest.raises(ConfigError) as info:  # defaults: NOTIFY_DEADLINE_S 120, STORAGE_RETRY_DEADLINE_S 600
        MonitoringSettings.from_env({"HEALTH_STALE_S": "100"})
    problems = info.value.problems
    assert any("greater than NOTIFY_DEADLINE_S=120" in p for p in problems)
    assert any("greater than STORAGE_RETRY_DEADLINE_S=600" in p for p in problems)
    short = {"HEALTH_STALE_S": "100", "NOTIFY_DEADLINE_S": "30", "STORAGE_RETRY_DEADLINE_S": "60"}
    assert MonitoringSettings.from_env(short).health_stale_s == 100


def test_env_vars_table_matches_the_defaults() -> None:
    defaults = MonitoringSettings()
    assert server.ENV_VARS["METRICS_PORT"][0] == str(defaults.port)
    assert server.ENV_VARS["METRICS_HOST"][0] == defaults.host
    assert float(server.ENV_VARS["HEARTBEAT_INTERVAL_S"][0]) == defaults.heartbeat_interval_s
    assert float(server.ENV_VARS["HEALTH_STALE_S"][0]) == defaults.health_stale_s
    assert float(server.ENV_VARS["READY_STALL_S"][0]) == defaults.ready_stall_s


# -- health -------------------------------------------------------------------------------


def test_health_follows_the_clock() -> None:
    clock = FakeClock()
    health = Health(clock, stale_s=60, lags=None)
    live, ready, _ = health.report()
    assert live and not ready  # no flow built yet: up, not ready

    health.register("alerting")
    live, ready, details = health.report()
    assert live and not ready
    assert details["flows"]["alerting"]["started"] is False

    clock.now += 10
    health.alive("alerting")  # idle but running: ready without a batch
    assert health.report()[:2] == (True, True)

    clock.now += 60
    assert health.report()[:2] == (True, True)  # exactly at the threshold still counts
    clock.now += 0.5
    live, ready, details = health.report()
    assert not live and not ready
    assert details["flows"]["alerting"]["idle_s"] == pytest.approx(60.5)

    health.batch("alerting")
    assert health.report()[:2] == (True, True)


def test_a_registered_flow_that_never_runs_goes_stale() -> None:
    clock = FakeClock()
    health = Health(clock, stale_s=30, lags=None)
    health.register("storage")
    clock.now += 31
    assert health.report()[:2] == (False, False)


def test_one_stale_flow_fails_the_process() -> None:
    clock = FakeClock()
    health = Health(clock, stale_s=30, lags=None)
    health.alive("a")
    clock.now += 20
    health.alive("b")
    clock.now += 20
    live, _, details = health.report()
    assert not live
    assert details["flows"]["a"]["live"] is False and details["flows"]["b"]["live"] is True


class FakeLags:
    """What Bytewax's `bytewax_kafka_consumer_lag` gauge would say, by (flow, topic, partition)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, int], float] = {}

    def __call__(self) -> dict[tuple[str, str, int], float]:
        return dict(self.values)


def test_input_waiting_without_progress_fails_readiness_then_liveness() -> None:
    """Ingestion frozen, lag growing, heartbeats still ticking: not ready, then not live."""
    clock, lags = FakeClock(), FakeLags()
    health = Health(clock, stale_s=300, ready_stall_s=60, lags=lags)
    health.input("alerting", "gds.metrics.pg", 0, consumed=100)
    lags.values[("alerting", "gds.metrics.pg", 0)] = 50
    assert health.report()[:2] == (True, True)

    for _ in range(6):  # the worker loop runs (ticks, empty polls) but reads nothing
        clock.now += 10
        health.alive("alerting")
        health.input("alerting", "gds.metrics.pg", 0, consumed=0)
        lags.values[("alerting", "gds.metrics.pg", 0)] += 1000
    assert health.report()[:2] == (True, True)  # 60 s: at the threshold still counts
    clock.now += 1
    health.alive("alerting")
    live, ready, details = health.report()
    assert (live, ready) == (True, False)
    flow = details["flows"]["alerting"]
    assert flow["stalled_s"] == 61 and flow["lag"] == 6050 and flow["ready"] is False

    clock.now += 240
    health.alive("alerting")
    assert health.report()[:2] == (False, False)  # 301 s without progress: restart it

    health.input("alerting", "gds.metrics.pg", 0, consumed=1000)  # it moves again
    assert health.report()[:2] == (True, True)


def test_an_idle_or_caught_up_flow_is_never_stalled() -> None:
    clock, lags = FakeClock(), FakeLags()
    health = Health(clock, stale_s=300, ready_stall_s=60, lags=lags)
    health.input("storage", "t", 0, consumed=0)
    lags.values[("storage", "t", 0)] = 0
    lags.values[("other", "t", 0)] = 10**6  # another flow's lag is not this one's
    for _ in range(100):
        clock.now += 10
        health.input("storage", "t", 0, consumed=0)
    assert health.report()[:2] == (True, True)


def test_one_stalled_partition_is_enough_and_a_source_reported_lag_wins() -> None:
    clock, lags = FakeClock(), FakeLags()
    health = Health(clock, stale_s=300, ready_stall_s=60, lags=lags)
    health.input("alerting", "t", 0, consumed=5)
    health.input("alerting", "t", 1, consumed=5, lag=0)
    lags.values[("alerting", "t", 1)] = 99  # stale gauge: the source's own figure is newer
    clock.now += 100
    health.input("alerting", "t", 0, consumed=5)
    assert health.report()[:2] == (True, True)
    health.input("alerting", "t", 1, consumed=0, lag=7)
    live, ready, details = health.report()
    assert (live, ready) == (True, False) and details["flows"]["alerting"]["stalled_s"] == 100


def test_without_source_reports_progress_is_the_flows_last_batch() -> None:
    """A plain KafkaSource (no `InstrumentedSource`): the gauge and `record_batch` suffice."""
    clock, lags = FakeClock(), FakeLags()
    health = Health(clock, stale_s=300, ready_stall_s=60, lags=lags)
    health.batch("rollups")
    lags.values[("rollups", "t", 3)] = 10
    clock.now += 61
    health.alive("rollups")
    assert health.report()[:2] == (True, False)
    health.batch("rollups")
    assert health.report()[:2] == (True, True)


def test_a_blocked_flow_is_live_but_not_ready_until_unblocked() -> None:
    clock = FakeClock()
    health = Health(clock, stale_s=300, lags=None)
    health.block("alerting", "Kafka at k:9092 unreachable: timeout")
    health.alive("alerting")
    live, ready, details = health.report()
    assert (live, ready) == (True, False)
    assert details["flows"]["alerting"]["blocked"] == "Kafka at k:9092 unreachable: timeout"
    health.block("alerting", None)
    assert health.report()[:2] == (True, True)


def test_consumer_lag_reads_bytewax_gauge_by_flow() -> None:
    from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE

    flow = flow_name()
    BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=f"{flow}.metrics", topic="t.x", partition=2).set(17)
    assert health.consumer_lag()[(flow, "t.x", 2)] == 17


def test_await_dependency_blocks_readiness_until_the_probe_answers(caplog: pytest.LogCaptureFixture) -> None:
    from connectors.errors import ConnectorError

    health = Health(FakeClock(), lags=None)
    answers: list[Any] = [ConnectorError("refused"), ConnectorError("refused"), {"alerts"}]
    seen: list[bool] = []

    def probe() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(_s: float) -> None:  # between attempts: the pod is up and says why it is not ready
        health.alive("alerting")
        live, ready, details = health.report()
        seen.append(live and not ready and "refused" in details["flows"]["alerting"]["blocked"])

    with caplog.at_level("INFO", logger="connectors.ops"):
        got = server.await_dependency("alerting", "Kafka at k:1", probe, health=health, sleep=sleep)
    assert got == {"alerts"} and seen == [True, True]
    assert health.report()[:2] == (True, True)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in line for line in lines) == 1  # one line, not one per attempt
    assert sum("answers" in line for line in lines) == 1


def test_instrumented_source_reports_each_poll_per_partition() -> None:
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

    class Part(StatefulSourcePartition[Any, None]):
        def __init__(self, batches: list[list[Any]]) -> None:
            self.batches = batches

        def next_batch(self) -> list[Any]:
            if not self.batches:
                raise StopIteration
            return self.batches.pop(0)

        def snapshot(self) -> None:
            return None

    class Src(FixedPartitionedSource[Any, None]):
        def list_parts(self) -> list[str]:
            return ["0-t.a", "1-t.a"]

        def build_part(self, step_id: str, for_part: str, resume_state: None) -> Part:
            msg = KafkaSourceMessage(b"k", b"v", topic="t.a", partition=int(for_part[0]))
            marker = object()  # an in-band progress marker is not input
            return Part([[msg, msg, marker], [marker]] if for_part == "0-t.a" else [[]])

    clock = FakeClock()
    health = Health(clock, lags=None)
    flow = flow_name()
    df = Dataflow(flow)
    out: list[Any] = []
    op.output("out", op.input("metrics", df, metrics.InstrumentedSource(Src(), health)), TestingSink(out))
    run_main(df)
    assert len(out) == 4
    inputs = health._flows[flow].inputs
    assert set(inputs) == {("t.a", 0), ("t.a", 1)}
    assert health.report()[2]["flows"][flow]["started"] is True


# -- heartbeat ----------------------------------------------------------------------------


def test_heartbeat_partition_emits_on_its_interval_with_an_injected_clock() -> None:
    clock = FakeClock()
    health = Health(clock, stale_s=120, lags=None)
    source = HeartbeatSource("alerting", 30, clock=clock, host="pod-0", health=health)
    part = source.build("heartbeat", 2, 4)

    tick = heartbeat.EPOCH_TICK_S  # woken often so the other inputs' epochs are not held back
    assert part.next_batch() == [Heartbeat("alerting", T0, "pod-0", 2)]  # at once
    assert part.next_awake() == datetime.fromtimestamp(T0 + tick, UTC)
    clock.now += 10
    assert part.next_batch() == []  # polled early
    clock.now += 20
    assert part.next_batch() == [Heartbeat("alerting", T0 + 30, "pod-0", 2)]
    assert part.next_awake() == datetime.fromtimestamp(T0 + 30 + tick, UTC)
    clock.now += 29.95
    assert part.next_batch() == []
    assert part.next_awake() == datetime.fromtimestamp(T0 + 60, UTC)  # never past the next beat
    live, ready, details = health.report()
    assert live and ready
    assert details["flows"]["alerting"]["heartbeats"] == 4  # every poll is a sign of life


def test_heartbeat_limit_ends_the_stream() -> None:
    clock = FakeClock()
    part = HeartbeatSource("f", 1, clock=clock, host="h", health=Health(clock), limit=1).build("hb", 0, 1)
    assert len(part.next_batch()) == 1
    clock.now += 5
    with pytest.raises(StopIteration):
        part.next_batch()


def test_heartbeat_source_rejects_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        HeartbeatSource("f", 0)


def test_heartbeat_source_runs_on_every_worker() -> None:
    """The reason it is a DynamicSource: each worker (each pod) ticks, not just one."""
    out: list[Any] = []
    df = Dataflow("heartbeats")
    beats = op.input("hb", df, HeartbeatSource("alerting", 0.01, host="pod-x", health=Health(), limit=2))
    op.output("out", op.map("msg", beats, heartbeat_message), TestingSink(out))
    cluster_main(df, [], 0, worker_count_per_proc=2)
    assert len(out) == 4
    records = [json.loads(m.value) for m in out]
    assert sorted(r["worker"] for r in records) == [0, 0, 1, 1]
    assert {r["flow"] for r in records} == {"alerting"}


def test_heartbeat_message_shape() -> None:
    h = Heartbeat("alerting", T0 + 0.5, "gds-alerting-1", 0)
    msg = heartbeat_message(h)
    assert msg.key == b"heartbeat:alerting:gds-alerting-1:0"
    assert json.loads(msg.value) == {
        "type": "heartbeat",
        "flow": "alerting",
        "at": "2025-01-15T10:30:00.500Z",
        "host": "gds-alerting-1",
        "worker": 0,
    }
    assert msg.headers == [("type", b"heartbeat")]
    assert msg.topic is None  # the sink's topic: ALERTS_TOPIC
    assert heartbeat_record(Heartbeat("collect", T0, "h")) == {
        "type": "heartbeat",
        "flow": "collect",
        "at": "2025-01-15T10:30:00Z",
        "host": "h",
    }


def test_alert_records_have_no_type_key() -> None:
    """What lets a consumer of the alerts topic tell heartbeats from transitions."""
    assert "type" not in make_event().to_record()
