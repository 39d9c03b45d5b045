"""The rollups dataflow in-process: TestingSource in, TestingSinks out (no ClickHouse)."""

from __future__ import annotations

from typing import Any

from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.common import Poison, decode_batch
from flows.rollups import RollupOutputs, build_flow
from rules.rollup.windows import Rollup, RollupShard
from tests.flow.test_alerting_flow import DECODE, messages


class Collected:
    def __init__(self) -> None:
        self.batches: list[list[Rollup]] = []
        self.aggregated: list[Rollup] = []
        self.dlq: list[Poison] = []

    def outputs(self) -> RollupOutputs:
        return RollupOutputs(
            TestingSink(self.batches),
            TestingSink(self.dlq),
            lambda p: p,
            TestingSink(self.aggregated),
            lambda r: r,
        )


def run_flow(items: list[Any], workers: int = 1) -> Collected:
    got = Collected()
    flow = build_flow(TestingSource(items), got.outputs(), DECODE, shards=16, wall=None, flush_on_eof=True)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


def rows(rollups: list[Rollup]) -> list[tuple[Any, ...]]:
    return sorted((r.resolution, r.series.key, r.start, r.count, r.sum, r.min, r.max, r.p95) for r in rollups)


def test_messages_are_routed_per_batch_like_the_alerting_flow() -> None:
    # one Python call per batch: key_on would call the router once per message
    flow = build_flow(TestingSource([]), Collected().outputs(), DECODE, wall=None)
    route = next(s for s in flow.substeps if s.step_name == "rollup-route")
    assert type(route).__name__ == "flat_map_batch"


def test_one_and_two_workers_give_the_rollups_of_one_shard_in_python() -> None:
    items = messages()
    metrics, poison = decode_batch(items, DECODE, float("inf"))
    shard = RollupShard()
    expected = rows(shard.ingest(metrics) + shard.flush())
    one = run_flow(items, workers=1)
    two = run_flow(items, workers=2)
    assert expected and rows(one.aggregated) == rows(two.aggregated) == expected
    assert rows([r for b in two.batches for r in b]) == expected
    assert len(one.dlq) == len(two.dlq) == len(poison) == 4
