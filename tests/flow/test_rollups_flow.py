"""The rollups dataflow in-process: TestingSource in, TestingSinks out (no ClickHouse)."""

from __future__ import annotations

from typing import Any

from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.common import Poison, decode_batch
from flows.rollups import RollupOutputs, build_flow
from rules.rollup.windows import Rollup, RollupShard
from tests.flow.test_alerting_flow import DECODE, messages


def run_flow(items: list[Any], workers: int = 1) -> tuple[list[Rollup], list[list[Rollup]], list[Poison]]:
    """(the `metrics-aggregated` stream, the ClickHouse batches, the dead letters)."""
    aggregated: list[Rollup] = []
    batches: list[list[Rollup]] = []
    dlq: list[Poison] = []
    outputs = RollupOutputs(
        TestingSink(batches), TestingSink(dlq), lambda p: p, TestingSink(aggregated), lambda r: r
    )
    flow = build_flow(TestingSource(items), outputs, DECODE, shards=16, wall=None, flush_on_eof=True)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return aggregated, batches, dlq


def rows(rollups: list[Rollup]) -> list[tuple[Any, ...]]:
    return sorted((r.resolution, r.series.key, r.start, r.count, r.sum, r.min, r.max, r.p95) for r in rollups)


def test_messages_are_routed_per_batch_like_the_alerting_flow() -> None:
    # one Python call per batch: key_on would call the router once per message
    flow = build_flow(TestingSource([]), RollupOutputs(TestingSink([]), TestingSink([])), DECODE, wall=None)
    route = next(s for s in flow.substeps if s.step_name == "rollup-route")
    assert type(route).__name__ == "flat_map_batch"


def test_one_and_two_workers_give_the_rollups_of_one_shard_in_python() -> None:
    items = messages()
    metrics, poison = decode_batch(items, DECODE, float("inf"))
    shard = RollupShard()
    expected = rows(shard.ingest(metrics) + shard.flush())
    one, _, one_dlq = run_flow(items, workers=1)
    two, two_batches, two_dlq = run_flow(items, workers=2)
    assert expected and rows(one) == rows(two) == expected
    assert rows([r for b in two_batches for r in b]) == expected
    assert len(one_dlq) == len(two_dlq) == len(poison) == 4
