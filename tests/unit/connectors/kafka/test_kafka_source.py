"""The metric source's partition reader: idle back-off and in-band progress markers (no broker)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING

from connectors.kafka.source import IDLE_POLL_MAX_S, PROGRESS_INTERVAL_S, SourceProgress, _MetricPartition
from connectors.ops.health import Health
from connectors.ops.heartbeat import EPOCH_TICK_S, _HeartbeatPartition


class FakeMsg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def headers(self) -> None:
        return None

    def key(self) -> bytes:
        return b"db1"

    def value(self) -> bytes:
        return b"{}"

    def topic(self) -> str:
        return "t"

    def latency(self) -> None:
        return None

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return 0

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


class FakeConsumer:
    """Serves `pending` messages, reports `high` as the broker's high watermark."""

    def __init__(self) -> None:
        self.pending: list[FakeMsg] = []
        self.high = 0

    def consume(self, n: int, timeout: float) -> list[FakeMsg]:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
        return 0, self.high

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def partition(progress: bool = True) -> tuple[_MetricPartition, FakeConsumer, Clock]:
    clock = Clock()
    config = {"bootstrap.servers": "127.0.0.1:1", "group.id": "x"}
    part = _MetricPartition(
        "in", config, "t", 0, OFFSET_BEGINNING, None, 3, True,
        start=OFFSET_BEGINNING, parts=2, progress=progress, clock=clock,
    )  # fmt: skip
    fake = FakeConsumer()
    part._consumer.close()
    part._consumer = fake  # type: ignore[assignment]
    return part, fake, clock


def awake_in(part: _MetricPartition, clock: Clock) -> float | None:
    at = part.next_awake()
    return None if at is None else at.timestamp() - clock.now


def test_an_idle_partition_backs_off_instead_of_polling_every_millisecond() -> None:
    part, fake, clock = partition(progress=False)
    pauses: list[float] = []
    for _ in range(12):
        assert part.next_batch() == []
        pauses.append(awake_in(part, clock) or 0.0)
    assert pauses[0] is not None and pauses[0] > 0
    assert pauses == sorted(pauses) and pauses[-1] == pytest.approx(IDLE_POLL_MAX_S)
    fake.pending = [FakeMsg(0)]
    assert len(part.next_batch()) == 1
    assert part.next_awake() is None  # data: poll again at once


def test_progress_markers_say_when_the_partition_was_read_to_its_end() -> None:
    part, fake, clock = partition()
    fake.pending = [FakeMsg(i) for i in range(5)]
    fake.high = 5
    first = part.next_batch()  # a full batch of 3: behind, and the first marker of the run
    assert [type(x) for x in first] == [type(first[0])] * 3 + [SourceProgress]
    assert first[-1] == SourceProgress("0-t", -math.inf, 2)
    start = clock.now
    clock.now += PROGRESS_INTERVAL_S / 2
    assert len(part.next_batch()) == 2  # read to the end; marker not due within the interval
    clock.now += PROGRESS_INTERVAL_S * 0.6
    (mark,) = part.next_batch()
    caught_up = clock.now
    assert caught_up == pytest.approx(start + PROGRESS_INTERVAL_S * 1.1)
    assert mark == SourceProgress("0-t", caught_up, 2)  # caught up as of this poll
    fake.high = 9  # new data at the broker, not read yet: not caught up any more
    clock.now += PROGRESS_INTERVAL_S
    (mark,) = part.next_batch()
    assert mark.caught_up_at == caught_up


def test_the_heartbeat_input_wakes_often_enough_to_advance_epochs() -> None:
    clock = Clock()
    beats = _HeartbeatPartition("alerting", 60.0, clock, "h", 0, Health(), None)
    assert len(beats.next_batch()) == 1
    wake = beats.next_awake()
    assert wake <= datetime.fromtimestamp(clock.now + EPOCH_TICK_S, UTC)
