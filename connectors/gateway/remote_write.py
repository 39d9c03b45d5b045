"""Prometheus remote_write 1.0: a snappy (block format) compressed protobuf `WriteRequest`.

Prometheus drops a batch answered 4xx and retries one answered 5xx or 429, so: unreadable
data -> `BadRequestError` (400), Kafka unavailable -> 503 (the app's business). Staleness markers
(the NaN with Prometheus' own bit pattern, sent when a series disappears) are skipped, not
errors: they are no sample, and a 400 for them would drop the batch's other samples' answer.
"""

from __future__ import annotations

import struct
from typing import Final

import cramjam
from google.protobuf.message import DecodeError

from connectors.errors import PoisonMessage
from connectors.gateway.parse import Defaults, ItemError, Parsed, Record, from_labels, series_text
from connectors.gateway.prometheus.remote_pb2 import WriteRequest

STALE_NAN: Final = 0x7FF0000000000002  # Prometheus' value.StaleNaN
_BITS = struct.Struct("<d")


class BadRequestError(ValueError):
    """The body cannot be read at all (400: Prometheus drops it, a retry would fail the same)."""


def is_stale_marker(value: float) -> bool:
    return int.from_bytes(_BITS.pack(value), "little") == STALE_NAN


def decompress(body: bytes, max_bytes: int) -> bytes:
    """The snappy block body, refused (`TooLargeError`) before decompressing past `max_bytes`."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise BadRequestError(
            f"the body is not snappy block format (Content-Encoding: snappy): {exc}"
        ) from None
    if size > max_bytes:
        raise TooLargeError(f"the body decompresses to {size} bytes, more than the limit of {max_bytes}")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequestError(
            f"the body is not snappy block format (Content-Encoding: snappy): {exc}"
        ) from None


class TooLargeError(ValueError):
    """413."""


def decode(raw: bytes) -> WriteRequest:
    request = WriteRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadRequestError(f"the body is not a protobuf prometheus.WriteRequest: {exc}") from None
    return request


def samples(request: WriteRequest, now: float, defaults: Defaults) -> Parsed:
    """Every sample of every series -> a record, or an error naming the series and sample."""
    records: list[Record] = []
    errors: list[ItemError] = []
    skipped = 0
    for i, series in enumerate(request.timeseries):
        labels = {label.name: label.value for label in series.labels}
        name = labels.get("__name__", "")
        where = f"series {i} {series_text(labels)}"
        if series.histograms:
            errors.append(
                ItemError(where, f"{len(series.histograms)} native histogram sample(s): not supported")
            )
        if not name:
            if series.samples:
                errors.append(ItemError(where, "no `__name__` label (the metric name)"))
            continue
        for j, sample in enumerate(series.samples):
            if sample.value != sample.value and is_stale_marker(sample.value):
                skipped += 1
                continue
            try:
                records.append(
                    from_labels(name, labels, sample.timestamp / 1000, sample.value, now, defaults)
                )
            except PoisonMessage as exc:
                errors.append(ItemError(f"{where} sample {j}", str(exc)))
    return Parsed(tuple(records), tuple(errors), skipped)
