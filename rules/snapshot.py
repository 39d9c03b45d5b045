"""Versioned recovery snapshots: the pickled state of an alert engine or a rollup shard.

Bytewax keeps what `snapshot()` returns and hands it to the restarted job, which may run
other code than the one that wrote it. The blob is `pickle((version, data))`; a version this
code does not read is refused with what to do, never misread and never a bare traceback from
inside pickle.
"""

from __future__ import annotations

import pickle
from collections.abc import Collection
from typing import Any, Final

from rules.model import RulesError

FRESH: Final = (
    "start the job with a fresh recovery directory (`python -m bytewax.recovery DIR N`), "
    "or resume it with the version of the code that wrote the snapshot"
)


class SnapshotError(RulesError, ValueError):
    """A recovery snapshot this code cannot read (a ValueError, as `RollupError` was)."""


def dump(version: int, data: object) -> bytes:
    return pickle.dumps((version, data), protocol=pickle.HIGHEST_PROTOCOL)


def load(blob: bytes, what: str, known: Collection[int], unversioned: type | None = None) -> tuple[int, Any]:
    """(version, data) of a `dump`ed blob; `unversioned`: the type of the format written before
    snapshots carried a version, read as version 0."""
    try:
        obj = pickle.loads(blob)
    except Exception as exc:  # unpickling raises whatever a missing class makes it raise
        raise SnapshotError(f"{what} snapshot cannot be read ({type(exc).__name__}: {exc}): {FRESH}") from exc
    if unversioned is not None and isinstance(obj, unversioned):
        return 0, obj
    if isinstance(obj, tuple) and len(obj) == 2 and type(obj[0]) is int:
        version, data = obj
        if version in known:
            return version, data
        raise SnapshotError(
            f"{what} snapshot version {version} is not one this code reads ({sorted(known)}): {FRESH}"
        )
    raise SnapshotError(f"{what} snapshot has no version this code knows ({type(obj).__name__}): {FRESH}")
