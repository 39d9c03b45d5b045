"""The collector's policy: future stamps, tag allowlist, cardinality, `up`, health notices."""

from __future__ import annotations

from rules.collect.policy import (
    DROPPED,
    CollectPolicy,
    Health,
    Poll,
    TargetState,
    drop_future,
    filter_tags,
    health_notice,
    limit_cardinality,
    step,
)
from rules.metric import Metric

NOW = 1_700_000_000.0


def m(name: str, ts: float = NOW, **tags: str) -> Metric:
    return Metric(ts, "postgresql", "db-01", name, 1.0, tags)


def poll(*metrics: Metric, error: str | None = None, at: float = NOW) -> Poll:
    return Poll("pg", "db-01", "postgresql", "production", at, metrics, {"environment": "production"}, error)


def test_filter_tags_keeps_allowed_keys_and_returns_same_object_when_nothing_goes() -> None:
    tags = {"environment": "p", "mount": "/"}
    assert filter_tags(tags, frozenset({"environment", "mount"})) is tags
    assert filter_tags({"environment": "p", "query": "SELECT 1"}, frozenset({"environment"})) == {
        "environment": "p"
    }
    assert filter_tags({"anything": "x"}, None) == {"anything": "x"}


def test_drop_future_refuses_only_beyond_tolerance() -> None:
    kept, dropped = drop_future([m("a", NOW + 60), m("b", NOW + 61), m("c", NOW - 3600)], NOW, 60.0)
    assert [x.metric_name for x in kept] == ["a", "c"] and dropped == 1


def test_cardinality_limit_admits_known_series_and_is_sticky() -> None:
    series, kept, dropped = limit_cardinality({}, [m("disk", mount=f"/m{i}") for i in range(5)], 3)
    assert len(kept) == 3 and dropped == 2
    assert len(series["disk"]) == 3
    # known series keep passing, new ones stay out, other metrics have their own budget
    again = [m("disk", mount="/m0"), m("disk", mount="/m4"), m("cpu")]
    series2, kept2, dropped2 = limit_cardinality(series, again, 3)
    assert [x.tags.get("mount") for x in kept2] == ["/m0", None] and dropped2 == 1
    assert series2["disk"] == series["disk"] and "cpu" in series2


def test_cardinality_counts_repeats_of_a_new_series_once() -> None:
    series, kept, dropped = limit_cardinality({}, [m("x", a="1"), m("x", a="1"), m("x", a="2")], 1)
    assert len(kept) == 2 and dropped == 1 and len(series["x"]) == 1


def test_cardinality_unchanged_state_is_the_same_object() -> None:
    series, _, _ = limit_cardinality({}, [m("x")], 10)
    assert limit_cardinality(series, [m("x")], 10)[0] is series


def test_step_success_filters_limits_and_adds_up_and_drop_counters() -> None:
    policy = CollectPolicy(tag_allowlist=frozenset({"environment", "mount"}), max_series_per_metric=2)
    p = poll(
        m("disk_usage_percent", environment="production", mount="/", pid="123"),
        m("disk_usage_percent", environment="production", mount="/data"),
        m("disk_usage_percent", environment="production", mount="/tmp"),
        m("cpu_usage_percent", NOW + 3600, environment="production"),
    )
    state, out = step(policy, None, p)
    by = {(x.metric_name, x.tags.get("reason")): x for x in out.metrics}
    disks = [x for x in out.metrics if x.metric_name == "disk_usage_percent"]
    assert [x.tags for x in disks] == [
        {"environment": "production", "mount": "/"},
        {"environment": "production", "mount": "/data"},
    ]
    assert by[("up", None)].value == 1.0 and by[("up", None)].tags["target"] == "pg"
    assert by[(DROPPED, "cardinality")].value == 1.0 and by[(DROPPED, "future")].value == 1.0
    assert all(x.ts == NOW for x in out.metrics)
    assert out.notice is not None and out.notice.first and out.notice.health is Health.UP
    assert state.polled and state.error is None and len(state.series["disk_usage_percent"]) == 2


def test_step_failure_emits_up_zero_with_error_class_only() -> None:
    state, out = step(CollectPolicy(), None, poll(error="ConnectionRefusedError"))
    assert [(x.metric_name, x.value, dict(x.tags)) for x in out.metrics] == [
        ("up", 0.0, {"environment": "production", "target": "pg", "error": "ConnectionRefusedError"})
    ]
    assert state.error == "ConnectionRefusedError"


def test_notices_once_per_health_change() -> None:
    policy = CollectPolicy()
    sequence = [None, None, "TimeoutError", "TimeoutError", "ConnectionRefusedError", None, None]
    state: TargetState | None = None
    notices = []
    for i, err in enumerate(sequence):
        state, out = step(policy, state, poll(error=err, at=NOW + i))
        if out.notice:
            notices.append((i, out.notice.health, out.notice.error))
    assert notices == [
        (0, Health.UP, None),
        (2, Health.DOWN, "TimeoutError"),
        (4, Health.DOWN, "ConnectionRefusedError"),
        (5, Health.UP, None),
    ]


def test_notice_text_has_detail_and_first_poll_down_is_reported() -> None:
    p = Poll("pg", "db-01", "postgresql", "p", NOW, (), {}, "OSError", "connect failed")
    n = health_notice(TargetState(), p)
    assert n is not None and n.first and str(n) == "target 'pg' (instance db-01) is down: connect failed"
