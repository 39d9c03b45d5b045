"""The alerting step ages silent instances by wall time in the worker's slices
(`connectors.ops.slices`): what one batch leaves over comes out of `on_notify` (Bytewax calls
it at `notify_at`) or at the end of the input, and all of it equals aging all at once."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from connectors.kafka.replay import source_message
from connectors.kafka.serde import make_decoder
from connectors.kafka.source import SourceProgress
from connectors.ops.slices import WorkSlices
from flows.common import EngineLogic
from rules.engine import ShardEngine
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent

RULES = load_rules([BUNDLED])
DECODE = make_decoder("json", max_future_s=math.inf)
T0 = 1_736_935_200.0
WALL = T0 + 600.0  # when the samples were read
INSTANCES = [f"db{i}" for i in range(4)]


class SteppingClock:
    """Wall time that moves 1 s at each reading: every slice ends after one instance."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def batch() -> list[object]:
    """40 breaching CPU samples of each instance, 15 s apart, then a progress marker saying the
    input was caught up 10 minutes after that (every instance silent since)."""
    out: list[object] = []
    for iid in INSTANCES:
        for i in range(40):
            row = {
                "timestamp": T0 - 600 + i * 15,
                "database_type": "postgresql",
                "instance_id": iid,
                "metric_name": "cpu_usage_percent",
                "value": 97.0,
                "tags": {"region": "eu"},
            }
            out.append(source_message(iid.encode(), json.dumps(row).encode(), "metrics", 0, len(out)))
    out.append(SourceProgress("0-metrics", WALL + 600, 1))
    return out


def logic(wall: SteppingClock, slices: WorkSlices | None) -> EngineLogic:
    return EngineLogic(ShardEngine(RULES, live=True), DECODE, wall, False, "test", slices=slices)


def stale(events: Sequence[object]) -> list[tuple[str, str, float]]:
    return sorted(
        (e.instance_id, e.state.value, e.at) for e in events if isinstance(e, AlertEvent) and e.stale
    )


def test_what_a_slice_leaves_comes_out_of_on_notify() -> None:
    whole, _ = logic(SteppingClock(WALL), None).on_batch([batch()])
    assert {i for i, _, _ in stale(whole)} == set(INSTANCES)

    wall = SteppingClock(WALL)
    sliced = logic(wall, WorkSlices(wall, work_s=0.5, gap_s=0.0))
    out, _ = sliced.on_batch([batch()])
    assert len({i for i, _, _ in stale(out)}) == 1
    notifies = 0
    for _ in range(2 * len(INSTANCES)):  # bounded: a notification that ages nothing repeats
        at = sliced.notify_at()
        if at is None:
            break
        assert at <= datetime.fromtimestamp(wall.now + 1, UTC)  # due now: no pause asked
        more, _ = sliced.on_notify()
        out += more
        notifies += 1
    assert notifies == len(INSTANCES) - 1
    assert stale(out) == stale(whole)


def test_what_a_slice_leaves_comes_out_at_the_end_of_a_bounded_input() -> None:
    whole, _ = logic(SteppingClock(WALL), None).on_batch([batch()])
    wall = SteppingClock(WALL)
    sliced = logic(wall, WorkSlices(wall, work_s=0.5, gap_s=0.0))
    out, _ = sliced.on_batch([batch()])
    rest, _ = sliced.on_eof()
    assert sliced.notify_at() is None
    assert stale(out + rest) == stale(whole)
