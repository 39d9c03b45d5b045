"""Trace context in the evaluation sub-flow: a metric message's Kafka `traceparent` header
reaches the `alerts` record of the transitions it led to (issue 12, item 5)."""

from __future__ import annotations

import json
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.kafka.serde import make_decoder
from flows.common import alert_message, evaluate
from flows.sample.generate import rows
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent

RULES = load_rules([BUNDLED])
DECODE = make_decoder("json", max_future_s=float("inf"))
TP_EARLY = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACED = "prod-db-01"
UNTRACED = "prod-db-09"


def sample() -> list[dict[str, Any]]:
    """The bundled sample (only prod-db-01 alerts) plus an untraced copy of prod-db-01."""
    out = []
    for r in rows():
        out.append(r)
        if r["instance_id"] == TRACED:
            out.append({**r, "instance_id": UNTRACED})
    return out


def messages(headers_of: Any) -> list[KafkaSourceMessage]:
    out = []
    for i, r in enumerate(sample()):
        out.append(
            KafkaSourceMessage(
                str(r["instance_id"]).encode(),
                json.dumps(r).encode(),
                topic="gds.metrics.postgresql.production",
                headers=headers_of(i, r),
                partition=0,
                offset=i,
            )
        )
    return out


def alert_records(items: list[KafkaSourceMessage]) -> list[dict[str, Any]]:
    """The `alerts` topic's records as the alerting job writes them."""
    flow = Dataflow("trace-context")
    raw = op.input("in", flow, TestingSource(items))
    events, poison = evaluate("eval", raw, RULES, DECODE, shards=4, wall=None, flush_on_eof=True)
    got: list[Any] = []
    bad: list[Any] = []
    op.output("alerts", op.map("record", events, alert_message), TestingSink(got))
    op.output("dlq", poison, TestingSink(bad))
    run_main(flow)
    assert bad == []  # a traceparent header, valid or not, never makes a dead letter
    return [json.loads(m.value) for m in got]


def test_kafka_traceparent_reaches_the_alert_records_of_its_instance() -> None:
    def headers(i: int, r: dict[str, Any]) -> list[tuple[str, bytes]]:
        if r["instance_id"] != TRACED:
            return [("content-type", b"application/json")]  # headers, but no trace context
        # the first messages carry an older trace, every later one the current trace
        return [("traceparent", (TP_EARLY if i < 40 else TP).encode())]

    records = alert_records(messages(headers))
    mine = [r for r in records if r["labels"]["instance_id"] == TRACED]
    assert {r["state"] for r in mine if r["notify"]} == {"firing", "resolved"}
    assert {r["traceparent"] for r in mine} == {TP}  # the newest seen when each transition happened
    others = [r for r in records if r["labels"]["instance_id"] == UNTRACED]
    assert len(others) == len(mine) and all("traceparent" not in r for r in others)
    # the delivery flow reads them back with the trace context
    assert {AlertEvent.from_record(r).traceparent for r in mine} == {TP}


@pytest.mark.parametrize("value", [b"not-a-traceparent", TP.upper().encode(), b"\xff"])
def test_invalid_traceparent_is_ignored(value: bytes) -> None:
    records = alert_records(messages(lambda i, r: [("traceparent", value)]))
    assert records and all("traceparent" not in r for r in records)


def test_without_headers_records_are_unchanged() -> None:
    plain = alert_records(messages(lambda i, r: []))
    assert plain and all("traceparent" not in r for r in plain)
