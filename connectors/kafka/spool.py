"""A bounded, ordered, crash-safe local spool for Kafka records while the broker is unreachable.

The seeds' "fall back to local spool if Kafka unavailable", shared by the collector and the gateway:

    spool = Spool(path, max_bytes)          # a directory; reopened after a crash as it was left
    spool.append([SpoolRecord(topic, key, value), ...])   # all or nothing; fsynced before it returns
    spool.drain(produce)                    # oldest first; `produce(records)` returns once the
                                            # broker confirmed them all, raises otherwise
    spool.empty / spool.full / spool.bytes / spool.records   # for /metrics and the caller's policy

Contract for callers:
- `append` raises `SpoolFullError` (nothing written) when the batch would take the spool over `max_bytes`:
  the caller refuses the data (the gateway answers 503 with Retry-After; the collector counts the
  samples as dropped, logs it and shows it on /metrics). A full spool is never silently truncated.
- Keep order: while the spool is not `empty`, new records go to the spool too, not straight to Kafka,
  and `drain` is retried; once it returns True (empty) producing directly is in order again.
- `drain` is at-least-once: records are removed only after `produce` returned for them; a failure
  or a crash in the middle re-sends at most the unconfirmed chunk (duplicates possible, loss not).
- Thread-safe: appends may run while another thread drains (they go to a new segment).

On disk: append-only segment files `<seq>.seg` of frames `[u32 length][u32 crc32][payload]`, the
payload `[u16 topic length][topic][i32 key length, -1 for none][key][value]`. Every `append` is
one write and one fsync; a frame torn by a crash (short or bad CRC, only possible at a segment's
end) is cut off on open: that append never returned, so nobody was told it was kept. Progress of a
drain inside a segment is in `<seq>.acked` (the confirmed byte offset, written atomically).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from connectors.errors import ConnectorError

_FRAME: Final = struct.Struct(">II")  # payload length, crc32 of the payload
_TOPIC: Final = struct.Struct(">H")
_KEY: Final = struct.Struct(">i")
_SUFFIX: Final = ".seg"
_ACKED: Final = ".acked"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One Kafka record as it will be produced."""

    topic: str
    key: bytes | None
    value: bytes

    def frame(self) -> bytes:
        topic = self.topic.encode()
        key = b"" if self.key is None else self.key
        payload = b"".join(
            (
                _TOPIC.pack(len(topic)),
                topic,
                _KEY.pack(-1 if self.key is None else len(key)),
                key,
                self.value,
            )
        )
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    @staticmethod
    def parse(payload: bytes) -> SpoolRecord:
        (n,) = _TOPIC.unpack_from(payload, 0)
        at = _TOPIC.size
        topic = payload[at : at + n].decode()
        at += n
        (k,) = _KEY.unpack_from(payload, at)
        at += _KEY.size
        key = None if k < 0 else payload[at : at + k]
        return SpoolRecord(topic, key, payload[at + max(k, 0) :])


Produce = Callable[[Sequence[SpoolRecord]], None]
"""`produce(records)`: returns once the broker confirmed every record, raises otherwise."""


class SpoolFullError(ConnectorError):
    """The batch does not fit: refuse it (503 / count as dropped); nothing of it was written."""


def _frames(data: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each whole, intact frame from `start`; stops at a torn one."""
    at = start
    while at + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, at)
        end = at + _FRAME.size + length
        if end > len(data):
            return
        payload = data[at + _FRAME.size : end]
        if zlib.crc32(payload) != crc:
            return
        yield end, payload
        at = end


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Segment:
    path: Path
    size: int  # bytes of intact frames
    acked: int  # bytes confirmed by the broker (drained)
    records: int  # unacked records


class Spool:
    """A directory of segments holding at most `max_bytes` of unconfirmed records (see module doc).

    `segment_bytes`: a segment is closed for appends once it is this big; drain confirms (and a
    crash re-sends) at most `chunk` records at a time.
    """

    def __init__(
        self, path: Path | str, max_bytes: int, *, segment_bytes: int = 4 << 20, chunk: int = 1000
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.chunk = chunk
        self._lock = threading.Lock()  # segment list, counters, the open file
        self._drain_lock = threading.Lock()  # one drain at a time
        self._refused = False
        self._file: int | None = None  # fd of the segment taking appends (always the last one)
        self.path.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = [self._recover(p) for p in sorted(self.path.glob("*" + _SUFFIX))]
        self._segments = [s for s in self._segments if not self._drop_if_done(s)]
        self._next = 1 + max((int(s.path.stem) for s in self._segments), default=0)

    # -- state --------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes of records not yet confirmed by the broker."""
        with self._lock:
            return sum(s.size - s.acked for s in self._segments)

    @property
    def records(self) -> int:
        with self._lock:
            return sum(s.records for s in self._segments)

    @property
    def empty(self) -> bool:
        with self._lock:
            return all(s.size == s.acked for s in self._segments)

    @property
    def full(self) -> bool:
        """The last append was refused and nothing was drained since."""
        return self._refused

    # -- writing ------------------------------------------------------------------------------

    def append(self, records: Sequence[SpoolRecord]) -> None:
        """Store `records` after everything already spooled; durable (fsynced) on return.

        Raises `SpoolFullError` when they would take the spool over `max_bytes` (nothing written).
        """
        if not records:
            return
        data = b"".join(r.frame() for r in records)
        with self._lock:
            held = sum(s.size - s.acked for s in self._segments)
            if held + len(data) > self.max_bytes:
                self._refused = True
                raise SpoolFullError(
                    f"spool {self.path} is full: {held} of {self.max_bytes} bytes held, "
                    f"{len(records)} records ({len(data)} bytes) refused; "
                    "bring Kafka back or raise SPOOL_MAX_BYTES"
                )
            fd = self._writable()
            os.write(fd, data)
            os.fsync(fd)
            seg = self._segments[-1]
            seg.size += len(data)
            seg.records += len(records)

    def _writable(self) -> int:
        """The fd of the last segment, a new one when there is none open or it is big enough."""
        last = self._segments[-1] if self._segments else None
        if self._file is not None and last is not None and last.size < self.segment_bytes:
            return self._file
        self._close()
        path = self.path / f"{self._next:020d}{_SUFFIX}"
        self._next += 1
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.path)  # the new name survives a crash too
        self._segments.append(_Segment(path, 0, 0, 0))
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- draining -----------------------------------------------------------------------------

    def drain(self, produce: Produce, *, max_records: int | None = None) -> bool:
        """Produce every spooled record, oldest first, removing them once `produce` returned.

        Returns True when the spool is empty. An exception from `produce` propagates and leaves
        the unconfirmed records in place, in order, for the next drain. `max_records` bounds one
        call (a caller that must keep serving drains in steps; False then says "more left").
        """
        budget = max_records
        with self._drain_lock:
            while True:
                with self._lock:
                    pending = [s for s in self._segments if s.size > s.acked]
                    if not pending:
                        self._refused = False
                        return True
                    if budget is not None and budget <= 0:
                        return False
                    seg = pending[0]
                    if seg is self._segments[-1]:
                        self._close()  # appends from now on go to a new segment
                    end = seg.size
                with seg.path.open("rb") as f:
                    data = f.read(end)
                batch: list[SpoolRecord] = []
                confirmed = seg.acked
                for stop, payload in _frames(data, seg.acked):
                    batch.append(SpoolRecord.parse(payload))
                    if len(batch) in (self.chunk, budget) or stop == end:
                        produce(batch)
                        self._ack(seg, stop, len(batch))
                        confirmed = stop
                        if budget is not None:
                            budget -= len(batch)
                            if budget <= 0:
                                break
                        batch = []
                stopped_early = budget is not None and budget <= 0
                if not stopped_early and (confirmed != end or seg.acked != end):  # the file changed under us
                    raise ConnectorError(f"spool segment {seg.path} is damaged at byte {confirmed}")

    def _ack(self, seg: _Segment, offset: int, n: int) -> None:
        with self._lock:
            seg.acked = offset
            seg.records -= n
            self._refused = False
            if self._drop_if_done(seg):
                self._segments.remove(seg)
                return
        tmp = seg.path.with_suffix(_ACKED + ".tmp")
        tmp.write_text(str(offset))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(seg.path.with_suffix(_ACKED))

    def _drop_if_done(self, seg: _Segment) -> bool:
        """Delete a fully confirmed segment that takes no more appends."""
        open_last = self._file is not None and bool(self._segments) and seg is self._segments[-1]
        if seg.size != seg.acked or open_last:
            return False
        seg.path.unlink(missing_ok=True)
        seg.path.with_suffix(_ACKED).unlink(missing_ok=True)
        return True

    # -- recovery -----------------------------------------------------------------------------

    def _recover(self, path: Path) -> _Segment:
        """A segment as a crash left it: a torn last frame is cut off, the drain offset read."""
        data = path.read_bytes()
        ends = [end for end, _ in _frames(data)]
        size, records = (ends[-1] if ends else 0), len(ends)
        if size != len(data):
            with path.open("r+b") as f:
                f.truncate(size)
                os.fsync(f.fileno())
        acked_path = path.with_suffix(_ACKED)
        acked = min(int(acked_path.read_text() or 0), size) if acked_path.is_file() else 0
        done = sum(1 for end, _ in _frames(data[:acked]))
        return _Segment(path, size, acked, records - done)


class SpoolMetrics:
    """`gds_spool_*` of one process, labelled by the job (the gateway can share them)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        self.bytes = Gauge("gds_spool_bytes", "Bytes held in the local spool.", ("job",), registry=r)
        self.records = Gauge("gds_spool_records", "Records held in the local spool.", ("job",), registry=r)
        self.full = Gauge("gds_spool_full", "1 while the spool refuses appends (full).", ("job",), registry=r)
        self.spooled = Counter(
            "gds_spool_spooled", "Records written to the spool (Kafka unreachable).", ("job",), registry=r
        )
        self.drained = Counter(
            "gds_spool_drained", "Spooled records confirmed by Kafka after it returned.", ("job",), registry=r
        )
        self.dropped = Counter(
            "gds_spool_dropped",
            "Records dropped because Kafka was unreachable and the spool was full.",
            ("job",),
            registry=r,
        )

    def show(self, job: str, spools: Sequence[Spool]) -> None:
        self.bytes.labels(job).set(sum(s.bytes for s in spools))
        self.records.labels(job).set(sum(s.records for s in spools))
        self.full.labels(job).set(float(any(s.full for s in spools)))
