"""Time slices for deferrable work on a worker thread.

A Bytewax worker runs its operators one after the other on one thread: a step that computes
for 250 ms holds the source, and every message behind it, for 250 ms. Work that may wait a
little (aging silent instances by wall time, `rules.engine.ShardEngine.advance_idle`) runs
in slices instead: at most `work_s` at a time, then none for `gap_s`, so it takes at most
`work_s / (work_s + gap_s)` of the worker while other work waits. The slices are shared by
everything that defers on one worker thread (all its alert shards): one shard's slice used
up, the others wait for the next one rather than each taking its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

WORK_S: Final = 0.005
"""Longest run of deferrable work: what it may add to a message's latency."""

GAP_S: Final = 0.015
"""Pause between slices, for the source and the sinks: deferred work gets at most a quarter of the
worker. Half (5 ms) let the ageing after each tick of bench/delivery.py's 1 s ticks slow the live
input enough to queue it: arrival-to-receiver p99 295 / 432 ms against 203 / 286 ms with a
quarter, in two interleaved pairs of runs at 35.5k msg/s (80 % of the live maximum)."""


class WorkSlices:
    """Slices of deferrable work on one worker thread (module docstring); `clock` in seconds."""

    def __init__(self, clock: Callable[[], float], work_s: float = WORK_S, gap_s: float = GAP_S) -> None:
        self.clock = clock
        self._work_s = work_s
        self._gap_s = gap_s
        self._end = -math.inf  # the current slice ends then
        self._next = -math.inf  # and the next may start then

    def deadline(self) -> float | None:
        """Until when work may go on now (opening a slice if the pause is over); None: not now,
        come back at `next_start()`."""
        now = self.clock()
        if now < self._end:
            return self._end
        if now >= self._next:
            self._end = now + self._work_s
            self._next = self._end + self._gap_s
            return self._end
        return None

    def used_up(self) -> None:
        """The work stopped at the deadline (or past it): the pause runs from now."""
        now = self.clock()
        self._end = min(self._end, now)
        self._next = now + self._gap_s

    def next_start(self) -> float:
        """When deferred work may go on: now within a slice, else when the pause ends."""
        now = self.clock()
        return now if now < self._end else max(now, self._next)
