"""Delivery policy of the notify sink: backoff, breaker, classification, muting, callbacks.

httpx.MockTransport and a fake clock/sleep keep these fast and deterministic; real HTTP behaviour
(timeouts, hanging servers, refused connections) is covered in tests/integration/test_notify_http.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from connectors.notify.maintenance import redis_maintenance_checker
from connectors.notify.policy import (
    BreakerState,
    CircuitBreaker,
    NotifyConfig,
    NotifyError,
    RetryPolicy,
    Verdict,
    classify_status,
    parse_retry_after,
)
from connectors.notify.sink import (
    NotifyDeps,
    NotifyPartition,
    NotifySink,
    Recheck,
    classify_exception,
    mute_each,
)
from connectors.ops.metrics import Metrics
from rules.model import AlertEvent, AlertState, NotifyReason, Suppression
from rules.payload import notification_payload
from tests.support.events import T0, alert_event, instance_labels


def make_event(n: int = 0, **overrides: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "fingerprint": f"fp{n:04d}",
        "labels": instance_labels(f"db-{n}"),
        "annotations": (("summary", f"High CPU on db-{n}"),),
        "dashboard_url": "",
        "message_id": f"msg-{n:04d}",
    }
    return alert_event(**{**fields, **overrides})


class FakeTime:
    """Monotonic clock advanced only by the sink's sleeps; records every delay."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # let other messages of the batch run, as a real sleep would


class Harness:
    """A partition on a MockTransport, with everything it reports collected."""

    def __init__(
        self,
        handler: Callable[[httpx.Request], httpx.Response],
        *,
        retry: RetryPolicy | None = None,
        failure_threshold: int = 100,
        cooldown_s: float = 30.0,
        max_in_flight: int = 4,
        rand: float = 0.5,
        **kwargs: Any,
    ) -> None:
        self.time = FakeTime()
        self.requests: list[httpx.Request] = []
        self.undeliverable: list[tuple[AlertEvent, Any, str]] = []
        self.delivered: list[AlertEvent] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        config = NotifyConfig(
            "http://notify.test/",
            retry=retry or RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=6, deadline_s=None),
            failure_threshold=failure_threshold,
            cooldown_s=cooldown_s,
            max_in_flight=max_in_flight,
        )
        self.metrics = Metrics(CollectorRegistry())
        deps = NotifyDeps(
            on_undeliverable=lambda e, p, err: self.undeliverable.append((e, p, err)),
            on_delivered=self.delivered.append,
            transport=httpx.MockTransport(record),
            clock=self.time.clock,
            sleep=self.time.sleep,
            rand=lambda: rand,
            metrics=self.metrics,
            **kwargs,
        )
        self.part = NotifyPartition(config, deps)

    def run(self, events: list[AlertEvent]) -> None:
        try:
            self.part.write_batch(events)
        finally:
            self.part.close()


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"status": "accepted"})


def scripted(*responses: int | type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """Answer the n-th request with the n-th item (status or exception to raise), then 200."""
    calls = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = next(calls, 200)
        if isinstance(item, int):
            return httpx.Response(item, text=f"scripted {item}")
        raise item("scripted failure", request=request)

    return handler


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_is_full_jitter_capped_exponential() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=10, deadline_s=None)
    assert [policy.backoff(i, 1.0) for i in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert [policy.backoff(i, 0.25) for i in range(3)] == pytest.approx([0.025, 0.05, 0.1])
    assert policy.backoff(5, 0.0) == 0.0
    assert policy.backoff(10_000, 1.0) == 1.0  # no overflow for absurd retry counts


def test_policy_needs_a_bound() -> None:
    with pytest.raises(NotifyError):
        RetryPolicy(max_attempts=None, deadline_s=None)
    with pytest.raises(NotifyError):
        RetryPolicy(max_attempts=0)


def test_retry_schedule_until_max_attempts() -> None:
    h = Harness(lambda _: httpx.Response(503, text="down"))
    h.run([make_event()])
    assert h.time.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5])
    assert len(h.requests) == 6
    assert h.part.retried == 5
    [(event, payload, error)] = h.undeliverable
    assert event.message_id == "msg-0000"
    assert payload == notification_payload(event)
    assert error == "HTTP 503: down (max attempts)"
    assert h.part.undeliverable == 1 and h.part.delivered == 0


def test_retry_stops_at_the_deadline() -> None:
    policy = RetryPolicy(base_s=0.25, cap_s=10.0, max_attempts=None, deadline_s=1.0)
    h = Harness(scripted(httpx.ConnectError, httpx.ConnectError, httpx.ConnectError), retry=policy, rand=1.0)
    h.run([make_event()])
    # 0.25 + 0.5 = 0.75 elapsed; the next wait (1.0) would end past the 1.0 s deadline.
    assert h.time.sleeps == pytest.approx([0.25, 0.5])
    assert len(h.requests) == 3
    [(_, _, error)] = h.undeliverable
    assert error == "ConnectError: scripted failure (retry deadline)"


def test_retry_after_is_honoured() -> None:
    responses = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)])
    h = Harness(lambda _: next(responses))
    h.run([make_event()])
    assert h.time.sleeps == [2.0]
    assert [e.message_id for e in h.delivered] == ["msg-0000"]


def test_retry_after_longer_than_the_deadline_gives_up() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=5, deadline_s=30.0)
    h = Harness(lambda _: httpx.Response(503, headers={"Retry-After": "120"}), retry=policy)
    h.run([make_event()])
    assert h.time.sleeps == []
    assert len(h.undeliverable) == 1


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("Wed, 15 Jan 2025 10:30:07 GMT", now) == 7.0
    assert parse_retry_after("Wed, 15 Jan 2025 10:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-5", now) == 0.0


# --- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.REJECT),
        (400, Verdict.REJECT),
        (401, Verdict.REJECT),
        (404, Verdict.REJECT),
        (408, Verdict.RETRY),
        (409, Verdict.REJECT),
        (422, Verdict.REJECT),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
    ],
)
def test_classify_status(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (httpx.ConnectError("x"), Verdict.RETRY),
        (httpx.ConnectTimeout("x"), Verdict.RETRY),
        (httpx.ReadTimeout("x"), Verdict.RETRY),
        (httpx.PoolTimeout("x"), Verdict.RETRY),
        (httpx.ReadError("x"), Verdict.RETRY),
        (httpx.RemoteProtocolError("x"), Verdict.RETRY),
        (httpx.UnsupportedProtocol("x"), Verdict.REJECT),
        (httpx.InvalidURL("x"), Verdict.REJECT),
        (ValueError("Out of range float values are not JSON compliant"), Verdict.REJECT),
    ],
)
def test_classify_exception(exc: Exception, verdict: Verdict) -> None:
    assert classify_exception(exc) is verdict


def test_4xx_is_undeliverable_at_once() -> None:
    h = Harness(lambda _: httpx.Response(422, json={"detail": "bad routing_key"}))
    h.run([make_event()])
    assert len(h.requests) == 1
    assert h.time.sleeps == []
    [(_, _, error)] = h.undeliverable
    assert error == 'HTTP 422: {"detail":"bad routing_key"}'
    assert h.part.retried == 0


def test_5xx_then_success_is_delivered() -> None:
    h = Harness(scripted(500, httpx.ReadTimeout))
    h.run([make_event()])
    assert len(h.requests) == 3
    assert h.part.retried == 2
    assert h.part.delivered == 1 and h.undeliverable == []


def test_request_shape() -> None:
    h = Harness(ok)
    event = make_event(7)
    h.run([event])
    [request] = h.requests
    assert request.method == "POST"
    assert str(request.url) == "http://notify.test/alerts"
    assert request.headers["Idempotency-Key"] == "msg-0007"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == notification_payload(event)


def test_same_alert_keeps_transition_order() -> None:
    firing = make_event(1, message_id="fire")
    resolved = make_event(1, state=AlertState.RESOLVED, resolved_at=T0 + 900, message_id="resolve")
    others = [make_event(n) for n in range(2, 6)]
    failed_once: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        mid = request.headers["Idempotency-Key"]
        if mid == "fire" and mid not in failed_once:
            failed_once.add(mid)
            return httpx.Response(500)
        return httpx.Response(200)

    h = Harness(handler)
    h.run([firing, *others, resolved])
    sent = [r.headers["Idempotency-Key"] for r in h.requests]
    assert sent.index("resolve") > len(sent) - 1 - sent[::-1].index("fire")
    assert {e.message_id for e in h.delivered} == {"fire", "resolve", *(e.message_id for e in others)}


# --- circuit breaker ---------------------------------------------------------------------------


def test_breaker_transitions() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10.0, clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # resets the consecutive count
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened_count == 1
    assert not breaker.allow()
    assert breaker.retry_in() == 10.0
    now[0] = 5.0
    assert not breaker.allow()
    assert breaker.retry_in() == 5.0
    breaker.record_success()  # a straggler started before opening does not close it
    assert breaker.state is BreakerState.OPEN
    now[0] = 10.0
    assert breaker.allow()  # the single half-open probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()
    breaker.record_failure()  # probe failed: open again for a full cooldown
    assert breaker.state is BreakerState.OPEN and breaker.opened_count == 2
    assert breaker.retry_in() == 10.0
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_breaker_release_frees_the_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=1.0, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1.0
    assert breaker.allow()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_open_breaker_fails_fast_to_undeliverable() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=10, deadline_s=10.0)
    h = Harness(
        scripted(*[httpx.ConnectError] * 100),
        retry=policy,
        failure_threshold=2,
        cooldown_s=100.0,
        max_in_flight=1,
    )
    events = [make_event(n) for n in range(5)]
    h.run(events)
    assert len(h.requests) == 2  # nothing reaches the network once open
    assert h.part.breaker.state is BreakerState.OPEN
    assert sorted(e.message_id for e, _, _ in h.undeliverable) == sorted(e.message_id for e in events)
    assert any(err.startswith("circuit open") for _, _, err in h.undeliverable)


def test_half_open_probe_recovers() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=10, deadline_s=60.0)
    h = Harness(
        scripted(httpx.ConnectError, httpx.ConnectError),
        retry=policy,
        failure_threshold=2,
        cooldown_s=1.0,
        max_in_flight=1,
    )
    h.run([make_event()])
    assert len(h.requests) == 3  # two failures, then the half-open probe
    assert h.part.breaker.state is BreakerState.CLOSED
    assert h.part.breaker.opened_count == 1
    assert h.part.delivered == 1 and h.undeliverable == []
    # jitter, jitter (breaker opens), then the rest of the 1 s cooldown rather than more jitter
    assert h.time.sleeps == pytest.approx([0.05, 0.1, 0.9])


# --- callbacks, muting, counters ---------------------------------------------------------------


def test_muted_events_are_not_posted() -> None:
    muted: list[AlertEvent] = []
    h = Harness(ok, is_muted=mute_each(lambda e: e.instance_id == "db-2"), on_muted=muted.append)
    h.run([make_event(n) for n in range(4)])
    assert sorted(r.headers["Idempotency-Key"] for r in h.requests) == ["msg-0000", "msg-0001", "msg-0003"]
    [event] = muted
    assert event.message_id == "msg-0002" and event.suppressed is Suppression.MAINTENANCE
    assert h.part.muted == 1 and h.part.delivered == 3


def test_firing_muted_by_maintenance_goes_out_when_the_maintenance_ends() -> None:
    in_maintenance = {"db-1"}
    h = Harness(ok, is_muted=mute_each(lambda e: e.instance_id in in_maintenance))
    try:
        h.part.write_batch([make_event(1)])
        h.part.write_batch([Recheck()])  # still in maintenance
        assert h.requests == [] and set(h.part.parked) == {"fp0001"}
        in_maintenance.clear()
        h.part.write_batch([Recheck()])  # the heartbeat's tick after the maintenance ended
        assert [r.headers["Idempotency-Key"] for r in h.requests] == ["msg-0001"]
        assert h.part.parked == {}
        h.part.write_batch([Recheck()])
        assert len(h.requests) == 1  # once
    finally:
        h.part.close()


def test_a_parked_firing_and_its_resolution_are_dropped_together() -> None:
    in_maintenance = {"db-1"}
    h = Harness(ok, is_muted=mute_each(lambda e: e.instance_id in in_maintenance))
    try:
        h.part.write_batch([make_event(1)])
        in_maintenance.clear()  # over, but the alert resolved in the same batch as that is seen
        resolved = make_event(1, state=AlertState.RESOLVED, message_id="msg-r", notify=NotifyReason.RESOLVED)
        h.part.write_batch([resolved])
        # the FIRING is sent first (maintenance over), then its resolution: a receiver that saw
        # the incident always sees it close
        assert [r.headers["Idempotency-Key"] for r in h.requests] == ["msg-0001", "msg-r"]
        h.requests.clear()
        in_maintenance.add("db-2")
        h.part.write_batch([make_event(2)])
        h.part.write_batch(
            [make_event(2, state=AlertState.RESOLVED, message_id="m2", notify=NotifyReason.RESOLVED)]
        )
        assert h.requests == [] and h.part.parked == {}  # never announced: nothing to close
        repeat = make_event(2, message_id="rep", notify=NotifyReason.REPEAT_ELAPSED)
        h.part.write_batch([repeat])
        assert h.part.parked == {}  # a reminder is not held back for later
    finally:
        h.part.close()


def test_failing_maintenance_check_delivers_anyway() -> None:
    def broken(_: Any) -> list[bool]:
        raise ConnectionError("redis down")

    h = Harness(ok, is_muted=broken)
    h.run([make_event(n) for n in range(3)])
    assert h.part.delivered == 3 and h.part.mute_check_errors == 1


def test_items_not_meant_for_delivery_are_skipped() -> None:
    h = Harness(ok)
    h.run([make_event(0, notify=None), make_event(1, suppressed=Suppression.SILENCED), make_event(2)])
    assert [r.headers["Idempotency-Key"] for r in h.requests] == ["msg-0002"]
    assert h.part.skipped == 2 and h.undeliverable == []


def test_unbuildable_payload_goes_to_undeliverable() -> None:
    h = Harness(ok)
    h.run([make_event(0, state=AlertState.PENDING)])
    assert h.requests == []
    [(_, payload, error)] = h.undeliverable
    assert payload is None and error.startswith("payload: PayloadError")


def test_dlq_callback_failure_propagates() -> None:
    def dlq(*_: Any) -> None:
        raise RuntimeError("kafka down")

    part = NotifyPartition(
        NotifyConfig("http://notify.test"),
        NotifyDeps(on_undeliverable=dlq, transport=httpx.MockTransport(lambda _: httpx.Response(400))),
    )
    with pytest.raises(RuntimeError, match="kafka down"):
        part.write_batch([make_event()])
    part.close()


def test_prometheus_counters_move() -> None:
    responses = {"msg-0000": 200, "msg-0001": 404}
    h = Harness(lambda r: httpx.Response(responses[r.headers["Idempotency-Key"]]))

    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return h.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    before = (
        value("gds_notify_delivered_total"),
        value("gds_notify_undeliverable_total", {"reason": "rejected"}),
    )
    h.run([make_event(0), make_event(1)])
    assert value("gds_notify_delivered_total") == before[0] + 1
    assert value("gds_notify_undeliverable_total", {"reason": "rejected"}) == before[1] + 1


class FakePipeline:
    def __init__(self, keys: set[str], log: list[list[str]]) -> None:
        self.keys, self.log, self.queued = keys, log, []  # type: ignore[var-annotated]

    def exists(self, *names: str) -> None:
        self.queued.append(names[0])

    def execute(self) -> list[int]:
        self.log.append(list(self.queued))
        return [int(k in self.keys) for k in self.queued]


class FakeRedis:
    def __init__(self, keys: set[str]) -> None:
        self.keys = keys
        self.round_trips: list[list[str]] = []

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self.keys, self.round_trips)


def test_maintenance_checker_batches_one_round_trip() -> None:
    fake = FakeRedis({"maintenance:db-1"})
    check = redis_maintenance_checker(fake)  # type: ignore[arg-type]
    events = [make_event(1), make_event(2), make_event(1, message_id="again"), make_event(3, labels=())]
    assert check(events) == [True, False, True, False]
    assert fake.round_trips == [["maintenance:db-1", "maintenance:db-2"]]


def test_sink_builds_every_partition_from_one_deps_object() -> None:
    deps = NotifyDeps(
        on_undeliverable=lambda *_: None,
        breaker=lambda: CircuitBreaker(failure_threshold=2, cooldown_s=1.0),
        metrics=Metrics(CollectorRegistry()),
    )
    sink = NotifySink(NotifyConfig("http://notify.test"), deps)
    a, b = sink.build("notify", 0, 2), sink.build("notify", 1, 2)
    try:
        assert a.deps is deps and b.deps is deps and sink.parts == [a, b]
        assert a.breaker is not b.breaker  # one breaker per partition, from the factory
        assert a.breaker.failure_threshold == 2
    finally:
        a.close()
        b.close()
