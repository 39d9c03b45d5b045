"""Host metrics from /proc and statvfs (Linux).

Parsing is pure (text in, numbers out) and rates are pure (two snapshots and the elapsed
time), so both are tested with canned /proc text; `OsCollector` only reads files and
keeps the previous snapshot. Counters that go backwards (reboot, wrap, device re-plugged)
yield no rate for that poll rather than a huge spike.

Inside a container /proc/stat and /proc/meminfo describe the host, not the cgroup: point
`proc:` at the host's /proc (mounted read-only) to say which one you mean.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

from connectors.collectors.base import BaseCollector, CollectorError, Target, register
from rules.metric import Metric

SECTOR_BYTES: Final = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
# node_exporter's default: RAM disks, loops, floppies and partitions (their disk is counted already).
DEFAULT_DEVICE_EXCLUDE: Final = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$"
DEFAULT_INTERFACE_EXCLUDE: Final = r"^lo$"
_OPTIONS: Final = {"mounts", "proc", "exclude_devices", "exclude_interfaces"}


class CpuTimes(NamedTuple):
    busy: int  # jiffies neither idle nor waiting for I/O
    total: int


class Statvfs(Protocol):
    """The three `os.statvfs_result` fields `disk_usage_percent` needs."""

    @property
    def f_blocks(self) -> int: ...

    @property
    def f_bfree(self) -> int: ...

    @property
    def f_bavail(self) -> int: ...


# --------------------------------------------------------------------------- parsing (pure)


def parse_cpu(stat: str) -> CpuTimes:
    """The aggregate `cpu` line of /proc/stat.

    guest/guest_nice are already inside user/nice, so they are not added again.
    """
    for line in stat.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:]]
            fields += [0] * (8 - len(fields))
            user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
            busy = user + nice + system + irq + softirq + steal
            return CpuTimes(busy, busy + idle + iowait)
    raise ValueError("no aggregate `cpu` line in /proc/stat")


def cpu_usage_percent(prev: CpuTimes, cur: CpuTimes) -> float | None:
    """Busy share of the jiffies elapsed between two reads; None without progress or on reset."""
    total = cur.total - prev.total
    busy = cur.busy - prev.busy
    if total <= 0 or busy < 0:
        return None
    return min(100.0, 100.0 * busy / total)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes (`MemTotal: 16318480 kB` -> 16709.. bytes)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def memory_usage_percent(meminfo: Mapping[str, int]) -> float | None:
    """Share of memory not available to new work: MemAvailable counts reclaimable cache
    (kernels >= 3.14), so page cache does not read as "full"."""
    total = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable")
    if total <= 0 or available is None:
        return None
    return max(0.0, min(100.0, 100.0 * (total - available) / total))


def parse_diskstats(text: str, exclude: str = DEFAULT_DEVICE_EXCLUDE) -> dict[str, tuple[int, int]]:
    """Device -> (bytes read, bytes written) since boot, partitions and virtual devices excluded."""
    skip = re.compile(exclude) if exclude else None
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or (skip is not None and skip.search(f[2])):
            continue
        out[f[2]] = (int(f[5]) * SECTOR_BYTES, int(f[9]) * SECTOR_BYTES)
    return out


def parse_net_dev(text: str, exclude: str = DEFAULT_INTERFACE_EXCLUDE) -> dict[str, tuple[int, int]]:
    """Interface -> (bytes received, bytes transmitted) from /proc/net/dev."""
    skip = re.compile(exclude) if exclude else None
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if not sep or len(f) < 9 or not f[0].isdigit() or (skip is not None and skip.search(name)):
            continue
        out[name] = (int(f[0]), int(f[8]))
    return out


def parse_loadavg(text: str) -> tuple[float, float, float]:
    f = text.split()
    return float(f[0]), float(f[1]), float(f[2])


def rates(
    prev: Mapping[str, tuple[int, ...]], cur: Mapping[str, tuple[int, ...]], elapsed_s: float
) -> dict[str, tuple[float, ...]]:
    """Per-second rates of counters present in both snapshots; a key with any counter going
    backwards (reset, wrap) is left out for this poll."""
    if elapsed_s <= 0:
        return {}
    out: dict[str, tuple[float, ...]] = {}
    for key, now_values in cur.items():
        before = prev.get(key)
        if before is None or len(before) != len(now_values):
            continue
        deltas = [n - b for n, b in zip(now_values, before, strict=True)]
        if min(deltas) < 0:
            continue
        out[key] = tuple(d / elapsed_s for d in deltas)
    return out


def disk_usage_percent(st: Statvfs) -> float | None:
    """Used share as `df` shows it: blocks reserved for root count as neither used nor free."""
    used = st.f_blocks - st.f_bfree
    denominator = used + st.f_bavail
    if denominator <= 0:
        return None
    return 100.0 * used / denominator


# --------------------------------------------------------------------------- collector (I/O)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float  # monotonic seconds
    cpu: CpuTimes
    disks: Mapping[str, tuple[int, int]]
    nets: Mapping[str, tuple[int, int]]


@register("os")
class OsCollector(BaseCollector):
    """CPU, memory, disk I/O, network, filesystem usage and load of the host it runs on.

    Rates need two reads, so the first poll after start emits levels only.
    """

    default_database_type = "os"

    def __init__(
        self,
        target: Target,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        statvfs: Callable[[str], Statvfs] = os.statvfs,
    ) -> None:
        super().__init__(target)
        opts = target.options
        self._proc = Path(opts.get("proc", "/proc"))
        self._mounts: tuple[str, ...] = tuple(opts.get("mounts", ("/",)))
        self._exclude_devices = str(opts.get("exclude_devices", DEFAULT_DEVICE_EXCLUDE))
        self._exclude_interfaces = str(opts.get("exclude_interfaces", DEFAULT_INTERFACE_EXCLUDE))
        self._monotonic = monotonic
        self._statvfs = statvfs
        self._prev: _Snapshot | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = [f"unknown option {k!r} for type os" for k in sorted(set(options) - _OPTIONS)]
        mounts = options.get("mounts", ["/"])
        if not isinstance(mounts, list) or not all(isinstance(m, str) and m.startswith("/") for m in mounts):
            problems.append("mounts: must be a list of absolute paths")
        if not isinstance(options.get("proc", "/proc"), str):
            problems.append("proc: must be a path")
        for key in ("exclude_devices", "exclude_interfaces"):
            value = options.get(key, "")
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                problems.append(f"{key}: not a regular expression: {exc}")
        return problems

    def _read(self, name: str) -> str:
        return (self._proc / name).read_text(encoding="ascii", errors="replace")

    def collect(self, now: float) -> list[Metric]:
        t = self.target
        try:
            at = self._monotonic()
            cur = _Snapshot(
                at,
                parse_cpu(self._read("stat")),
                parse_diskstats(self._read("diskstats"), self._exclude_devices),
                parse_net_dev(self._read("net/dev"), self._exclude_interfaces),
            )
            meminfo = parse_meminfo(self._read("meminfo"))
            load = parse_loadavg(self._read("loadavg"))
        except (OSError, ValueError, IndexError) as exc:
            raise CollectorError(f"target {t.name!r}: reading {self._proc}: {exc}") from exc

        out: list[Metric] = []
        prev, self._prev = self._prev, cur
        if prev is not None:
            cpu = cpu_usage_percent(prev.cpu, cur.cpu)
            if cpu is not None:
                out.append(t.sample(now, "cpu_usage_percent", cpu))
            elapsed = cur.at - prev.at
            for dev, (rd, wr) in sorted(rates(prev.disks, cur.disks, elapsed).items()):
                out.append(t.sample(now, "disk_read_bytes_per_second", rd, {"device": dev}))
                out.append(t.sample(now, "disk_write_bytes_per_second", wr, {"device": dev}))
            for nic, (rx, tx) in sorted(rates(prev.nets, cur.nets, elapsed).items()):
                out.append(t.sample(now, "network_receive_bytes_per_second", rx, {"interface": nic}))
                out.append(t.sample(now, "network_transmit_bytes_per_second", tx, {"interface": nic}))
        mem = memory_usage_percent(meminfo)
        if mem is not None:
            out.append(t.sample(now, "memory_usage_percent", mem))
            out.append(t.sample(now, "memory_available_bytes", meminfo["MemAvailable"]))
        for period, value in zip(("1m", "5m", "15m"), load, strict=True):
            out.append(t.sample(now, f"load_average_{period}", value))
        for mount in self._mounts:
            # One unreadable mount (unmounted, stale NFS handle) must not hide the host's
            # other metrics: it gets `filesystem_error = 1` instead of a usage sample.
            try:
                usage = disk_usage_percent(self._statvfs(mount))
            except OSError:
                usage = None
            if usage is not None:
                out.append(t.sample(now, "disk_usage_percent", usage, {"mount": mount}))
            out.append(t.sample(now, "filesystem_error", 0.0 if usage is not None else 1.0, {"mount": mount}))
        return out
