"""Downsampling: event-time tumbling windows per series at 1m, cascaded to 5m and 1h.

The raw samples only ever touch the finest windows (1m): each sample updates a mutable
accumulator (count, sum, min, max and a `rules.rollup.sketch` sketch). When a 1m window closes it
becomes an immutable `Partial`, is emitted, and is merged into its 5m window; a closed 5m
window is merged into its 1h window the same way. Percentiles of the coarse windows therefore
come from merged sketches (exact merge, same 1% bound), never from re-reading raw data.

Time is event time only. Each instance has a watermark, its newest sample time; a window
`[start, end)` closes once `watermark - lateness >= end` (the cut). A sample older than the
cut arrives for a closed window: it is counted in `stats.late` and dropped, because
re-emitting a window with only the late samples would *replace* the complete row in the
ReplacingMergeTree tables. Acceptance is decided per sample in arrival order, so the output
does not depend on how the input was batched. In live mode an injected wall clock also moves
the watermark of an instance that went quiet (as the alerting engine does), so its last
windows still close.

Like `rules.engine`, the per-sample state is mutable on purpose (a frozen copy per sample
would cost more than the aggregation); every emitted value (`Partial`, `Rollup`) is frozen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rules import snapshot as snap
from rules.model import Metric, iso
from rules.rollup.sketch import DEFAULT_ALPHA, Sketch, SketchBuilder, mapping

QUANTILES: Final = (0.5, 0.95, 0.99)
# region and environment place an instance; they are tags but also columns of their own
PLACEMENT_TAGS: Final = ("region", "environment")
_SNAPSHOT_VERSION: Final = 1


class RollupError(ValueError):
    """A bad rollup configuration."""


@dataclass(frozen=True, slots=True)
class Resolution:
    name: str  # "1m": the table suffix and the `resolution` field of records
    width_s: int


DEFAULT_RESOLUTIONS: Final = (Resolution("1m", 60), Resolution("5m", 300), Resolution("1h", 3600))


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """Resolutions finest first, each a multiple of the previous one (so windows nest)."""

    resolutions: tuple[Resolution, ...] = DEFAULT_RESOLUTIONS
    lateness_s: float = 60.0
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if not self.resolutions:
            raise RollupError("at least one resolution is needed")
        prev = 0
        for r in self.resolutions:
            if r.width_s <= 0 or (prev and r.width_s % prev):
                raise RollupError(f"resolution {r.name} ({r.width_s}s) is not a multiple of {prev}s")
            prev = r.width_s
        if self.lateness_s < 0:
            raise RollupError(f"lateness must be >= 0, got {self.lateness_s}")
        mapping(self.alpha)  # validates alpha


# --------------------------------------------------------------------------- identity


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("=", "\\=")


def series_key(instance_id: str, metric_name: str, tags: Mapping[str, str]) -> str:
    """`instance|metric|k1=v1,k2=v2` (tags sorted, separators escaped): stable across
    processes and releases, shared by metrics_hot and the rollup tables."""
    body = ",".join(f"{_esc(k)}={_esc(v)}" for k, v in sorted(tags.items()))
    return f"{_esc(instance_id)}|{_esc(metric_name)}|{body}"


@dataclass(frozen=True, slots=True)
class SeriesId:
    key: str
    instance_id: str
    database_type: str
    metric_name: str
    tags: tuple[tuple[str, str], ...]  # sorted

    @staticmethod
    def of(m: Metric) -> SeriesId:
        tags = tuple(sorted(m.tags.items())) if m.tags else ()
        return SeriesId(
            series_key(m.instance_id, m.metric_name, m.tags),
            m.instance_id,
            m.database_type,
            m.metric_name,
            tags,
        )

    def tag(self, name: str) -> str:
        for k, v in self.tags:
            if k == name:
                return v
        return ""


# --------------------------------------------------------------------------- windows


def window_start(ts: float, width_s: float) -> float:
    """Start of the tumbling window holding `ts`, aligned to the epoch (exact for floats)."""
    return ts - ts % width_s


def cut_of(watermark: float, lateness_s: float, base_s: int) -> float:
    """Every base window ending at or before this time is closed."""
    if watermark == -math.inf:
        return -math.inf
    return math.floor((watermark - lateness_s) / base_s) * base_s


@dataclass(frozen=True, slots=True)
class Partial:
    """The aggregate of one closed window, mergeable into the next resolution."""

    count: int
    total: float
    min: float
    max: float
    sketch: Sketch

    @property
    def avg(self) -> float:
        return self.total / self.count

    def merge(self, other: Partial) -> Partial:
        return Partial(
            self.count + other.count,
            self.total + other.total,
            min(self.min, other.min),
            max(self.max, other.max),
            self.sketch.merge(other.sketch),
        )

    @staticmethod
    def of(values: Iterable[float], alpha: float = DEFAULT_ALPHA) -> Partial:
        acc = WindowAcc(alpha)
        for v in values:
            acc.add(v)
        return acc.freeze()


class WindowAcc(SketchBuilder):
    """The open 1m window of one series: the only object touched per raw sample."""

    __slots__ = ("count", "max", "min", "total")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        super().__init__(alpha)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, v: float) -> None:
        self.count += 1
        self.total += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        # the sketch part inlined: one Python call per sample instead of two
        if v > self._min_indexable:
            k = math.ceil(math.log(v) * self._mult)
            self.pos[k] = self.pos.get(k, 0) + 1
        elif v < -self._min_indexable:
            k = math.ceil(math.log(-v) * self._mult)
            self.neg[k] = self.neg.get(k, 0) + 1
        else:
            self.zero += 1

    def merge_partial(self, p: Partial) -> None:
        """Merge a closed finer window in: a coarse window is an accumulator of partials."""
        self.count += p.count
        self.total += p.total
        if p.min < self.min:
            self.min = p.min
        if p.max > self.max:
            self.max = p.max
        self.absorb(p.sketch)

    def freeze(self) -> Partial:
        """The window's final value; the accumulator is spent afterwards."""
        return Partial(self.count, self.total, self.min, self.max, self.build())

    def to_state(self) -> tuple[Any, ...]:
        return (self.count, self.total, self.min, self.max, self.zero, self.pos, self.neg)

    @staticmethod
    def from_state(state: tuple[Any, ...], alpha: float) -> WindowAcc:
        acc = WindowAcc(alpha)
        acc.count, acc.total, acc.min, acc.max, acc.zero, pos, neg = state
        acc.pos, acc.neg = dict(pos), dict(neg)
        return acc


@dataclass(frozen=True, slots=True)
class Rollup:
    """One closed window of one series: what the sinks write."""

    series: SeriesId
    resolution: str
    width_s: int
    start: int  # epoch seconds
    count: int
    sum: float
    min: float
    max: float
    avg: float
    p50: float
    p95: float
    p99: float

    @staticmethod
    def of(series: SeriesId, res: Resolution, start: float, p: Partial) -> Rollup:
        qs = p.sketch.quantiles(QUANTILES, p.min, p.max)
        assert qs is not None  # a closed window has at least one sample
        return Rollup(series, res.name, res.width_s, int(start), p.count, p.total, p.min, p.max, p.avg, *qs)

    def to_record(self) -> dict[str, object]:
        """The JSON of the `metrics-aggregated` topic."""
        s = self.series
        return {
            "series_key": s.key,
            "resolution": self.resolution,
            "window_start": iso(self.start),
            "window_end": iso(self.start + self.width_s),
            "instance_id": s.instance_id,
            "database_type": s.database_type,
            "metric_name": s.metric_name,
            "labels": dict(s.tags),
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "avg": self.avg,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
        }


# --------------------------------------------------------------------------- shard


class _Series:
    __slots__ = ("id", "levels", "open")

    def __init__(self, sid: SeriesId, n_levels: int) -> None:
        self.id = sid
        self.open: dict[float, WindowAcc] = {}  # finest resolution, by window start
        self.levels: list[dict[float, WindowAcc]] = [{} for _ in range(n_levels)]  # coarser ones

    def empty(self) -> bool:
        return not self.open and not any(self.levels)


class _Instance:
    __slots__ = ("alias", "closed", "cut", "max_ts", "series", "wall_at_max")

    def __init__(self) -> None:
        self.max_ts = -math.inf
        self.cut = -math.inf
        self.closed = -math.inf  # the cut of the last close pass: none needed until `cut` moves
        self.wall_at_max = 0.0
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        # (metric, tags in arrival order) -> series: skips sorting the tags of each sample
        self.alias: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}


@dataclass(slots=True)
class RollupStats:
    samples: int = 0
    late: int = 0  # dropped: their window had closed
    windows: dict[str, int] = field(default_factory=dict)  # emitted, by resolution


class RollupShard:
    """The rollup state of every instance whose key maps to one shard."""

    def __init__(self, config: RollupConfig | None = None, *, live: bool = False) -> None:
        self.config = config or RollupConfig()
        self.live = live
        self.base = self.config.resolutions[0]
        self.coarse = self.config.resolutions[1:]
        self.lateness = self.config.lateness_s
        self.instances: dict[str, _Instance] = {}
        self.stats = RollupStats(windows={r.name: 0 for r in self.config.resolutions})

    # -- ingest ---------------------------------------------------------------------
    def ingest(self, metrics: Iterable[Metric], wall: float = 0.0) -> list[Rollup]:
        """Add a batch of samples, then emit every window their watermarks closed."""
        instances = self.instances
        touched: dict[str, _Instance] = {}
        base = self.base.width_s
        lateness = self.lateness
        alpha = self.config.alpha
        floor = math.floor
        samples = late = 0
        for m in metrics:
            iid = m.instance_id
            inst = instances.get(iid)
            if inst is None:
                inst = instances[iid] = _Instance()
            ts = m.ts
            if ts > inst.max_ts:
                inst.max_ts = ts
                cut = floor((ts - lateness) / base) * base
                if cut > inst.cut:
                    inst.cut = cut
                touched[iid] = inst
            elif ts < inst.cut:
                late += 1
                continue
            samples += 1
            tags = m.tags
            akey = (m.metric_name, tuple(tags.items()) if tags else ())
            s = inst.alias.get(akey)
            if s is None:
                s = self._series(inst, m, akey)
            ws = ts - ts % base
            acc = s.open.get(ws)
            if acc is None:
                acc = s.open[ws] = WindowAcc(alpha)
            acc.add(m.value)
        self.stats.samples += samples
        self.stats.late += late
        out: list[Rollup] = []
        for inst in touched.values():
            inst.wall_at_max = wall
            if inst.cut > inst.closed:
                self._close(inst, inst.cut, out)
        return out

    def _series(self, inst: _Instance, m: Metric, akey: tuple[str, tuple[tuple[str, str], ...]]) -> _Series:
        sid = SeriesId.of(m)
        skey = (sid.metric_name, sid.tags)
        s = inst.series.get(skey)
        if s is None:
            s = inst.series[skey] = _Series(sid, len(self.coarse))
        inst.alias[akey] = s
        return s

    # -- closing --------------------------------------------------------------------
    def _close(self, inst: _Instance, cut: float, out: list[Rollup]) -> None:
        """Emit and cascade every window of `inst` that ends at or before `cut`."""
        base = self.base
        emitted = self.stats.windows
        inst.closed = cut
        dead = []
        for skey, s in inst.series.items():
            if s.open:
                ready = sorted(ws for ws in s.open if ws + base.width_s <= cut)
                for ws in ready:
                    p = s.open.pop(ws).freeze()
                    out.append(Rollup.of(s.id, base, ws, p))
                    emitted[base.name] += 1
                    self._cascade(s, 0, ws, p)
            for i, res in enumerate(self.coarse):
                level = s.levels[i]
                if not level:
                    continue
                ready = sorted(ws for ws in level if ws + res.width_s <= cut)
                for ws in ready:
                    p = level.pop(ws).freeze()
                    out.append(Rollup.of(s.id, res, ws, p))
                    emitted[res.name] += 1
                    self._cascade(s, i + 1, ws, p)
            if s.empty():
                dead.append(skey)
        if dead:  # forget idle series (memory bound); the alias map is rebuilt lazily
            for skey in dead:
                del inst.series[skey]
            inst.alias.clear()

    def _cascade(self, s: _Series, level: int, ws: float, p: Partial) -> None:
        if level < len(self.coarse):
            target = s.levels[level]
            start = window_start(ws, self.coarse[level].width_s)
            acc = target.get(start)
            if acc is None:
                acc = target[start] = WindowAcc(self.config.alpha)
            acc.merge_partial(p)

    def advance_idle(self, wall: float) -> list[Rollup]:
        """Live only: wall time since an instance's newest sample moves its watermark."""
        out: list[Rollup] = []
        base = self.base.width_s
        for inst in self.instances.values():
            wm = inst.max_ts + max(0.0, wall - inst.wall_at_max)
            cut = cut_of(wm, self.lateness, base)
            if cut > inst.cut:
                inst.cut = cut
                self._close(inst, cut, out)
        return out

    def next_wake(self) -> float | None:
        """Wall time at which `advance_idle` would close a window somewhere (live only)."""
        if not self.live:
            return None
        base = self.base.width_s
        wakes = [
            inst.wall_at_max + (inst.cut + base + self.lateness - inst.max_ts)
            for inst in self.instances.values()
            if inst.series
        ]
        return min(wakes) if wakes else None

    def flush(self) -> list[Rollup]:
        """Close everything (end of a finite replay)."""
        out: list[Rollup] = []
        for inst in self.instances.values():
            self._close(inst, math.inf, out)
        return out

    # -- state ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Plain tuples, pickled: small, and the runtime gets an immutable copy."""
        data = {
            iid: (
                inst.max_ts,
                inst.cut,
                [
                    (
                        s.id.instance_id,
                        s.id.database_type,
                        s.id.metric_name,
                        s.id.tags,
                        {ws: acc.to_state() for ws, acc in s.open.items()},
                        [{ws: acc.to_state() for ws, acc in level.items()} for level in s.levels],
                    )
                    for s in inst.series.values()
                ],
            )
            for iid, inst in self.instances.items()
        }
        return snap.dump(_SNAPSHOT_VERSION, data)

    def restore(self, blob: bytes, wall: float = 0.0) -> None:
        _, data = snap.load(blob, "rollup", (_SNAPSHOT_VERSION,))
        alpha = self.config.alpha
        for iid, (max_ts, cut, series) in data.items():
            inst = _Instance()
            inst.max_ts, inst.cut, inst.wall_at_max = max_ts, cut, wall
            for instance_id, dbt, name, tags, open_, levels in series:
                sid = SeriesId(series_key(instance_id, name, dict(tags)), instance_id, dbt, name, tags)
                s = _Series(sid, len(self.coarse))
                s.open = {ws: WindowAcc.from_state(st, alpha) for ws, st in open_.items()}
                for i, level in enumerate(levels[: len(self.coarse)]):
                    s.levels[i] = {ws: WindowAcc.from_state(st, alpha) for ws, st in level.items()}
                inst.series[(name, tags)] = s
            self.instances[iid] = inst
