"""The notify sink against a real HTTP server on 127.0.0.1: failures, hangs, refusals, outages.

The server records every POST it processes and answers from a per-message script, so the
assertions are about what the receiver saw (dedup by message_id) and what the sink reported,
never about timing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.notify.maintenance import maintenance_key, redis_maintenance_checker
from connectors.notify.policy import BreakerState, NotifyConfig, RetryPolicy
from connectors.notify.sink import NotifyDeps, NotifyPartition, NotifySink
from rules.model import AlertEvent, Suppression
from rules.payload import payload_problems
from tests.support.events import T0, alert_event, instance_labels
from tests.support.http_receiver import Recorder, RecordingServer

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 0.3


def make_event(prefix: str, n: int, **overrides: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "fingerprint": f"{prefix}-fp{n:03d}",
        "at": T0 + 300 + n,
        "active_at": T0 + n,
        "fired_at": T0 + 300 + n,
        "value": 90.0 + n / 10,
        "labels": instance_labels(f"{prefix}-db-{n:03d}"),
        "annotations": (("summary", f"High CPU on {prefix}-db-{n:03d}"),),
        "dashboard_url": "",
        "message_id": f"{prefix}-msg-{n:03d}",
    }
    return alert_event(**{**fields, **overrides})


@pytest.fixture()
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer(0, Recorder())
    yield srv
    srv.stop()


@dataclass
class Collected:
    delivered: list[AlertEvent] = field(default_factory=list)
    undeliverable: list[tuple[AlertEvent, Any, str]] = field(default_factory=list)
    muted: list[AlertEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_delivered(self, event: AlertEvent) -> None:
        with self.lock:
            self.delivered.append(event)

    def on_undeliverable(self, event: AlertEvent, payload: Any, error: str) -> None:
        with self.lock:
            self.undeliverable.append((event, payload, error))

    def on_muted(self, event: AlertEvent) -> None:
        with self.lock:
            self.muted.append(event)


def config(url: str, **overrides: Any) -> NotifyConfig:
    fields: dict[str, Any] = {
        "timeout_s": CLIENT_TIMEOUT_S,
        "max_in_flight": 8,
        # Bounded by time only, generously: these tests are about never losing, not about speed.
        "retry": RetryPolicy(base_s=0.01, cap_s=0.1, max_attempts=None, deadline_s=10.0),
        "failure_threshold": 5,
        "cooldown_s": 0.1,
    }
    fields.update(overrides)
    return NotifyConfig(url, **fields)


def failure_script(prefix: str) -> tuple[dict[str, list[str]], set[str], str]:
    """Scripted trouble for 50 messages: (script, ids that may time out once, the 422 id).

    Slow ids count as "may time out": on a loaded machine a slow answer can miss the client
    timeout, which is the same processed-but-unacknowledged case as a hang.
    """
    mid = [f"{prefix}-msg-{n:03d}" for n in range(50)]
    script: dict[str, list[str]] = {}
    for n in range(0, 5):
        script[mid[n]] = ["500"]
    for n in range(5, 8):
        script[mid[n]] = ["503", "503"]
    for n in range(8, 11):
        script[mid[n]] = ["hang"]
    script[mid[11]] = ["hang", "500", "slow"]
    for n in range(12, 16):
        script[mid[n]] = ["slow"]
    script[mid[16]] = ["429", "500"]
    script[mid[17]] = ["422"]
    script[mid[18]] = ["503", "slow"]  # fails, then succeeds slowly
    may_time_out = {m for m, actions in script.items() if {"hang", "slow"} & set(actions)}
    return script, may_time_out, mid[17]


def assert_receiver_view(
    recorder: Recorder,
    sent: list[AlertEvent],
    collected: Collected,
    may_time_out: set[str],
    rejected: str,
) -> None:
    sent_ids = {e.message_id for e in sent}
    ok_ids = recorder.ok_ids()
    # Every message reached the receiver at least once, the rejected one included.
    assert recorder.all_ids() == sent_ids
    # Receiver-side dedup by message_id yields exactly what was sent, minus the 4xx.
    assert set(ok_ids) == sent_ids - {rejected}
    # A message was processed twice only when a try outlived the client timeout (hang or slow).
    duplicates = {m for m, count in Counter(ok_ids).items() if count > 1}
    assert duplicates <= may_time_out
    # The key the receiver dedups on is the event's message_id, and the payload is well formed.
    with recorder.lock:
        for post in recorder.posts:
            assert post.idempotency_key == post.message_id
            assert payload_problems(post.body) == []
    # The sink's own account: delivered plus undeliverable is everything, each exactly once.
    delivered_ids = [e.message_id for e in collected.delivered]
    assert sorted(delivered_ids) == sorted(sent_ids - {rejected})
    [(event, payload, error)] = collected.undeliverable
    assert event.message_id == rejected
    assert payload is not None and payload["message_id"] == rejected
    assert error.startswith("HTTP 422")


def test_write_batch_against_a_flaky_server(server: RecordingServer) -> None:
    script, may_time_out, rejected = failure_script("direct")
    server.recorder.script = script
    events = [make_event("direct", n) for n in range(50)]
    collected = Collected()
    part = NotifyPartition(
        config(server.url),
        NotifyDeps(on_undeliverable=collected.on_undeliverable, on_delivered=collected.on_delivered),
    )
    try:
        for start in range(0, len(events), 20):  # three batches, as Bytewax would hand them over
            part.write_batch(events[start : start + 20])
    finally:
        part.close()
    assert_receiver_view(server.recorder, events, collected, may_time_out, rejected)
    assert part.delivered == 49 and part.undeliverable == 1
    assert part.retried >= len(script) - 1  # every scripted failure but the 422 caused a retry


def test_bytewax_flow_against_a_flaky_server(server: RecordingServer) -> None:
    script, may_time_out, rejected = failure_script("flow")
    server.recorder.script = script
    events = [make_event("flow", n) for n in range(50)]
    # Items a misconfigured flow might let through: the sink must skip them, not post them.
    strays = [
        make_event("flow", 90, notify=None),
        make_event("flow", 91, suppressed=Suppression.INHIBITED),
    ]
    collected = Collected()
    sink = NotifySink(
        config(server.url),
        NotifyDeps(on_undeliverable=collected.on_undeliverable, on_delivered=collected.on_delivered),
    )
    flow = Dataflow("notify_http_test")
    stream = op.input("alerts", flow, TestingSource([*events, *strays], batch_size=16))
    op.output("notify", stream, sink)
    run_main(flow)
    assert_receiver_view(server.recorder, events, collected, may_time_out, rejected)
    assert sink.totals()["skipped"] == 2
    assert sink.totals()["delivered"] == 49


@pytest.mark.parametrize(
    ("cooldown_s", "deadline_s"),
    [
        pytest.param(0.1, 5.0, id="short-cooldown-recovers"),
        pytest.param(30.0, 1.0, id="long-cooldown-fails-fast"),
    ],
)
def test_server_down_then_up_loses_nothing(cooldown_s: float, deadline_s: float) -> None:
    # A bound socket that never listens: connections to its port are refused until the server
    # takes the port over, which happens at the first backoff after the breaker has opened.
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    recorder = Recorder()
    started: list[RecordingServer] = []
    holder: list[NotifyPartition] = []

    async def sleep(delay: float) -> None:
        if not started and holder and holder[0].breaker.opened_count > 0:
            reserved.close()
            started.append(RecordingServer(port, recorder))
        await asyncio.sleep(delay)

    events = [make_event("down", n) for n in range(50)]
    collected = Collected()
    part = NotifyPartition(
        config(
            f"http://127.0.0.1:{port}",
            retry=RetryPolicy(base_s=0.01, cap_s=0.1, max_attempts=None, deadline_s=deadline_s),
            failure_threshold=3,
            cooldown_s=cooldown_s,
        ),
        NotifyDeps(
            on_undeliverable=collected.on_undeliverable, on_delivered=collected.on_delivered, sleep=sleep
        ),
    )
    holder.append(part)
    try:
        part.write_batch(events)
    finally:
        part.close()
        reserved.close()
        for srv in started:
            srv.stop()

    assert part.breaker.opened_count >= 1
    sent = sorted(e.message_id for e in events)
    delivered = [e.message_id for e in collected.delivered]
    undeliverable = [e.message_id for e, _, _ in collected.undeliverable]
    # Nothing lost, nothing reported twice: each event is in exactly one of the two outcomes.
    assert sorted(delivered + undeliverable) == sent
    # Whatever the sink reports as delivered, the receiver did process.
    assert set(delivered) <= set(recorder.ok_ids())
    assert all(err for _, _, err in collected.undeliverable)
    if cooldown_s < deadline_s:
        assert delivered, "the half-open probe should have found the recovered server"
        assert part.breaker.state is BreakerState.CLOSED
    else:
        assert undeliverable, "an open breaker longer than the budget should fail fast"
        assert any(err.startswith("circuit open") for _, _, err in collected.undeliverable)


def test_redis_maintenance_mutes_before_posting(server: RecordingServer, redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"mnt{uuid.uuid4().hex[:8]}"
    events = [make_event(prefix, n) for n in range(10)]
    in_maintenance = {events[2].instance_id, events[7].instance_id}
    keys = [maintenance_key(i) for i in in_maintenance]
    for key in keys:
        client.set(key, "1", ex=60)
    collected = Collected()
    part = NotifyPartition(
        config(server.url),
        NotifyDeps(
            on_undeliverable=collected.on_undeliverable,
            on_delivered=collected.on_delivered,
            on_muted=collected.on_muted,
            is_muted=redis_maintenance_checker(client),
        ),
    )
    try:
        part.write_batch(events)
    finally:
        part.close()
        client.delete(*keys)
        client.close()
    muted_ids = {e.message_id for e in events if e.instance_id in in_maintenance}
    assert {e.message_id for e in collected.muted} == muted_ids
    assert all(e.suppressed is Suppression.MAINTENANCE for e in collected.muted)
    assert set(server.recorder.ok_ids()) == {e.message_id for e in events} - muted_ids
    assert part.muted == 2 and part.delivered == 8 and collected.undeliverable == []


def test_a_hung_redis_never_holds_delivery_up(server: RecordingServer, redis_url: str) -> None:
    """Redis frozen (SIGSTOP) while maintenance is checked: the check gives up after its socket
    timeout and the batch is delivered (maintenance unknown: fail open); later batches do not
    ask the hung server again during the cooldown. Without timeouts redis-py waits for ever."""
    import os
    import signal
    from pathlib import Path

    from connectors.notify.maintenance import redis_client

    pid = int((Path(os.environ.get("GDS_STATE_DIR", "/tmp/gds-local")) / "redis/redis.pid").read_text())
    prefix = f"hang{uuid.uuid4().hex[:8]}"
    batches = [[make_event(prefix, n) for n in range(3)], [make_event(prefix, n) for n in range(3, 5)]]
    collected = Collected()
    part = NotifyPartition(
        config(server.url),
        NotifyDeps(
            on_undeliverable=collected.on_undeliverable,
            on_delivered=collected.on_delivered,
            is_muted=redis_maintenance_checker(redis_client(redis_url)),
        ),
    )
    done = threading.Event()

    def deliver() -> None:
        for batch in batches:
            part.write_batch(batch)
        done.set()

    os.kill(pid, signal.SIGSTOP)
    try:
        worker = threading.Thread(target=deliver, daemon=True)
        worker.start()
        worker.join(60)  # a bound for a stuck thread, not a speed assertion (the timeout is 0.5 s)
        assert done.is_set(), "delivery is stuck on a hung Redis"
    finally:
        os.kill(pid, signal.SIGCONT)
        part.close()
    sent = {e.message_id for batch in batches for e in batch}
    assert set(server.recorder.ok_ids()) == sent
    assert part.mute_check_errors == 2 and part.delivered == 5


def test_a_firing_muted_by_a_maintenance_key_goes_out_when_the_key_is_deleted(
    server: RecordingServer, redis_url: str
) -> None:
    import redis

    from connectors.notify.sink import Recheck

    client = redis.Redis.from_url(redis_url)
    event = make_event(f"park{uuid.uuid4().hex[:8]}", 0)
    key = maintenance_key(event.instance_id)
    client.set(key, "1", ex=60)
    part = NotifyPartition(
        config(server.url),
        NotifyDeps(on_undeliverable=Collected().on_undeliverable, is_muted=redis_maintenance_checker(client)),
    )
    try:
        part.write_batch([event])
        part.write_batch([Recheck()])
        assert server.recorder.all_ids() == set()  # in maintenance: held back
        client.delete(key)  # the operator ends the maintenance while the alert still fires
        part.write_batch([Recheck()])
    finally:
        part.close()
        client.delete(key)
        client.close()
    assert server.recorder.ok_ids() == [event.message_id]
