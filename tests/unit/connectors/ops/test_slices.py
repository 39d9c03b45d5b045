"""`WorkSlices`: deferrable work runs at most `work_s` at a time, then pauses `gap_s`.
(Times in binary fractions, so that the sums compare exactly.)"""

from __future__ import annotations

from connectors.ops.slices import WorkSlices


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_slice_is_shared_until_it_is_used_up_then_work_pauses() -> None:
    clock = Clock()
    slices = WorkSlices(clock, work_s=0.25, gap_s=0.5)
    assert slices.deadline() == 100.25
    clock.now = 100.125
    assert slices.deadline() == 100.25  # a second shard in the same slice
    assert slices.next_start() == 100.125  # deferred work may go on now
    clock.now = 100.375  # the slice was used up, overrun included
    slices.used_up()
    assert slices.deadline() is None
    assert slices.next_start() == 100.875  # the pause runs from the actual end
    clock.now = 100.875
    assert slices.deadline() == 101.125


def test_a_slice_not_used_up_still_pauses_before_the_next() -> None:
    clock = Clock()
    slices = WorkSlices(clock, work_s=0.25, gap_s=0.25)
    assert slices.deadline() == 100.25
    clock.now = 100.375  # past the end, within the pause
    assert slices.deadline() is None
    assert slices.next_start() == 100.5
    clock.now = 100.5
    assert slices.deadline() == 100.75
