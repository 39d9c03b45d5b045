"""W3C trace context from metric messages to every outbound notification request.

The path (issue 12, item 5): a metric message's Kafka `traceparent` header (when present) ->
`traceparent_of` in the evaluation's decode step -> the engine keeps the newest one per instance
and stamps it on that instance's `AlertEvent`s -> the `alerts` record (`to_record`) -> the
delivery flow (`from_record`) -> `client_span` around every HTTP call, which sends it as the
request's `traceparent` header.

opentelemetry-api only; no exporter is required. With no SDK installed the tracer is a no-op and
the header is the incoming traceparent unchanged (injected from the context extracted from it).
When the process configures an SDK (`opentelemetry.trace.set_tracer_provider`), each call is a
CLIENT span, child of the metric message's span, with the alert's `correlation_id` as attribute,
and the header names that span.

The evaluation's hot path pays nothing for messages without headers: `traceparent_of` is called
only when `msg.headers` is non-empty, and checks the value with one regex (no propagator call).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rules.model import AlertEvent
from rules.payload import correlation_id

HEADER: Final = "traceparent"
CORRELATION_ATTRIBUTE: Final = "correlation_id"
# version-traceid-parentid-flags, lowercase hex (W3C Trace Context, level 1); a later version
# may append fields, which are dropped here as the propagator does
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16

_PROPAGATOR: Final = TraceContextTextMapPropagator()
# a proxy: an SDK tracer provider configured later (by the host process) is picked up
_TRACER: Final = trace.get_tracer("gds.notify")


def traceparent_of(headers: Sequence[tuple[str, bytes | str | None]] | None) -> str | None:
    """The valid W3C `traceparent` among Kafka message headers (canonical form), else None.

    Header names are matched case-insensitively (W3C asks for it in HTTP). Never raises: an
    invalid or oddly typed header is ignored, as trace context is never worth a dead letter.
    """
    if not headers:
        return None
    for key, value in headers:
        if not isinstance(key, str) or (key != HEADER and key.lower() != HEADER):
            continue
        if isinstance(value, bytes):
            return parse_traceparent(value.decode("ascii", "replace"))
        return parse_traceparent(value) if isinstance(value, str) else None
    return None


def parse_traceparent(text: str) -> str | None:
    """`version-traceid-spanid-flags` as W3C defines it, or None when invalid."""
    m = _TRACEPARENT.fullmatch(text)
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest:  # version 00 has exactly four fields
        return None
    return f"{version}-{trace_id}-{span_id}-{flags}"


@dataclass(frozen=True, slots=True)
class TraceRef:
    """What one outbound request carries: the traceparent and the incident's correlation id."""

    traceparent: str | None
    correlation_id: str

    @staticmethod
    def of(event: AlertEvent) -> TraceRef:
        return TraceRef(event.traceparent, correlation_id(event))

    @staticmethod
    def newest(alerts: Iterable[AlertEvent]) -> TraceRef | None:
        """A group's trace: its newest alert (by transition time) that carries a traceparent;
        without any, the newest alert's correlation id alone (a span still gets it)."""
        ordered = sorted(alerts, key=lambda a: a.at)
        if not ordered:
            return None
        with_tp = [a for a in ordered if a.traceparent is not None]
        return TraceRef.of(with_tp[-1] if with_tp else ordered[-1])


@contextmanager
def client_span(name: str, ref: TraceRef | None) -> Iterator[dict[str, str]]:
    """Around one outbound request: yields the headers to add (`{"traceparent": ...}`, or `{}`
    when there is no trace context and no SDK).

    The span (a no-op without an SDK) is a CLIENT child of the alert's traceparent with the
    `correlation_id` attribute. Its status is left unset: the callers classify HTTP answers.
    """
    if ref is None or ref.traceparent is None or ref.traceparent.startswith("00-"):
        provider = trace.get_tracer_provider()
        if isinstance(_TRACER, trace.ProxyTracer) and isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
        ):
            # no SDK: no span to start, the incoming traceparent (valid, version 00) goes on as
            # it is; the no-op span and the propagator cost ~40 us per request
            yield {HEADER: ref.traceparent} if ref is not None and ref.traceparent else {}
            return
    parent = _PROPAGATOR.extract({HEADER: ref.traceparent}) if ref and ref.traceparent else None
    attributes = {CORRELATION_ATTRIBUTE: ref.correlation_id} if ref and ref.correlation_id else None
    with _TRACER.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        # a recording span (SDK configured) is the new parent; otherwise pass the incoming one on
        # unchanged, which the no-op API alone would not guarantee
        _PROPAGATOR.inject(carrier, context=None if span.is_recording() or parent is None else parent)
        yield carrier
