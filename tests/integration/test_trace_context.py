"""Trace context end to end on real components (issue 12, item 5).

Metric messages with a W3C `traceparent` Kafka header go through the real broker into the
evaluation sub-flow (the alerting job's own source and `evaluate`), whose transitions are written
to a real `alerts` topic. The records read back from it (as the delivery flow reads them) are then
delivered over loopback HTTP by the notification-service sink and by a webhook receiver: every
request carries the traceparent of the metric message that led to the alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSink
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import Producer

from connectors.kafka.serde import make_decoder
from connectors.kafka.source import metric_source
from connectors.notify.policy import NotifyConfig, RetryPolicy
from connectors.notify.receivers import (
    OutcomeKind,
    notification_service_sender,
    pagerduty_sender,
    webhook_sender,
)
from connectors.notify.sink import NotifyDeps, NotifyPartition
from flows.common import alert_message, evaluate
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent, AlertState
from rules.routing import payloads
from rules.routing.types import GroupNotification
from tests.support.data import consume_all, incident_rows
from tests.support.http_capture import CaptureServer

pytestmark = pytest.mark.integration
RULES = load_rules([BUNDLED])


def traceparent(n: int) -> str:
    """A distinct valid traceparent per instance number."""
    return f"00-{n + 1:032x}-{0xABC0 + n:016x}-01"


def instance_number(instance_id: str) -> int:
    return int(instance_id.rsplit("-", 1)[1])


@pytest.fixture()
def server() -> Iterator[CaptureServer]:
    s = CaptureServer()
    yield s
    s.stop()


def alerts_through_kafka(bootstrap: str, topic_factory: Any) -> tuple[list[AlertEvent], set[str]]:
    """Metrics with headers -> broker -> evaluation -> `alerts` topic -> events read back.
    Returns the notified events and the instances whose messages carried no trace context."""
    metrics, alerts = topic_factory("metrics", partitions=2), topic_factory("alerts")
    rows = incident_rows()
    untraced = {r["instance_id"] for r in rows if instance_number(r["instance_id"]) % 3 == 0}
    p = Producer({"bootstrap.servers": bootstrap})
    for r in rows:
        iid = r["instance_id"]
        headers: list[tuple[str, str | bytes | None]] | None = (
            None if iid in untraced else [("traceparent", traceparent(instance_number(iid)).encode())]
        )
        p.produce(metrics, json.dumps(r).encode(), iid.encode(), headers=headers)
    assert p.flush(30) == 0

    flow = Dataflow("trace-context-eval")
    raw: Any = op.input("in", flow, metric_source([bootstrap], [metrics], tail=False))
    events, _ = evaluate("eval", raw, RULES, make_decoder("json"), shards=8, wall=None, flush_on_eof=True)
    op.output("alerts", op.map("record", events, alert_message), KafkaSink([bootstrap], alerts))
    run_main(flow)

    records = [json.loads(m.value() or b"{}") for m in consume_all(bootstrap, alerts, 1)]
    assert records, "the evaluation wrote no alert records"
    notified = [AlertEvent.from_record(r) for r in records if r["notify"] and not r["suppressed"]]
    assert {e.state for e in notified} == {AlertState.FIRING, AlertState.RESOLVED}
    return notified, untraced


def expected_traceparent(event: AlertEvent, untraced: set[str]) -> str | None:
    return None if event.instance_id in untraced else traceparent(instance_number(event.instance_id))


def test_notification_service_and_webhook_posts_carry_the_metric_traceparent(
    kafka_bootstrap: str, topic_factory: Any, server: CaptureServer
) -> None:
    events, untraced = alerts_through_kafka(kafka_bootstrap, topic_factory)
    assert any(e.instance_id in untraced for e in events)
    assert any(e.instance_id not in untraced for e in events)

    # the notification service, through the alerting job's sink
    failed: list[Any] = []
    part = NotifyPartition(
        NotifyConfig(server.url, retry=RetryPolicy(base_s=0.01, cap_s=0.1, max_attempts=3)),
        NotifyDeps(on_undeliverable=lambda e, p, err: failed.append((e, err))),
    )
    try:
        part.write_batch(events)
    finally:
        part.close()
    assert failed == []
    posts = {r.body["message_id"]: r.headers for r in server.script.received}
    assert posts.keys() == {e.message_id for e in events}
    for e in events:
        assert posts[e.message_id].get("traceparent") == expected_traceparent(e, untraced), e.instance_id
        assert posts[e.message_id]["Idempotency-Key"] == e.message_id

    # a grouped webhook: the traceparent of the group's newest alert that has one
    server.script.received.clear()
    traced = sorted((e for e in events if e.instance_id not in untraced), key=lambda e: e.at)
    group = GroupNotification("team", "{}:{}", (), tuple(traced[-3:]), traced[-1].at + 10)
    hook = webhook_sender("team", server.url + "/hook")
    try:
        assert hook.send(group).kind is OutcomeKind.DELIVERED
    finally:
        hook.close()
    (got,) = server.script.received
    assert got.path == "/hook" and got.body["version"] == "4"
    assert (
        got.headers.get("traceparent") == traced[-1].traceparent == expected_traceparent(traced[-1], untraced)
    )

    # the routed notification service: one POST per alert, each with its own alert's trace
    server.script.received.clear()
    mixed = tuple(sorted(events, key=lambda e: e.at)[:6])
    assert {e.instance_id in untraced for e in mixed} == {True, False}
    service = notification_service_sender("svc", server.url)
    try:
        assert service.send(GroupNotification("svc", "{}:{}", (), mixed, mixed[-1].at)).delivered
    finally:
        service.close()
    by_id = {r.body["message_id"]: r.headers for r in server.script.received}
    assert by_id.keys() == {e.message_id for e in mixed}
    for e in mixed:
        assert by_id[e.message_id].get("traceparent") == expected_traceparent(e, untraced)

    # PagerDuty: one event per alert, each with its own alert's trace
    server.script.received.clear()
    pager = pagerduty_sender("pd", "key", url=server.url + "/pd")
    try:
        assert pager.send(GroupNotification("pd", "{}:{}", (), mixed, mixed[-1].at)).delivered
    finally:
        pager.close()
    ordered = payloads.sorted_alerts(GroupNotification("pd", "{}:{}", (), mixed, mixed[-1].at))
    sent = [(r.body["dedup_key"], r.headers.get("traceparent")) for r in server.script.received]
    assert sent == [(e.fingerprint, expected_traceparent(e, untraced)) for e in ordered]
