"""The flows' notification sink (`PipelinedNotifySink`): a batch is handed to the partition's
loop and `write_batch` returns at once; the epoch's `snapshot` waits for every outcome. Posts are
held at a gate the test opens, so "not answered yet" is a fact here, never a matter of timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.notify.policy import NotifyConfig, RetryPolicy
from connectors.notify.sink import NotifyDeps, PipelinedNotifySink, Reply
from connectors.ops.metrics import Metrics
from rules.model import AlertEvent, AlertState
from tests.support.events import alert_event

TIMEOUT_S = 30.0  # a gate never opened fails the test instead of hanging it


class GatedPoster:
    """Answers `status` to every post; the posts of `gated` message ids wait for `gate`."""

    def __init__(self, status: int = 202, gated: frozenset[str] = frozenset()) -> None:
        self.status = status
        self.gated = gated
        self.gate = threading.Event()
        self.sent: list[tuple[str, str]] = []  # (message id, state) in the order posted

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        key = headers["Idempotency-Key"]
        if key in self.gated:
            opened = await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, TIMEOUT_S)
            assert opened, "the test never opened the gate"
        self.sent.append((key, "resolved" if b'"resolved"' in body else "firing"))
        return Reply(self.status)

    async def aclose(self) -> None:
        return None


def sink(poster: GatedPoster, **deps: Any) -> tuple[PipelinedNotifySink, list[AlertEvent]]:
    delivered: list[AlertEvent] = []
    config = NotifyConfig("http://notify.test/", retry=RetryPolicy(max_attempts=1, deadline_s=None))
    kwargs: dict[str, Any] = {
        "on_undeliverable": lambda e, p, err: None,
        "on_delivered": delivered.append,
        "poster": lambda: poster,
        "metrics": Metrics(CollectorRegistry()),
        **deps,
    }
    return PipelinedNotifySink(config, NotifyDeps(**kwargs)), delivered


def event(message_id: str, state: AlertState = AlertState.FIRING, fp: str = "fp1") -> AlertEvent:
    return alert_event(message_id=message_id, state=state, fingerprint=fp)


def test_write_batch_returns_before_the_answer_and_the_epoch_waits_for_it() -> None:
    poster = GatedPoster(gated=frozenset({"a"}))
    s, delivered = sink(poster)
    (name,) = s.list_parts()
    part = s.build_part("notify", name, None)
    try:
        part.write_batch([event("a")])
        assert s.parts[0].in_flight == 1 and delivered == []  # the post waits at the gate
        poster.gate.set()
        part.snapshot()  # the epoch closes: every outcome is in
        assert s.parts[0].in_flight == 0
        assert [e.message_id for e in delivered] == ["a"]
    finally:
        poster.gate.set()
        part.close()


def test_an_alerts_notifications_keep_their_order_across_batches_in_flight() -> None:
    poster = GatedPoster(gated=frozenset({"fire"}))
    s, _ = sink(poster)
    part = s.build_part("notify", s.list_parts()[0], None)
    try:
        part.write_batch([event("fire")])
        # submitted while the FIRING is still unanswered; another alert is not held up by it
        part.write_batch([event("resolve", AlertState.RESOLVED), event("other", fp="fp2")])
        poster.gate.set()
        part.snapshot()
        sent = [m for m, _ in poster.sent]
        assert sent.index("fire") < sent.index("resolve")
        assert sorted(sent) == ["fire", "other", "resolve"]
    finally:
        poster.gate.set()
        part.close()


def test_a_failing_dead_letter_producer_fails_the_epoch() -> None:
    def dlq_down(e: AlertEvent, p: Any, err: str) -> None:
        raise RuntimeError("dlq: broker down")

    s, _ = sink(GatedPoster(status=400), on_undeliverable=dlq_down)
    part = s.build_part("notify", s.list_parts()[0], None)
    part.write_batch([event("rejected")])
    with pytest.raises(RuntimeError, match="broker down"):
        part.snapshot()


def test_a_partition_full_of_unanswered_posts_waits_before_taking_more() -> None:
    poster = GatedPoster()
    s, delivered = sink(poster)
    s.config = NotifyConfig("http://notify.test/", max_pending=0)  # every batch waits, as NotifySink
    part = s.build_part("notify", s.list_parts()[0], None)
    try:
        part.write_batch([event("a")])
        assert [e.message_id for e in delivered] == ["a"]
    finally:
        part.close()
