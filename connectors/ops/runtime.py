"""Python runtime settings for the streaming jobs: the garbage collector and thread states.

The collector: measured (issue 16, py-spy --native), CPython's cyclic collector took 16-29 % of
the alerting job's CPU. Every message allocates a few container objects (the source's message,
the routing tuple, the decoded record and metric), so the default gen0 threshold of 700 ran a
young collection every ~100 messages, and each one also walked what start-up left behind
(modules, rules, clients). The jobs' own state holds no reference cycles (series, buffers and
alert instances are trees freed by reference counting), so collecting far less often costs
memory only for the rare cyclic garbage, never correctness.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from typing import Final

GEN0_THRESHOLD: Final = 50_000
"""Allocations between young collections (CPython's default: 700)."""


def tune_gc(gen0: int | None = None) -> tuple[int, int, int]:
    """Freeze what start-up allocated (never scanned again) and collect young objects less
    often. Call once the flow is built. `GDS_GC_GEN0` overrides the threshold (0 leaves the
    collector as Python set it, to compare). Returns the thresholds in force."""
    if gen0 is None:
        gen0 = int(os.environ.get("GDS_GC_GEN0", GEN0_THRESHOLD))
    if gen0 <= 0:
        return gc.get_threshold()
    gc.collect()  # what start-up left as garbage goes now, not frozen for ever
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
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
