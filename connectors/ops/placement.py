"""Which worker Bytewax 0.21 gives a state key, and shard names it spreads evenly.

A keyed step (`stateful_batch`) sends each key to worker `h % W` of `W` workers in all, `h` being
Rust's `DefaultHasher` (SipHash-1-3, keys 0 and 0) of the key string as `Hash` writes it (its
bytes, then 0xFF): Bytewax's `partition` operator with `BuildHasherDefault<DefaultHasher>`. The
alert state's 64 shards were named `s000`..`s063`, which that hash split 30 / 34 over two workers:
one worker had 53 % of the series and, in a bounded run of two processes, was still evaluating
while the other had finished (measured: 533,924 against 471,580 messages). `balanced_names`
picks, per shard, the first of `sNNN`, `sNNN.1`, `sNNN.2`, ... that keeps every prefix of the
list as even as it can be over 2 to 8 workers: for 64 shards 32 / 32, 22 / 21 / 21, 16 x 4 ...
8 x 8 (at most one shard apart), found in ~0.2 s once per process.

A name is also the shard's recovery key: changing it orphans the state stored under it, so the
names of a count never change. ALERT_SHARD_NAMES=legacy keeps the old ones for stores written
with them, and a job refuses to resume a store of the other kind (`check_store`). The placement
is Bytewax's, not a promise of its API: tests/unit/connectors/ops/test_placement.py checks it
against a real cluster. Only speed depends on it, never correctness.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection, Iterable
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import Final

from connectors.config import ConfigError

_MASK: Final = (1 << 64) - 1

BALANCED_FOR: Final = (2, 3, 4, 5, 6, 7, 8)
"""Worker counts each prefix of `balanced_names` is as even as possible for."""


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (one compression round, three finalisation rounds): Rust's `DefaultHasher`."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    tail = len(data) % 8
    for i in range(0, len(data) - tail, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[len(data) - tail :], "little")
    v3 ^= last
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker (0-based, of `workers` in the whole cluster) a keyed step keeps `key` on."""
    return siphash13(key.encode() + b"\xff") % workers


def legacy_names(shards: int) -> list[str]:
    """The names before `balanced_names`; what recovery stores written until then hold."""
    return [f"s{i:03d}" for i in range(shards)]


@cache
def balanced_names(shards: int) -> tuple[str, ...]:
    """`shards` names, index i the shard of hash bucket i, spread as evenly as possible over each
    of `BALANCED_FOR` workers at every prefix (module docstring)."""
    counts = {w: [0] * w for w in BALANCED_FOR}
    names = []
    for i in range(shards):
        caps = {w: math.ceil((i + 1) / w) for w in BALANCED_FOR}
        suffix = 0
        while True:
            name = f"s{i:03d}" if suffix == 0 else f"s{i:03d}.{suffix}"
            places = {w: worker_of(name, w) for w in BALANCED_FOR}
            if all(counts[w][p] < caps[w] for w, p in places.items()):
                break
            suffix += 1
        for w, p in places.items():
            counts[w][p] += 1
        names.append(name)
    return tuple(names)


def stored_keys(directory: Path, step_id: str) -> set[str]:
    """The state keys of `step_id` in a Bytewax recovery directory (every `part-*.sqlite3`)."""
    keys: set[str] = set()
    for part in directory.glob("part-*.sqlite3"):
        # closing(): a connection's own `with` ends a transaction but leaves it open
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            try:
                rows: Iterable[tuple[str]] = db.execute(
                    "SELECT DISTINCT state_key FROM snaps WHERE step_id = ?", (step_id,)
                )
                keys.update(k for (k,) in rows)
            except sqlite3.OperationalError:  # not initialised yet: no snaps table
                continue
    return keys


def store_names(keys: Collection[str], shards: int) -> str | None:
    """Which names recovery state under these keys was written with: "legacy", "balanced", None
    when no key tells (none, or only names both lists give the same shard: `sNNN` is bucket NNN
    in either), or "both" (never written by one job: a store shared by mistake)."""
    balanced, legacy = set(balanced_names(shards)), set(legacy_names(shards))
    kinds = {"legacy" if k in legacy else "balanced" for k in keys if (k in legacy) != (k in balanced)}
    return None if not kinds else kinds.pop() if len(kinds) == 1 else "both"


def check_store(directory: Path, step_id: str, shards: int, names: str) -> None:
    """Refuses (`ConfigError`, saying what to do) to resume state stored under the other kind of
    names than `names` (ALERT_SHARD_NAMES): it would stay on shards no message reaches, and its
    series would start over. Every process checks what its own recovery partitions hold."""
    found = store_names(stored_keys(directory, step_id), shards)
    if found is None or found == names:
        return
    if found == "both":
        problem = "holds state under both kinds of shard names: start with a fresh recovery directory"
    else:
        problem = (
            f"holds the alert state under the {found} shard names, and ALERT_SHARD_NAMES={names}:"
            f" set ALERT_SHARD_NAMES={found} on every process to resume it"
        )
        if found == "legacy":
            problem += (
                ", or start with a fresh recovery directory for balanced ones (the job then"
                " starts over from KAFKA_START)"
            )
    raise ConfigError([f"recovery store {str(directory)!r} {problem}"])
