"""Python runtime settings for the streaming jobs: the garbage collector, the allocator and
thread states.

The collector: measured (issue 16, py-spy --native), CPython's cyclic collector took 16-29 % of
the alerting job's CPU. Every message allocates a few container objects (the source's message,
the routing tuple, the decoded record and metric), so the default gen0 threshold of 700 ran a
young collection every ~100 messages, and each one also walked what start-up left behind
(modules, rules, clients). The jobs' own state holds no reference cycles (series, buffers and
alert instances are trees freed by reference counting), so collecting far less often costs
memory only for the rare cyclic garbage, never correctness.

The allocator: a catch-up leaves glibc's malloc holding what it freed (see `tune_malloc`).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter

GEN0_THRESHOLD: Final = 50_000
"""Allocations between young collections (CPython's default: 700)."""

FREEZE_AFTER_S: Final = 0.05
"""A full collection that took at least this long freezes what survived it (`FreezeAfterSlowFull`)."""


class FreezeAfterSlowFull:
    """A `gc.callbacks` entry: after a full collection that took `threshold_s` or more, move what
    survived it to the permanent generation (`gc.freeze()`), so no later collection walks it again.

    Why: while a job's state grows (a million series: ~10 tracked objects each), CPython runs a
    full collection every time a quarter more objects survived, and each walks every object of
    the state: the engine alone created a million series in 6.8-10.3 s without the collector
    against 9.5-13.1 s with the jobs' thresholds. Frozen objects are still freed by reference
    counting (the state holds no cycles); what a freeze can keep for ever is a reference cycle
    alive at that moment that becomes garbage later, so it only happens while the state grows:
    once it stops growing, full collections walk only what came since the last freeze, stay
    short, and freeze nothing."""

    def __init__(
        self, threshold_s: float = FREEZE_AFTER_S, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.threshold_s = threshold_s
        self.clock = clock
        self.started = 0.0
        self.freezes = 0

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.started = self.clock()
        elif self.clock() - self.started >= self.threshold_s:
            gc.freeze()  # the collection is over ("stop"): nothing else is moving the lists
            self.freezes += 1


_freezer = FreezeAfterSlowFull()


def tune_gc(gen0: int | None = None) -> tuple[int, int, int]:
    """Freeze what start-up allocated (never scanned again), collect young objects less often,
    and freeze what survives a slow full collection (`FreezeAfterSlowFull`). Call once the flow
    is built. `GDS_GC_GEN0` overrides the threshold (0 leaves the
    collector as Python set it, to compare). Returns the thresholds in force."""
    if gen0 is None:
        gen0 = int(os.environ.get("GDS_GC_GEN0", GEN0_THRESHOLD))
    if gen0 <= 0:
        return gc.get_threshold()
    gc.collect()  # what start-up left as garbage goes now, not frozen for ever
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
    if _freezer not in gc.callbacks:
        gc.callbacks.append(_freezer)
    return gc.get_threshold()


_kept = threading.local()


def keep_thread_state() -> None:
    """Keep this thread's Python thread state for the life of the thread.

    Bytewax runs a cluster's workers (`-i/-a`, or `-w` > 1) on threads Python did not start,
    and enters Python from them with pyo3's `with_gil`: with no thread state left over from
    the previous entry, CPython creates one and deletes it at every entry (an mmap, a gettid
    and a munmap each; strace: ~7,000 a second in a 2-process job, most of its system time,
    and one more each time pickle calls a Python function for the worker exchange). One
    `PyGILState_Ensure` that is never released keeps the state, so later entries reuse it.
    Call from code that runs on the worker thread (a source partition or shard being built).
    """
    if getattr(_kept, "done", False) or threading.current_thread() is threading.main_thread():
        return
    ctypes.pythonapi.PyGILState_Ensure()  # held already: only the thread state's count grows
    _kept.done = True


TRIM_INTERVAL_S: Final = 2.0
"""Seconds between two `malloc_trim(0)` (`GDS_MALLOC_TRIM_S`; 0: never)."""


def glibc() -> Any | None:
    """The process's C library if it is glibc (malloc_trim is glibc's), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own: musl raises AttributeError
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_trimmer: threading.Thread | None = None


def tune_malloc(
    env: Mapping[str, str] = os.environ, libc: Any | None = None, registry: CollectorRegistry = REGISTRY
) -> float:
    """Give what glibc's malloc keeps free back to the system every `GDS_MALLOC_TRIM_S`
    seconds (`malloc_trim(0)` from a daemon thread; 0 turns it off). Returns the interval in
    force (0: off, or not glibc); one trimmer a process.

    Why: librdkafka's fetch threads (one consumer a partition, each with its own malloc arena)
    allocate per queued message; a catch-up fills their arenas (bench/catchup.py --diagnose:
    4 arenas of ~22 MiB, ~15 MiB of each free) and glibc returns a heap only from its top, so
    the RSS stayed ~70 MiB above the steady state once caught up (230-276 MiB against 155-169).
    Trimming every 1-2 s brought it to 192 MiB for 0.14-0.16 CPU s over a 5M-message catch-up
    (the trim runs without the GIL). It does not lower the peak *during* the catch-up: the
    churn there reuses what was trimmed. MALLOC_ARENA_MAX=1/2 and a fixed mmap threshold
    changed neither figure beyond the runs' noise."""
    interval = float(env.get("GDS_MALLOC_TRIM_S", TRIM_INTERVAL_S))
    libc = libc if libc is not None else glibc()
    if interval <= 0 or libc is None:
        return 0.0
    global _trimmer
    if _trimmer is None:  # its loop never ends: once started, it runs for the process
        spent = Counter(
            "gds_malloc_trim_seconds",
            "CPU seconds spent in the periodic malloc_trim(0) (GDS_MALLOC_TRIM_S)",
            registry=registry,
        )
        _trimmer = threading.Thread(
            target=_trim_every, args=(libc, interval, spent), name="malloc-trim", daemon=True
        )
        _trimmer.start()
    return interval


def _trim_every(libc: Any, interval_s: float, spent: Counter) -> None:
    while True:
        time.sleep(interval_s)
        started = time.thread_time()
        libc.malloc_trim(0)  # ctypes lets go of the GIL for the call
        spent.inc(time.thread_time() - started)
