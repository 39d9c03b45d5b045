"""/proc parsing and rates with canned text; OsCollector against a fake /proc directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from connectors.collectors.base import CollectorError, Target
from connectors.collectors.os import (
    CpuTimes,
    OsCollector,
    cpu_usage_percent,
    disk_usage_percent,
    memory_usage_percent,
    parse_cpu,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    rates,
)

STAT_1 = """cpu  1000 50 300 8000 200 10 40 0 120 0
cpu0 500 25 150 4000 100 5 20 0 60 0
intr 123456 0 0
ctxt 99999
"""
# +100 user, +20 system, +10 softirq, +350 idle, +20 iowait -> busy 130 of 500
STAT_2 = """cpu  1100 50 320 8350 220 10 50 0 130 0
cpu0 550 25 160 4175 110 5 25 0 65 0
"""
MEMINFO = """MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:    4000000 kB
Buffers:          100000 kB
HugePages_Total:       0
"""
DISKSTATS_1 = """   7       0 loop0 100 0 800 10 0 0 0 0 0 10 10 0 0 0 0
 253       0 vda 5000 10 200000 3000 8000 20 400000 9000 0 10000 12000 0 0 0 0
 253       1 vda1 4900 10 199000 2900 7900 20 399000 8900 0 9900 11800 0 0 0 0
 259       0 nvme0n1 100 0 1000 10 50 0 2000 20 0 30 30
 259       1 nvme0n1p1 100 0 1000 10 50 0 2000 20 0 30 30
"""
# vda: +2000 sectors read, +4000 written over 2 s -> 512000 B/s read, 1024000 B/s written
DISKSTATS_2 = """ 253       0 vda 5100 10 202000 3000 8100 20 404000 9000 0 10000 12000 0 0 0 0
 259       0 nvme0n1 100 0 1000 10 50 0 2000 20 0 30 30
"""
HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast"
    "|bytes    packets errs drop fifo colls carrier compressed\n"
)
NET_DEV_1 = (
    HEADER
    + """    lo: 5000 50 0 0 0 0 0 0 5000 50 0 0 0 0 0 0
  eth0: 1000000 900 0 0 0 0 0 0 2000000 800 0 0 0 0 0 0
"""
)
NET_DEV_2 = (
    HEADER
    + """    lo: 9000 90 0 0 0 0 0 0 9000 90 0 0 0 0 0 0
  eth0:1002000 910 0 0 0 0 0 0 2004000 810 0 0 0 0 0 0
"""
)
LOADAVG = "0.52 0.58 0.59 2/1234 56789\n"


def test_cpu_parse_excludes_guest_and_counts_iowait_as_not_busy() -> None:
    assert parse_cpu(STAT_1) == CpuTimes(busy=1000 + 50 + 300 + 10 + 40, total=1400 + 8000 + 200)
    assert cpu_usage_percent(parse_cpu(STAT_1), parse_cpu(STAT_2)) == pytest.approx(100 * 130 / 500)


def test_cpu_without_progress_or_after_reset_gives_nothing() -> None:
    a = parse_cpu(STAT_1)
    assert cpu_usage_percent(a, a) is None
    assert cpu_usage_percent(parse_cpu(STAT_2), a) is None
    with pytest.raises(ValueError, match="cpu"):
        parse_cpu("intr 1 2 3\n")


def test_short_cpu_line_of_old_kernels_parses() -> None:
    assert parse_cpu("cpu 10 0 10 80\n") == CpuTimes(20, 100)


def test_memory_uses_mem_available() -> None:
    info = parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 16000000 * 1024 and info["HugePages_Total"] == 0
    assert memory_usage_percent(info) == pytest.approx(75.0)
    assert memory_usage_percent({"MemTotal": 100}) is None  # kernel < 3.14: no MemAvailable


def test_diskstats_skip_partitions_and_virtual_devices() -> None:
    disks = parse_diskstats(DISKSTATS_1)
    assert set(disks) == {"vda", "nvme0n1"}
    assert disks["vda"] == (200000 * 512, 400000 * 512)
    got = rates(disks, parse_diskstats(DISKSTATS_2), 2.0)
    assert got["vda"] == (512000.0, 1024000.0)
    assert got["nvme0n1"] == (0.0, 0.0)
    assert set(parse_diskstats(DISKSTATS_1, exclude="")) >= {"loop0", "vda1"}


def test_net_dev_skips_loopback_and_handles_glued_counters() -> None:
    nets = parse_net_dev(NET_DEV_1)
    assert nets == {"eth0": (1000000, 2000000)}
    assert rates(nets, parse_net_dev(NET_DEV_2), 4.0) == {"eth0": (500.0, 1000.0)}


def test_rates_leave_out_reset_counters_new_keys_and_zero_elapsed() -> None:
    prev = {"a": (100, 100), "b": (100, 100)}
    cur = {"a": (50, 200), "b": (200, 300), "c": (1, 1)}
    assert rates(prev, cur, 10.0) == {"b": (10.0, 20.0)}
    assert rates(prev, cur, 0.0) == {}


def test_loadavg_and_disk_usage_like_df() -> None:
    assert parse_loadavg(LOADAVG) == (0.52, 0.58, 0.59)
    st = SimpleNamespace(f_blocks=1000, f_bfree=300, f_bavail=250)  # 50 blocks reserved for root
    assert disk_usage_percent(st) == pytest.approx(100 * 700 / 950)
    assert disk_usage_percent(SimpleNamespace(f_blocks=0, f_bfree=0, f_bavail=0)) is None


def fake_proc(root: Path, stat: str, disks: str, net: str) -> None:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(stat)
    (root / "meminfo").write_text(MEMINFO)
    (root / "diskstats").write_text(disks)
    (root / "net" / "dev").write_text(net)
    (root / "loadavg").write_text(LOADAVG)


def target(proc: Path, mounts: list[str]) -> Target:
    return Target(
        "host",
        "os",
        "db-01",
        "postgresql",
        "production",
        15.0,
        5.0,
        {"environment": "production"},
        {"proc": str(proc), "mounts": mounts},
    )


def test_collector_first_poll_levels_only_second_adds_rates(tmp_path: Path) -> None:
    fake_proc(tmp_path, STAT_1, DISKSTATS_1, NET_DEV_1)
    ticks = iter([100.0, 102.0])

    def statvfs(path: str) -> SimpleNamespace:
        if path == "/gone":
            raise FileNotFoundError(path)
        return SimpleNamespace(f_blocks=1000, f_bfree=100, f_bavail=100)

    c = OsCollector(target(tmp_path, ["/", "/gone"]), monotonic=lambda: next(ticks), statvfs=statvfs)
    first = c.collect(1000.0)
    names = {m.metric_name for m in first}
    assert "cpu_usage_percent" not in names and "disk_read_bytes_per_second" not in names
    assert {"memory_usage_percent", "load_average_1m", "disk_usage_percent"} <= names
    by = {(m.metric_name, m.tags.get("mount")): m.value for m in first}
    assert by[("disk_usage_percent", "/")] == pytest.approx(90.0)
    assert by[("filesystem_error", "/")] == 0.0 and by[("filesystem_error", "/gone")] == 1.0
    assert ("disk_usage_percent", "/gone") not in by

    fake_proc(tmp_path, STAT_2, DISKSTATS_2, NET_DEV_2)
    second = c.collect(1015.0)
    got = {(m.metric_name, m.tags.get("device") or m.tags.get("interface")): m.value for m in second}
    assert got[("cpu_usage_percent", None)] == pytest.approx(26.0)
    assert got[("disk_write_bytes_per_second", "vda")] == pytest.approx(1024000.0)
    assert got[("network_receive_bytes_per_second", "eth0")] == pytest.approx(1000.0)
    m = second[0]
    assert (m.ts, m.instance_id, m.database_type, m.tags["environment"]) == (
        1015.0,
        "db-01",
        "postgresql",
        "production",
    )


def test_collector_without_proc_raises_collector_error(tmp_path: Path) -> None:
    c = OsCollector(target(tmp_path / "nothing", ["/"]))
    with pytest.raises(CollectorError) as err:
        c.collect(0.0)
    assert isinstance(err.value.__cause__, FileNotFoundError)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_collector_reads_this_machine() -> None:
    c = OsCollector(target(Path("/proc"), ["/"]))
    c.collect(1.0)
    time.sleep(0.1)  # jiffies advance every 10 ms; without progress there is no cpu sample
    names = {m.metric_name for m in c.collect(2.0)}
    assert {"cpu_usage_percent", "memory_usage_percent", "disk_usage_percent", "load_average_1m"} <= names
