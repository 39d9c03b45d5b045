"""OTLP/HTTP metrics (`POST /v1/metrics`, protobuf or JSON) -> samples, Prometheus style.

Gauges and sums are one sample per data point; an explicit-bucket histogram becomes the
`{name}_bucket{le=...}` (cumulative, with `+Inf`), `{name}_sum` and `{name}_count` series.
Exponential histograms and summaries are refused per data point (the OTLP partial success
names them). Names and attribute keys get Prometheus' character set (`.` -> `_`). Resource
attributes are labels too: `service.instance.id` (or `host.name`) is the instance,
`deployment.environment(.name)` the environment, `db.system(.name)` the database_type,
`service.name` the `job`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric as OtlpMetric

from connectors.errors import PoisonMessage
from connectors.gateway.parse import Defaults, ItemError, Parsed, Record, from_labels
from connectors.gateway.remote_write import BadRequestError

JSON: Final = "application/json"
PROTOBUF: Final = "application/x-protobuf"
_INVALID = re.compile(r"[^A-Za-z0-9_:]")
_INVALID_LABEL = re.compile(r"[^A-Za-z0-9_]")
# resource attribute -> our label, first present wins
_RESOURCE_LABELS: Final = (
    ("service.instance.id", "instance"),
    ("host.name", "instance"),
    ("deployment.environment.name", "environment"),
    ("deployment.environment", "environment"),
    ("db.system.name", "database_type"),
    ("db.system", "database_type"),
    ("service.name", "job"),
)


def decode(body: bytes, content_type: str) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    try:
        if content_type == JSON:
            json_format.Parse(body, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"the body is not an OTLP ExportMetricsServiceRequest ({content_type}): {exc}"
        ) from None
    return request


def response(parsed: Parsed, content_type: str) -> bytes:
    """The OTLP answer: `partial_success` names the rejected points (empty when all were taken)."""
    answer = ExportMetricsServiceResponse()
    if parsed.errors:
        answer.partial_success.rejected_data_points = len(parsed.errors)
        shown = "; ".join(e.text() for e in parsed.errors[:20])
        more = f" (and {len(parsed.errors) - 20} more)" if len(parsed.errors) > 20 else ""
        answer.partial_success.error_message = shown + more
    if content_type == JSON:
        return json_format.MessageToJson(answer, indent=None).encode()
    return answer.SerializeToString()


def _value(v: AnyValue) -> str:
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(v, kind))
    return json_format.MessageToJson(v, indent=None)  # arrays, maps, bytes: as JSON text


def _attributes(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {_INVALID_LABEL.sub("_", a.key): _value(a.value) for a in attributes}


def _resource_labels(attributes: Iterable[KeyValue]) -> dict[str, str]:
    raw = {a.key: _value(a.value) for a in attributes}
    labels: dict[str, str] = {}
    for key, label in _RESOURCE_LABELS:
        if raw.get(key) and label not in labels:
            labels[label] = raw[key]
    return labels


def name_of(metric: OtlpMetric) -> str:
    name = _INVALID.sub("_", metric.name)
    return "_" + name if name[:1].isdigit() else name


def samples(request: ExportMetricsServiceRequest, now: float, defaults: Defaults) -> Parsed:
    records: list[Record] = []
    errors: list[ItemError] = []
    for r, rm in enumerate(request.resource_metrics):
        base = _resource_labels(rm.resource.attributes)
        for s, sm in enumerate(rm.scope_metrics):
            for m, metric in enumerate(sm.metrics):
                where = f"resource {r} scope {s} metric {m} {metric.name!r}"
                _metric(metric, base, where, now, defaults, records, errors)
    return Parsed(tuple(records), tuple(errors))


def _metric(
    metric: OtlpMetric,
    base: Mapping[str, str],
    where: str,
    now: float,
    defaults: Defaults,
    records: list[Record],
    errors: list[ItemError],
) -> None:
    name = name_of(metric)
    kind = metric.WhichOneof("data")
    if not name:
        errors.append(ItemError(where, "no metric name"))
        return

    def add(point: int, series: str, labels: Mapping[str, str], ts_ns: int, value: Any) -> bool:
        try:
            records.append(from_labels(series, labels, (ts_ns or now * 1e9) / 1e9, value, now, defaults))
        except PoisonMessage as exc:
            errors.append(ItemError(f"{where} point {point}", str(exc)))
            return False
        return True

    if kind in ("gauge", "sum"):
        for p, dp in enumerate(getattr(metric, kind).data_points):
            labels = {**_attributes(dp.attributes), **base}
            which = dp.WhichOneof("value")
            value: float = float(dp.as_int) if which == "as_int" else dp.as_double
            add(p, name, labels, dp.time_unix_nano, value)
    elif kind == "histogram":
        for p, hp in enumerate(metric.histogram.data_points):
            labels = {**_attributes(hp.attributes), **base}
            bounds, counts = list(hp.explicit_bounds), list(hp.bucket_counts)
            if counts and len(counts) != len(bounds) + 1:
                errors.append(
                    ItemError(
                        f"{where} point {p}",
                        f"{len(counts)} bucket_counts for {len(bounds)} explicit_bounds (needs one more)",
                    )
                )
                continue
            # one point is several series: stop at its first bad one (it is one rejected point)
            ok = True
            cumulative = 0
            for bound, count in zip([*bounds, float("inf")], counts, strict=False):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _float_text(bound)
                ok = ok and add(
                    p, f"{name}_bucket", {**labels, "le": le}, hp.time_unix_nano, float(cumulative)
                )
            if ok and hp.HasField("sum"):
                ok = add(p, f"{name}_sum", labels, hp.time_unix_nano, hp.sum)
            if ok:
                add(p, f"{name}_count", labels, hp.time_unix_nano, float(hp.count))
    else:
        points = len(getattr(metric, kind).data_points) if kind else 0
        errors.append(
            ItemError(
                where,
                f"{kind or 'no data'}: not supported ({points} point(s); send gauges, sums or histograms)",
            )
        )


def _float_text(v: float) -> str:
    """Prometheus' `le` text: `0.5`, `1`, `2.5e+06` (Go's strconv 'g' with shortest digits)."""
    return repr(float(v)).removesuffix(".0") if v == int(v) and abs(v) < 1e15 else repr(v)
