"""The jobs' collector and allocator settings (connectors/ops/runtime.py)."""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connectors.ops import runtime
from connectors.ops.runtime import GEN0_THRESHOLD, tune_gc


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runtime, "_trimmer", None)  # each test starts its own, if any
    monkeypatch.setenv("GDS_MALLOC_TRIM_S", "0")  # tune_gc's tests: no trimmer on the registry
    before = gc.get_threshold()
    callbacks = list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
    gc.callbacks[:] = callbacks


def test_freezes_start_up_and_raises_gen0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDS_GC_GEN0", raising=False)
    kept = [object() for _ in range(10)]  # still referenced: frozen, not collected
    assert tune_gc() == (GEN0_THRESHOLD, *gc.get_threshold()[1:])
    assert gc.get_freeze_count() > len(kept)


def test_environment_override_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDS_GC_GEN0", "1234")
    assert tune_gc()[0] == 1234
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("GDS_GC_GEN0", "0")
    assert tune_gc() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_a_slow_full_collection_freezes_what_survived_it() -> None:
    now = [0.0]
    freezer = runtime.FreezeAfterSlowFull(0.05, clock=lambda: now[0])
    kept = [[i] for i in range(100)]  # tracked and referenced: survives any collection
    gc.unfreeze()

    def collection(generation: int, took_s: float) -> None:
        freezer("start", {"generation": generation})
        now[0] += took_s
        freezer("stop", {"generation": generation, "collected": 0, "uncollectable": 0})

    collection(1, 1.0)  # a young collection, however long: the state is not what it walked
    collection(2, 0.01)  # a short full one: little was walked, nothing is frozen
    assert gc.get_freeze_count() == 0 and freezer.freezes == 0
    collection(2, 0.2)
    assert freezer.freezes == 1
    assert gc.get_freeze_count() > len(kept)  # the survivors: no later collection walks them


def test_tune_gc_installs_the_freezer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDS_GC_GEN0", raising=False)
    tune_gc()
    tune_gc()
    assert gc.callbacks.count(runtime._freezer) == 1


class FakeLibc:
    """Counts the trims tune_malloc's thread asks of glibc."""

    def __init__(self) -> None:
        self.trims = threading.Semaphore(0)

    def malloc_trim(self, pad: int) -> int:
        assert pad == 0  # trim everything that can go
        self.trims.release()
        return 1


def test_trims_periodically_by_default() -> None:
    libc = FakeLibc()
    registry = CollectorRegistry()
    assert runtime.tune_malloc({}, libc, registry) == runtime.TRIM_INTERVAL_S > 0
    for _ in range(2):  # again and again, not once
        assert libc.trims.acquire(timeout=10 * runtime.TRIM_INTERVAL_S)
    assert registry.get_sample_value("gds_malloc_trim_seconds_total") is not None
    assert runtime.tune_malloc({}, libc, registry) == runtime.TRIM_INTERVAL_S  # one thread a process


def test_environment_interval_and_off() -> None:
    libc = FakeLibc()
    assert runtime.tune_malloc({"GDS_MALLOC_TRIM_S": "0"}, libc, CollectorRegistry()) == 0
    assert not libc.trims.acquire(timeout=0.3)
    assert runtime.tune_malloc({"GDS_MALLOC_TRIM_S": "0.05"}, libc, CollectorRegistry()) == 0.05
    assert libc.trims.acquire(timeout=5)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(runtime.glibc() is None, reason="malloc_trim is glibc's")
def test_memory_freed_inside_the_heap_goes_back_to_the_system() -> None:
    """What a catch-up leaves: most of 200 MiB of small blocks freed but not the last one, so
    glibc cannot shrink its heap from the top and keeps the rest resident until a trim."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    registry = CollectorRegistry()
    assert runtime.tune_malloc({"GDS_MALLOC_TRIM_S": "0.2"}, registry=registry) == 0.2
    block = 16384  # below glibc's mmap threshold: from the heap
    before = _rss_mib()
    blocks = [libc.malloc(block) for _ in range(200 * 1024 * 1024 // block)]
    try:
        for p in blocks:
            ctypes.memset(p, 1, block)
        assert _rss_mib() > before + 150
        for p in blocks[:-1]:
            libc.free(p)
        deadline = time.monotonic() + 10

        def spent() -> float:
            return registry.get_sample_value("gds_malloc_trim_seconds_total") or 0.0

        # the RSS falls while malloc_trim runs, and its CPU is counted once it returns: wait for both
        while _rss_mib() > before + 50 or not spent() > 0:
            assert time.monotonic() < deadline, (
                f"RSS {_rss_mib():.0f} MiB ({before:.0f} before), trim CPU counted {spent()} s"
            )
            time.sleep(0.1)
    finally:
        libc.free(blocks[-1])
