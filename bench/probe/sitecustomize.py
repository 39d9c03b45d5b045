"""Loaded by every Python process started with bench/probe on PYTHONPATH (bench/catchup.py's
job): on request it writes what lives in the process's heap, to find what grows.

GDS_BENCH_PROBE_DIR=DIR turns it on: a thread looks for DIR/req-NAME every 0.2 s and answers
with DIR/NAME.json: the GC-tracked objects by type (count), and with GDS_BENCH_TRACEMALLOC=1
(tracemalloc from start-up: slow) the traced bytes by allocating line, top 25, and the
difference to the previous answer. A thread, not a signal: Bytewax's main thread may sit in
Rust for long and a Python signal handler only runs between bytecodes of the main thread.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any


class _Mallinfo2(ctypes.Structure):
    _names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in _names.split()]


def _malloc() -> dict[str, float]:
    """glibc's view: bytes in use by malloc (every thread and library: Python's large objects
    and arenas, librdkafka, the Rust runtime) and free bytes it keeps."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    mib = 1048576
    return {
        "in_use_mib": round((m.uordblks + m.hblkhd) / mib, 1),
        "free_kept_mib": round(m.fordblks / mib, 1),
        "mmapped_mib": round(m.hblkhd / mib, 1),
        "heap_mib": round(m.arena / mib, 1),
    }


def _arenas() -> list[dict[str, float]]:
    """glibc's malloc_info per arena (heap 0 is the main thread's): size and free MiB; which
    arena grows says whose allocations (each librdkafka consumer's threads get their own)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    except (OSError, AttributeError):
        return []
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        xml = Path(f.name).read_text()
    out = []
    for heap in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        current = re.search(r'<system type="current" size="(\d+)"', heap)
        free = sum(int(n) for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap))
        cur = int(current.group(1)) if current else 0
        out.append({"current_mib": round(cur / 1048576, 1), "free_mib": round(free / 1048576, 1)})
    return out


def _answer(directory: Path, name: str, previous: list[Any]) -> None:
    started = time.monotonic()
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    out: dict[str, Any] = {"at": time.time(), "types": counts.most_common(25)}
    # pymalloc's small objects (<= 512 B) in use; their arenas are not in glibc's heap counts
    out["python_blocks"] = sys.getallocatedblocks()
    out["malloc"] = _malloc()
    out["arenas"] = _arenas()
    out["threads"] = len(os.listdir("/proc/self/task"))
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        out["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 1048576, 1)
        out["lines"] = [
            [str(s.traceback), round(s.size / 1048576, 2), s.count] for s in snap.statistics("lineno")[:25]
        ]
        if previous:
            out["growth"] = [
                [str(s.traceback), round(s.size_diff / 1048576, 2), s.count_diff]
                for s in snap.compare_to(previous[0], "lineno")[:25]
            ]
        previous[:] = [snap]
    out["took_s"] = round(time.monotonic() - started, 2)
    (directory / f"{name}.json").write_text(json.dumps(out))


def _serve(directory: Path) -> None:
    previous: list[Any] = []
    while True:
        for req in directory.glob("req-*"):
            name = req.name[4:]
            req.unlink()
            _answer(directory, name, previous)
        time.sleep(0.2)


_dir = os.environ.get("GDS_BENCH_PROBE_DIR")
if _dir:
    if os.environ.get("GDS_BENCH_TRACEMALLOC") == "1":
        tracemalloc.start(1)
    threading.Thread(target=_serve, args=(Path(_dir),), daemon=True, name="bench-probe").start()
