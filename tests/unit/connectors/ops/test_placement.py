"""Shard names Bytewax spreads evenly, checked against where a real cluster puts them, and the
check that keeps a recovery store's state on the names it was written with."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.config import ConfigError
from connectors.ops.placement import (
    balanced_names,
    check_store,
    legacy_names,
    store_names,
    stored_keys,
    worker_of,
)
from flows.alerting import Outputs, build_flow
from tests.flow.test_alerting_flow import DECODE, RULES, messages

STEP = "alerting.rules-evaluate"  # flows/alerting.py's from_settings checks this step


class _Where(StatefulBatchLogic[str, Any, None]):
    """Records the worker it runs on for its key (its values are the key)."""

    def __init__(self, got: dict[str, int]) -> None:
        self._got = got

    def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
        name = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        self._got[values[0]] = int(name.removeprefix("timely:work-"))
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        return None


def placed(keys: list[str], workers: int) -> dict[str, int]:
    """Where a real Bytewax cluster of `workers` keeps each key's state: the index in the name
    Timely gives the worker thread."""
    got: dict[str, int] = {}
    flow = Dataflow("placement")
    keyed = op.input("in", flow, TestingSource([(k, k) for k in keys]))
    op.inspect("done", op.stateful_batch("where", keyed, lambda _resume: _Where(got)))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return got


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_keys_are_where_the_predictor_says_bytewax_puts_them(workers: int) -> None:
    keys = legacy_names(64) + list(balanced_names(64))
    assert placed(keys, workers) == {k: worker_of(k, workers) for k in keys}


def test_balanced_names_are_even_over_2_to_8_workers_and_never_change() -> None:
    names = balanced_names(64)
    assert len(set(names)) == 64
    for workers in range(2, 9):
        loads = [sum(1 for n in names if worker_of(n, workers) == w) for w in range(workers)]
        assert max(loads) - min(loads) <= 1, (workers, loads)
    # the old names split 34 / 30 over two workers: what this fixes
    assert sorted(sum(1 for n in legacy_names(64) if worker_of(n, 2) == w) for w in (0, 1)) == [30, 34]
    # recovery keys: a change here orphans every store written with these
    assert names[:8] == ("s000", "s001", "s002.13", "s003.3", "s004.18", "s005.87", "s006.57", "s007.11")


def test_a_store_tells_its_names_only_by_the_names_that_differ() -> None:
    balanced = balanced_names(64)
    assert store_names(set(), 64) is None
    assert store_names({"s000", "s001"}, 64) is None  # the same shards under either list
    assert store_names({"s000", "s002"}, 64) == "legacy"
    assert store_names({"s000", balanced[2]}, 64) == "balanced"
    assert store_names({"s002", balanced[2]}, 64) == "both"


def _run_with_recovery(directory: Path, legacy: bool) -> None:
    got: list[Any] = []
    outputs = Outputs(TestingSink(got), None, TestingSink(got), lambda e: e, lambda e: e, lambda p: p)
    flow = build_flow(
        RULES,
        TestingSource(messages(bad=False)[:400]),
        outputs,
        DECODE,
        shards=64,
        wall=None,
        flush_on_eof=True,
        legacy_shards=legacy,
    )
    run_main(flow, recovery_config=RecoveryConfig(str(directory)))


@pytest.mark.parametrize("written", ["legacy", "balanced"])
def test_a_job_refuses_a_store_written_under_the_other_names(tmp_path: Path, written: str) -> None:
    init_db_dir(tmp_path, 2)
    _run_with_recovery(tmp_path, legacy=written == "legacy")
    keys = stored_keys(tmp_path, STEP)
    assert keys and keys <= set(legacy_names(64) if written == "legacy" else balanced_names(64))
    check_store(tmp_path, STEP, 64, written)  # the same names: resumes
    other = "balanced" if written == "legacy" else "legacy"
    with pytest.raises(ConfigError) as err:
        check_store(tmp_path, STEP, 64, other)
    assert f"ALERT_SHARD_NAMES={written} on every process" in str(err.value)


def test_an_empty_or_missing_store_decides_nothing(tmp_path: Path) -> None:
    check_store(tmp_path / "none", STEP, 64, "balanced")
    init_db_dir(tmp_path, 1)
    check_store(tmp_path, STEP, 64, "legacy")
    assert stored_keys(tmp_path, STEP) == set()
