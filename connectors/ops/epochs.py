"""Waking input partitions when Bytewax ends their epoch.

Bytewax ends an input partition's epoch at the first activation of its input at least one
epoch interval after the previous end, and that activation's time starts the next epoch. At
each end every input waits, reading nothing, until all inputs of the dataflow ended the same
epoch (backpressure). An input woken late ends its epochs late, and the lateness adds up, epoch
after epoch: the others wait longer at every boundary.

Measured (bench/delivery.py at 15k msg/s, `perf` on the worker thread): with the heartbeat,
rule watcher and control inputs woken every 0.1 s, the Kafka input stood still 0.1 s at the
first boundary and 0.9 s at the seventeenth, ~0.05 s more each epoch. Left alone that grows
until the Kafka input reads one batch an epoch, then starts again from nothing: about half of
the worker lost on average, and the latency spikes every 10 s of bench/delivery.py.

So every input partition that can sleep wakes at its epoch's end as well (`EpochClock.wake`).
A partition sees its epoch begin: Bytewax asks a new stateless partition for `next_awake` right
after taking the time it starts the first epoch at, calls a stateful one's `snapshot` as it ends
each epoch, and calls `next_batch` of a woken partition in the activation that ends the epoch,
just before. What is left is the activation's own lateness, which the busy Kafka input has too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Final

DEFAULT_EPOCH_S: Final = 10.0
"""`python -m bytewax.run`'s epoch without `-s` (and `bytewax.testing.run_main`'s)."""


def configured_epoch_s(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """The epoch interval `python -m bytewax.run` was given: `-s/--snapshot-interval` (seconds),
    else `BYTEWAX_SNAPSHOT_INTERVAL`, else 10 s."""
    value: str | None = None
    for i, arg in enumerate(argv):
        if arg in ("-s", "--snapshot-interval") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--snapshot-interval="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-s") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
    if value is None:
        value = env.get("BYTEWAX_SNAPSHOT_INTERVAL")
    try:
        seconds = float(value) if value else DEFAULT_EPOCH_S
    except ValueError:
        return DEFAULT_EPOCH_S  # Bytewax refuses it itself, with its own message
    return seconds if seconds > 0 else DEFAULT_EPOCH_S


@cache
def epoch_s() -> float:
    """This process's epoch interval (`configured_epoch_s` of its command line)."""
    return configured_epoch_s(sys.argv, os.environ)


class EpochClock:
    """When Bytewax will next end one input partition's epoch, as far as the partition sees it.

    `seen(now)` from `next_batch` (and a stateless partition's first `next_awake`), `ended(now)`
    from a stateful partition's `snapshot`; `wake(at)` caps the partition's own next wake-up."""

    __slots__ = ("_clock", "interval", "started")

    def __init__(self, interval_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.interval = epoch_s() if interval_s is None else interval_s
        self._clock = clock
        self.started: float | None = None

    def seen(self, now: float | None = None) -> None:
        """Bytewax called the partition: the first call, or one at or past the epoch's end, is
        in the activation that starts an epoch (with a time taken a moment before)."""
        now = self._clock() if now is None else now
        started = self.started
        if started is None or now >= started + self.interval:
            self.started = now

    def ended(self, now: float | None = None) -> None:
        """Bytewax ended the epoch (a stateful partition's `snapshot`)."""
        self.started = self._clock() if now is None else now

    def end(self) -> float:
        """When the current epoch ends (Unix seconds); the interval from now before any call."""
        started = self.started
        return (self._clock() if started is None else started) + self.interval

    def wake(self, at: float) -> float:
        """`at`, or the epoch's end if that comes first."""
        end = self.end()
        return at if at < end else end

    def wake_dt(self, at: float) -> datetime:
        """`wake` as the aware datetime `next_awake` returns."""
        return datetime.fromtimestamp(self.wake(at), UTC)
