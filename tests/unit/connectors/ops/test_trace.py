"""Trace context helpers: the Kafka header, the outbound header, a span where a tracer exists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from connectors.ops import trace as tracing
from connectors.ops.trace import TraceRef, client_span, parse_traceparent, traceparent_of
from rules.payload import correlation_id
from tests.support.events import T0, alert_event

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TP_OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("traceparent", TP.encode())], TP),
        ([("other", b"x"), ("Traceparent", TP.encode())], TP),  # names are case-insensitive
        ([("traceparent", f" {TP}\t".encode())], TP),  # optional whitespace, as the propagator
        ([("traceparent", TP)], TP),
        ([], None),
        (None, None),
        ([("other", b"x")], None),
        ([("traceparent", None)], None),
        ([("traceparent", b"garbage")], None),
        ([("traceparent", TP.upper().encode())], None),  # W3C: lowercase hex only
        ([("traceparent", b"\xff\xfe")], None),
        ([(b"traceparent", TP.encode())], None),  # never raises on odd types
    ],
)
def test_traceparent_of_kafka_headers(headers: Any, expected: str | None) -> None:
    assert traceparent_of(headers) == expected


def test_parse_traceparent_follows_w3c() -> None:
    assert parse_traceparent(TP) == TP
    assert parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None  # zero trace id
    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01") is None
    assert parse_traceparent("ff" + TP[2:]) is None  # forbidden version
    assert parse_traceparent(TP + "-extra") is None  # version 00 has four fields
    assert parse_traceparent("01" + TP[2:] + "-extra") == "01" + TP[2:]  # a later version may add


def test_group_trace_is_the_newest_alert_with_one() -> None:
    old = alert_event(at=T0, traceparent=TP_OTHER, fingerprint="a")
    new = alert_event(at=T0 + 60, traceparent=TP, fingerprint="b")
    newest_without = alert_event(at=T0 + 120, fingerprint="c")
    assert TraceRef.newest([new, old, newest_without]) == TraceRef.of(new)
    assert TraceRef.of(new) == TraceRef(TP, correlation_id(new))
    assert TraceRef.newest([newest_without]) == TraceRef(None, correlation_id(newest_without))
    assert TraceRef.newest([]) is None


def test_without_an_sdk_the_incoming_traceparent_is_sent_unchanged() -> None:
    with client_span("test POST", TraceRef(TP, "fp@t")) as headers:
        assert headers == {"traceparent": TP}
    with client_span("test POST", TraceRef(None, "fp@t")) as headers:
        assert headers == {}
    with client_span("test POST", None) as headers:
        assert headers == {}


class _RecordingSpan(NonRecordingSpan):
    def is_recording(self) -> bool:
        return True


class _Tracer:
    """What an SDK tracer does for us: a recording child span, made current."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    @contextmanager
    def start_as_current_span(self, name: str, context: Any = None, **kw: Any) -> Iterator[Any]:
        parent = trace.get_current_span(context).get_span_context()
        self.started.append({"name": name, "parent": parent, **kw})
        trace_id = parent.trace_id if parent.is_valid else 0x1234
        span = _RecordingSpan(SpanContext(trace_id, 0xABCDEF0123456789, False, TraceFlags(1)))
        with trace.use_span(span):
            yield span


def test_with_a_tracer_each_call_is_a_client_span_with_the_correlation_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer = _Tracer()
    monkeypatch.setattr(tracing, "_TRACER", tracer)
    event = replace(alert_event(), traceparent=TP)
    with client_span("webhook POST", TraceRef.of(event)) as headers:
        # the header names the new span, in the metric message's trace
        assert headers == {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-abcdef0123456789-01"}
    (span,) = tracer.started
    assert span["name"] == "webhook POST"
    assert span["kind"] is trace.SpanKind.CLIENT
    assert span["attributes"] == {"correlation_id": correlation_id(event)}
    assert f"{span['parent'].span_id:016x}" == "00f067aa0ba902b7"
