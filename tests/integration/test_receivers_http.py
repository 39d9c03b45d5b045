"""HTTP receivers (connectors/notify/receivers) against a real HTTP server on 127.0.0.1.

Time is fake (the sender's clock advances only when it sleeps) so backoff, Retry-After and the
breaker's cooldown cost nothing; the assertions are about what the server received and what
`send` reported, and about the waits the sender asked for, never about elapsed time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from connectors.notify.policy import RetryPolicy
from connectors.notify.receivers import (
    OutcomeKind,
    Runtime,
    SenderOptions,
    alertmanager_sender,
    notification_service_sender,
    pagerduty_sender,
    slack_sender,
    webhook_sender,
)
from rules.model import AlertEvent, AlertState
from rules.routing import payloads
from rules.routing.types import GroupNotification
from tests.support.events import T0, alert_event, instance_labels
from tests.support.http_capture import CaptureServer

pytestmark = pytest.mark.integration


@dataclass
class FakeTime:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def runtime(self) -> Runtime:
        return Runtime(clock=self.clock, wall=lambda: T0 + self.now, sleep=self.sleep, rand=lambda: 0.5)


@pytest.fixture()
def server() -> Iterator[CaptureServer]:
    s = CaptureServer()
    yield s
    s.stop()


@pytest.fixture()
def other() -> Iterator[CaptureServer]:
    s = CaptureServer()
    yield s
    s.stop()


def _alert(instance: str, resolved: bool = False) -> AlertEvent:
    labels = tuple(sorted((*instance_labels(instance), ("alertname", "HighCPUUsage"))))
    extra = {"state": AlertState.RESOLVED, "resolved_at": T0 + 900} if resolved else {}
    return alert_event(
        fingerprint=f"fp-{instance}", labels=labels, message_id=f"m-{instance}-{int(resolved)}", **extra
    )


def notification(*instances: str, resolved: tuple[str, ...] = ()) -> GroupNotification:
    alerts = [_alert(i) for i in instances] + [_alert(i, True) for i in resolved]
    return GroupNotification(
        "team", '{}:{alertname="HighCPUUsage"}', (("alertname", "HighCPUUsage"),), tuple(alerts), T0 + 1000
    )


def options(**kw: object) -> SenderOptions:
    retry = kw.pop("retry", RetryPolicy(base_s=0.2, cap_s=5.0, max_attempts=4, deadline_s=30.0))
    return SenderOptions(retry=retry, **kw)  # type: ignore[arg-type]


def test_webhook_retries_5xx_and_408_then_delivers(server: CaptureServer) -> None:
    server.script.actions.extend(["503", "408", "500"])
    ft = FakeTime()
    sender = webhook_sender("hook", server.url + "/hook", options=options(), runtime=ft.runtime())
    n = notification("db-1", "db-2")
    out = sender.send(n)
    assert out.kind is OutcomeKind.DELIVERED and out.attempts == 4
    assert [r.status for r in server.script.received] == [503, 408, 500, 200]
    assert {r.path for r in server.script.received} == {"/hook"}
    # every attempt carried the same body: what the payload builder makes of the notification
    assert all(r.body == payloads.webhook_payload(n) for r in server.script.received)
    assert len(ft.sleeps) == 3
    sender.close()


def test_retry_after_is_honoured(server: CaptureServer) -> None:
    server.script.actions.extend(["429:7", "503:3"])
    ft = FakeTime()
    sender = webhook_sender("hook", server.url, options=options(), runtime=ft.runtime())
    out = sender.send(notification("db-1"))
    assert out.delivered
    # backoff alone would wait at most 0.1 then 0.2 (rand 0.5): the waits are the server's
    assert ft.sleeps == [7.0, 3.0]


def test_retry_after_beyond_the_budget_is_retry_later_not_a_rejection(server: CaptureServer) -> None:
    server.script.actions.append("503:120")
    ft = FakeTime()
    sender = webhook_sender("hook", server.url, options=options(), runtime=ft.runtime())
    out = sender.send(notification("db-1"))
    assert out.kind is OutcomeKind.RETRY_LATER
    assert out.retry_after_s == 120.0
    assert len(server.script.received) == 1 and ft.sleeps == []


@pytest.mark.parametrize("status", ["400", "401", "404", "422"])
def test_other_4xx_is_rejected_at_once(server: CaptureServer, status: str) -> None:
    server.script.default = status
    sender = webhook_sender("hook", server.url, options=options(), runtime=FakeTime().runtime())
    out = sender.send(notification("db-1"))
    assert out.kind is OutcomeKind.REJECTED
    assert out.error.startswith(f"HTTP {status}")
    assert len(server.script.received) == 1


def test_exhausted_budget_is_retry_later(server: CaptureServer) -> None:
    server.script.default = "500"
    sender = webhook_sender(
        "hook", server.url, options=options(failure_threshold=100), runtime=FakeTime().runtime()
    )
    out = sender.send(notification("db-1"))
    assert out.kind is OutcomeKind.RETRY_LATER
    assert "max attempts" in out.error
    assert len(server.script.received) == 4


def test_receiver_down_is_retry_later(server: CaptureServer) -> None:
    url = server.url
    server.stop()  # nothing listens on the port any more: connection refused
    sender = webhook_sender("hook", url, options=options(failure_threshold=100), runtime=FakeTime().runtime())
    out = sender.send(notification("db-1"))
    assert out.kind is OutcomeKind.RETRY_LATER
    assert out.attempts == 4
    assert "Connection refused" in out.error


def test_open_breaker_fails_fast_then_probes_after_cooldown(server: CaptureServer) -> None:
    server.script.default = "503"
    ft = FakeTime()
    opts = options(failure_threshold=2, cooldown_s=60.0, retry=RetryPolicy(max_attempts=2, deadline_s=30.0))
    sender = webhook_sender("hook", server.url, options=opts, runtime=ft.runtime())
    first = sender.send(notification("db-1"))
    assert first.kind is OutcomeKind.RETRY_LATER and first.attempts == 2
    assert sender.circuit_open
    second = sender.send(notification("db-2"))  # cooldown 60 s > deadline 30 s: no request
    assert second.kind is OutcomeKind.RETRY_LATER and second.attempts == 0
    assert second.error == "circuit open" and second.retry_after_s == pytest.approx(60.0)
    assert len(server.script.received) == 2
    ft.now += 61  # the caller re-sends after retry_after_s; the receiver is back
    server.script.default = "ok"
    third = sender.send(notification("db-2"))
    assert third.delivered and third.attempts == 1
    assert not sender.circuit_open


def test_fallback_takes_over_while_the_breaker_is_open(server: CaptureServer, other: CaptureServer) -> None:
    server.script.default = "503"
    ft = FakeTime()
    backup = webhook_sender("backup", other.url + "/backup", runtime=ft.runtime())
    opts = options(failure_threshold=2, cooldown_s=60.0, retry=RetryPolicy(max_attempts=2, deadline_s=30.0))
    primary = notification_service_sender(
        "service", server.url, options=opts, fallback=backup, runtime=ft.runtime()
    )
    first = primary.send(notification("db-1"))  # spends its budget, opens the breaker, falls back
    assert first.delivered and first.via_fallback and first.receiver == "backup"
    second = primary.send(notification("db-2"))  # breaker open: straight to the fallback
    assert second.delivered and second.via_fallback and second.attempts == 0
    assert len(server.script.received) == 2
    assert [b["alerts"][0]["fingerprint"] for b in other.script.bodies()] == ["fp-db-1", "fp-db-2"]
    ft.now += 61
    server.script.default = "ok"
    third = primary.send(notification("db-3"))
    assert third.delivered and not third.via_fallback and third.receiver == "service"
    assert len(other.script.received) == 2


def test_notification_service_posts_each_alert_with_its_key_in_order(server: CaptureServer) -> None:
    server.script.actions.extend(["ok", "503"])  # the second alert's post fails once
    ft = FakeTime()
    opts = options(retry=RetryPolicy(max_attempts=1, deadline_s=None))
    sender = notification_service_sender("service", server.url, options=opts, runtime=ft.runtime())
    n = notification("db-1", "db-2", resolved=("db-3",))
    out = sender.send(n)
    # stops at the transient failure: db-3 is not posted before db-2 (order per group kept)
    assert out.kind is OutcomeKind.RETRY_LATER
    assert [r.body["message_id"] for r in server.script.received] == ["m-db-1-0", "m-db-2-0"]
    again = sender.send(n)  # the caller re-sends: same ids, the service dedups db-1
    assert again.delivered
    got = [(r.path, r.headers["Idempotency-Key"], r.body["message_id"]) for r in server.script.received]
    assert got[2:] == [
        ("/alerts", "m-db-1-0", "m-db-1-0"),
        ("/alerts", "m-db-2-0", "m-db-2-0"),
        ("/alerts", "m-db-3-1", "m-db-3-1"),
    ]
    assert server.script.received[4].body == payloads.notification_service_posts(n)[2].body


def test_pagerduty_one_event_per_alert_and_a_rejected_one_rejects_the_notification(
    server: CaptureServer,
) -> None:
    server.script.actions.extend(["ok", "400", "ok"])
    sender = pagerduty_sender(
        "pd", "K" * 32, url=server.url + "/v2/enqueue", options=options(), runtime=FakeTime().runtime()
    )
    out = sender.send(notification("db-1", "db-2", resolved=("db-3",)))
    assert out.kind is OutcomeKind.REJECTED and "HTTP 400" in out.error
    bodies = server.script.bodies(None)
    assert [(b["event_action"], b["dedup_key"]) for b in bodies] == [
        ("trigger", "fp-db-1"),
        ("trigger", "fp-db-2"),
        ("resolve", "fp-db-3"),
    ]


def test_slack_posts_the_built_body(server: CaptureServer) -> None:
    sender = slack_sender(
        "slack", server.url + "/services/T/B/X", channel="#db", runtime=FakeTime().runtime()
    )
    n = notification("db-1")
    assert sender.send(n).delivered
    (got,) = server.script.received
    assert got.path == "/services/T/B/X"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == payloads.slack_payload(n, channel="#db")


def test_alertmanager_push_uses_the_send_time(server: CaptureServer) -> None:
    ft = FakeTime(now=5000.0)
    sender = alertmanager_sender("am", server.url + "/", resolve_timeout_s=300, runtime=ft.runtime())
    n = notification("db-1", resolved=("db-2",))
    assert sender.send(n).delivered
    (got,) = server.script.received
    assert got.path == "/api/v2/alerts"
    assert got.body == payloads.alertmanager_payload(n, now=T0 + 5000.0, resolve_timeout_s=300)


def test_rate_limit_spaces_requests(server: CaptureServer) -> None:
    ft = FakeTime()
    sender = webhook_sender(
        "hook", server.url, options=options(rate_per_s=0.5, burst=1), runtime=ft.runtime()
    )
    for i in range(3):
        assert sender.send(notification(f"db-{i}")).delivered
    assert ft.sleeps == [2.0, 2.0]  # the first used the saved token; then one every 2 s


def test_in_flight_requests_are_bounded(server: CaptureServer) -> None:
    gate = threading.Event()
    server.script.gate = gate
    sender = webhook_sender("hook", server.url, options=options(max_in_flight=2))
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(sender.send(notification(f"db-{i}")).delivered))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(server.script.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # room for a third request to arrive if nothing held it back
    held = len(server.script.received)
    gate.set()
    for t in threads:
        t.join(timeout=10)
    assert held == 2
    assert results == [True] * 4
    assert server.script.max_in_flight == 2
    sender.close()
