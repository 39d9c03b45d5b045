"""The local spool: order across segments, a crash in the middle of a segment or a drain, full."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from connectors.kafka.spool import Spool, SpoolFullError, SpoolRecord


def rec(i: int, topic: str = "gds.metrics.postgresql.prod") -> SpoolRecord:
    return SpoolRecord(topic, None if i % 7 == 0 else f"db-{i % 3}".encode(), f'{{"n": {i}}}'.encode())


class Broker:
    """Collects produced records; fails once `fail_after` more records were confirmed."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.got: list[SpoolRecord] = []
        self.fail_after = fail_after

    def __call__(self, records: Sequence[SpoolRecord]) -> None:
        if self.fail_after is not None and self.fail_after < len(records):
            raise ConnectionError("broker down")
        if self.fail_after is not None:
            self.fail_after -= len(records)
        self.got.extend(records)


def test_drain_keeps_append_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=200, chunk=3)
    sent = [rec(i) for i in range(50)]
    for i in range(0, 50, 5):
        spool.append(sent[i : i + 5])
    assert len(list(tmp_path.glob("*.seg"))) > 3  # several segments
    assert spool.records == 50 and spool.bytes > 0 and not spool.empty
    broker = Broker()
    assert spool.drain(broker)
    assert broker.got == sent
    assert spool.empty and spool.records == 0 and spool.bytes == 0
    assert not list(tmp_path.glob("*.seg"))


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=100)
    sent = [rec(i) for i in range(10)]
    spool.append(sent[:4])
    spool.append(sent[4:])
    spool.close()
    again = Spool(tmp_path, 1 << 20, segment_bytes=100)
    assert again.records == 10
    broker = Broker()
    again.drain(broker)
    assert broker.got == sent


def test_crash_in_the_middle_of_a_segment_cuts_only_the_torn_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    kept = [rec(i) for i in range(6)]
    spool.append(kept)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    whole = segment.read_bytes()
    torn = rec(99).frame()
    with segment.open("ab") as f:  # the crash: half of the next append's frame reached the disk
        f.write(torn[: len(torn) // 2])
    again = Spool(tmp_path, 1 << 20)
    assert again.records == 6
    assert segment.read_bytes() == whole  # the torn tail is cut off on open
    later = [rec(i) for i in range(100, 103)]
    again.append(later)
    broker = Broker()
    again.drain(broker)
    assert broker.got == kept + later


def test_a_corrupted_frame_is_not_produced(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append([rec(1), rec(2)])
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # last record's value damaged (a torn sector)
    segment.write_bytes(bytes(data))
    broker = Broker()
    Spool(tmp_path, 1 << 20).drain(broker)
    assert broker.got == [rec(1)]


def test_failed_drain_keeps_unconfirmed_records_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=150, chunk=2)
    sent = [rec(i) for i in range(12)]
    spool.append(sent[:6])
    spool.append(sent[6:])
    broker = Broker(fail_after=4)  # two chunks confirmed, then the broker goes away
    with pytest.raises(ConnectionError):
        spool.drain(broker)
    assert broker.got == sent[:4]
    assert spool.records == 8
    broker.fail_after = None
    assert spool.drain(broker)
    assert broker.got == sent  # nothing twice, nothing lost, in order


def test_crash_during_a_drain_resends_only_the_unconfirmed_chunk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, chunk=2)
    sent = [rec(i) for i in range(7)]
    spool.append(sent)
    broker = Broker(fail_after=4)
    with pytest.raises(ConnectionError):
        spool.drain(broker)
    spool.close()  # the process dies here; the confirmed offset is on disk
    again = Spool(tmp_path, 1 << 20, chunk=2)
    assert again.records == 3
    rest = Broker()
    again.drain(rest)
    assert rest.got == sent[4:]


def test_full_spool_refuses_the_whole_batch_and_says_so(tmp_path: Path) -> None:
    one = len(rec(1).frame())
    spool = Spool(tmp_path, 3 * one + one // 2)
    spool.append([rec(1), rec(2)])
    with pytest.raises(SpoolFullError, match=r"full.*SPOOL_MAX_BYTES"):
        spool.append([rec(3), rec(4)])  # would exceed: nothing of it is written
    assert spool.full
    assert spool.records == 2
    spool.append([rec(5)])  # a batch that fits is still taken
    broker = Broker()
    assert spool.drain(broker)
    assert broker.got == [rec(1), rec(2), rec(5)]
    assert not spool.full
    spool.append([rec(6), rec(7), rec(8)])  # room again after the drain
    assert spool.records == 3


def test_appends_during_a_drain_come_after_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, chunk=1)
    spool.append([rec(1), rec(2)])
    got: list[SpoolRecord] = []

    def produce(records: Sequence[SpoolRecord]) -> None:
        got.extend(records)
        if records[0] == rec(1):
            spool.append([rec(3)])  # another thread appends while the oldest segment drains

    assert spool.drain(produce)
    assert got == [rec(1), rec(2), rec(3)]


def test_a_bounded_drain_goes_on_where_it_stopped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=150, chunk=4)
    sent = [rec(i) for i in range(11)]
    spool.append(sent[:5])
    spool.append(sent[5:])
    broker = Broker()
    assert not spool.drain(broker, max_records=3)
    assert broker.got == sent[:3] and spool.records == 8
    assert not spool.drain(broker, max_records=6)
    assert broker.got == sent[:9]
    assert spool.drain(broker, max_records=6)
    assert broker.got == sent and spool.empty
