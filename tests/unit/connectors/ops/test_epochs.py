"""Input partitions wake at their epoch's end (connectors/ops/epochs.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.ops import heartbeat
from connectors.ops.epochs import DEFAULT_EPOCH_S, EpochClock, configured_epoch_s
from connectors.ops.health import Health
from connectors.ops.heartbeat import _HeartbeatPartition

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["run.py", "flows.alerting"], {}, DEFAULT_EPOCH_S),
        (["run.py", "flows.alerting", "-r", "d", "-s", "5", "-b", "0"], {}, 5.0),
        (["run.py", "flows.alerting", "--snapshot-interval=2.5"], {}, 2.5),
        (["run.py", "flows.alerting", "-s3"], {}, 3.0),
        (["run.py", "flows.alerting"], {"BYTEWAX_SNAPSHOT_INTERVAL": "7"}, 7.0),
        (["run.py", "flows.alerting", "-s", "4"], {"BYTEWAX_SNAPSHOT_INTERVAL": "7"}, 4.0),
        (["pytest", "-s", "tests/"], {}, DEFAULT_EPOCH_S),  # pytest's -s is no interval
        (["run.py", "x", "-s", "0"], {}, DEFAULT_EPOCH_S),
    ],
)
def test_the_epoch_interval_is_read_as_bytewax_run_reads_it(
    argv: list[str], env: dict[str, str], expected: float
) -> None:
    assert configured_epoch_s(argv, env) == expected


def test_the_clock_follows_the_epochs_it_sees() -> None:
    clock = FakeClock()
    epoch = EpochClock(10.0, clock)
    assert epoch.end() == T0 + 10  # nothing seen yet: a whole epoch from now
    epoch.seen()
    clock.now += 4
    epoch.seen()  # within the epoch: Bytewax did not end it
    assert epoch.end() == T0 + 10
    assert epoch.wake(T0 + 5) == T0 + 5
    assert epoch.wake(T0 + 60) == T0 + 10  # never past the epoch's end
    clock.now = T0 + 10.002  # woken at the end: this activation starts the next epoch
    epoch.seen()
    assert epoch.end() == pytest.approx(T0 + 20.002)
    clock.now = T0 + 20.5
    epoch.ended()  # a stateful partition's snapshot: the end itself
    assert epoch.end() == pytest.approx(T0 + 30.5)
    assert epoch.wake_dt(T0 + 99) == datetime.fromtimestamp(T0 + 30.5, UTC)


def epoch_starts(part: Any, clock: FakeClock, interval: float, epochs: int, step_s: float) -> list[float]:
    """Bytewax's stateless input (src/inputs.rs, 0.21) on a worker that steps every `step_s`:
    the first epoch starts as the partition is built (`next_awake` is asked right then), the
    partition is activated at the first step at or past its `next_awake`, and an activation at
    least `interval` after the epoch's start ends it and starts the next one. Returns how late
    each epoch started against a busy input activated at every step (the Kafka input)."""
    started = clock.now
    wake = part.next_awake().timestamp()
    busy = clock.now
    late: list[float] = []
    while len(late) < epochs:
        clock.now += step_s
        if clock.now - busy >= interval:
            busy = clock.now
        if clock.now >= wake:
            part.next_batch()
            if clock.now - started >= interval:
                started = clock.now
                late.append(started - busy)
            wake = part.next_awake().timestamp()
    return late


def test_a_heartbeat_input_does_not_fall_behind_the_kafka_input_epoch_after_epoch() -> None:
    """Woken every EPOCH_TICK_S only, the heartbeat input ended each epoch up to 0.1 s late and
    the lateness added up (the Kafka input then waited longer at every boundary); woken at the
    epoch's end it stays within a worker step of the busy input."""
    clock = FakeClock()
    part = _HeartbeatPartition("alerting", 30.0, clock, "h", 0, Health(clock, lags=None), None)
    step = 0.003
    late = epoch_starts(part, clock, part._epoch.interval, 300, step)
    assert max(late) <= 2 * step
    assert 10 * step < heartbeat.EPOCH_TICK_S  # what the tick alone would have let it lag by
