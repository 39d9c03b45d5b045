"""Rule reload without a restart: watch RULES_PATH and hand a new rule set to every shard.

`RuleWatch` is a Bytewax input with one partition per worker. Each partition hashes the rule
files' *contents* every `interval_s` (a Kubernetes ConfigMap update swaps a symlink: mtimes and
inode numbers say nothing reliable) and at once after SIGHUP (`install_sighup`). A changed set is
loaded with the ordinary loader (rules/loader.py) once per process (`RuleLoader`, shared by the
workers), and checked against the settings the job started with: what shapes ticks
(evaluation_interval, allowed_lateness) cannot change live and is refused with "restart to
apply". A set with problems is refused with every problem logged at ERROR (file:line, as the
loader reports them) and the running set keeps running. Prometheus rule files in RULES_PATH are
part of the set (`rules.promql.rulefile.load_prometheus_rules`, their problems listed with the
seed files'); a job that started without any cannot start evaluating them live ("restart to
apply": their sub-flow is only wired when there are groups at start).

A loaded set leaves each partition as a `RulesUpdate` (version = content hash, plus its load
time); the flow broadcasts it to every shard, which applies each version once, newest load time
first (`flows.common.EngineLogic`). Every attempt, loaded or refused, is published once per
process as a `RuleSetEvent` to the control topic (the API's history) and counted in
`gds_rule_reloads_total{outcome}`.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from connectors.ops.epochs import EpochClock
from connectors.ops.heartbeat import EPOCH_TICK_S
from connectors.ops.metrics import METRICS, Metrics
from rules.control.events import RuleSetEvent, new_id, stamp
from rules.loader import (
    Problem,
    RuleFileError,
    expand_paths,
    load_rules,
    load_yaml,
    position_of,
    prometheus_files,
)
from rules.model import RuleSet
from rules.promql.rulefile import RuleGroup, load_prometheus_rules

log = logging.getLogger(__name__)

SIGHUP_CHECK_S: Final = 1.0
"""How soon a partition notices a SIGHUP (it cannot be woken by the signal itself)."""
LIVE_SETTINGS: Final = {
    "eval_interval_s": "evaluation_interval",
    "allowed_lateness_s": "allowed_lateness",
}
"""Settings a running job cannot change (ticks are aligned to the interval, and what was late
stays late): a new value is refused with "restart to apply"."""


@dataclass(frozen=True, slots=True)
class RulesUpdate:
    """A rule set loaded while the job runs, on its way to every shard."""

    version: str  # hash of the files' contents
    loaded_at: float  # wall time of the load: of two versions, the newest load wins
    ruleset: RuleSet
    files: tuple[str, ...] = ()
    groups: tuple[RuleGroup, ...] = ()  # the Prometheus rule groups of the set


# --------------------------------------------------------------------------- files


def content_version(paths: Iterable[str | Path]) -> tuple[str, tuple[str, ...]]:
    """(hash of every rule file's name and contents, the files): what identifies a rule set.

    An unreadable file hashes as such, so it is a version too (refused when loaded)."""
    h = hashlib.sha256()
    files = expand_paths(paths)
    for f in files:
        h.update(str(f).encode() + b"\x00")
        try:
            h.update(f.read_bytes())
        except OSError as exc:
            h.update(f"\x00unreadable: {exc}".encode())
        h.update(b"\x00\x00")
    return h.hexdigest()[:16], tuple(map(str, files))


# --------------------------------------------------------------------------- SIGHUP

_HUPS = [0]  # SIGHUPs received by this process (the handler only counts: partitions look)


def _on_hup(signum: int, frame: object) -> None:
    _HUPS[0] += 1


def install_sighup() -> bool:
    """SIGHUP asks every watcher of this process to look at the rule files now (instead of
    terminating the process, the default). Only the main thread can install it: False elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGHUP, _on_hup)
    return True


def sighups() -> int:
    return _HUPS[0]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class Attempt:
    version: str
    at: float
    files: tuple[str, ...]
    ruleset: RuleSet | None  # None: refused
    problems: tuple[str, ...] = ()
    groups: tuple[RuleGroup, ...] = ()


def settings_problems(base: RuleSet, new: RuleSet, files: Sequence[str]) -> list[str]:
    """Settings changed that a running job cannot apply, each located where it is written."""
    out: list[str] = []
    for attr, key in LIVE_SETTINGS.items():
        old, got = getattr(base, attr), getattr(new, attr)
        if old == got:
            continue
        where = _setting_location(files, key)
        out.append(f"{where}settings.{key}: changed from {old:g}s to {got:g}s: restart to apply")
    return out


def _setting_location(files: Sequence[str], key: str) -> str:
    """`file:line:col: ` of `settings.{key}` (or of a `settings:` block), '' when none says it."""
    fallback = ""
    for f in files:
        try:
            doc = load_yaml(Path(f).read_text(encoding="utf-8"))
        except Exception:  # the loader accepted it a moment ago; a race is not worth a crash
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
            continue
        pos = position_of(doc, f"settings.{key}")
        if key in doc["settings"] and pos:
            return f"{f}:{pos[0]}:{pos[1]}: "
        pos = position_of(doc, "settings")
        fallback = fallback or (f"{f}:{pos[0]}:{pos[1]}: " if pos else f"{f}: ")
    return fallback


class RuleLoader:
    """One per process: loads each content version once, whatever the number of workers that
    noticed it, and reports the attempt (log, metrics, control topic) once."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        base: RuleSet,
        *,
        job: str = "alerting",
        host: str | None = None,
        publish: Callable[[RuleSetEvent], None] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        prometheus: bool | None = None,
    ) -> None:
        self.paths = list(paths)
        self.base = base
        # the job evaluates Prometheus rule groups (None: do not check)
        self.prometheus = prometheus
        self.job = job
        self.host = host or socket.gethostname()
        self.metrics = metrics or METRICS
        self.clock = clock
        self._publish = publish
        self._lock = threading.Lock()
        self._last: Attempt | None = None
        self._pool: ThreadPoolExecutor | None = None

    def attempt(self, version: str, files: tuple[str, ...]) -> Attempt | None:
        """The load of `version`, or None when the files changed while being read (the next look
        tries again). The workers that notice the same change share one attempt; a version that
        comes back later (a revert) is loaded again, with a new load time, so it wins."""
        with self._lock:
            done = self._last
            if done is not None and done.version == version:
                return done
            ruleset, groups, problems = self._load(files)
            if content_version(self.paths)[0] != version:
                return None  # changed under us (a ConfigMap swap in progress)
            if ruleset is not None:
                problems = settings_problems(self.base, ruleset, files)
                if groups and self.prometheus is False:
                    where = ", ".join(map(str, prometheus_files(self.paths)))
                    problems.append(
                        f"{where}: Prometheus rule groups appeared, but this job started without any"
                        " (their evaluation is only wired at start): restart to apply"
                    )
                if problems:
                    ruleset, groups = None, ()
            result = Attempt(version, stamp(self.clock()), files, ruleset, tuple(problems), groups)
            self._last = result
            self._report(result)
            return result

    def _load(self, files: tuple[str, ...]) -> tuple[RuleSet | None, tuple[RuleGroup, ...], list[str]]:
        """The seed rules and the Prometheus groups, and every problem of both."""
        ruleset: RuleSet | None = None
        groups: tuple[RuleGroup, ...] = ()
        problems: list[str] = []
        try:
            ruleset = load_rules(self.paths)
        except RuleFileError as exc:
            problems += [str(p) for p in exc.problems]
        except Exception as exc:  # never let a rule file take the job down
            problems.append(str(Problem(", ".join(files), "", "", f"cannot load: {exc}")))
        try:
            prom = prometheus_files(self.paths)
            groups = tuple(load_prometheus_rules(prom)) if prom else ()
        except RuleFileError as exc:
            problems += [str(p) for p in exc.problems]
        except Exception as exc:
            problems.append(str(Problem(", ".join(files), "", "", f"cannot load Prometheus rules: {exc}")))
        if problems:
            return None, (), problems
        return ruleset, groups, problems

    def _report(self, a: Attempt) -> None:
        status = "loaded" if a.ruleset is not None else "refused"
        if a.ruleset is not None:
            log.info(
                "rules %s loaded from %s: %d rule(s), %d Prometheus rule group(s)",
                a.version,
                ", ".join(a.files),
                len(a.ruleset.rules),
                len(a.groups),
            )
        else:
            log.error(
                "rules %s refused (%d problem(s)); the running rules stay in force:",
                a.version,
                len(a.problems),
            )
            for p in a.problems:
                log.error("  %s", p)
        self.metrics.rule_reloads.labels(self.job, status).inc()
        if self._publish is None:
            return
        event = RuleSetEvent(
            job=self.job,
            host=self.host,
            version=a.version,
            status=status,
            at=a.at,
            files=a.files,
            problems=a.problems,
            rules=len(a.ruleset.rules) + sum(len(g.rules) for g in a.groups) if a.ruleset is not None else 0,
            id=new_id(),
        )
        if self._pool is None:  # publishing waits for the broker: never on a worker's loop
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ruleset-publish")
        self._pool.submit(self._send, event)

    def _send(self, event: RuleSetEvent) -> None:
        assert self._publish is not None
        try:
            self._publish(event)
        except Exception as exc:  # the history misses one entry; the reload itself happened
            log.warning("could not publish rule-set event %s (%s): %s", event.version, event.status, exc)


class _WatchPartition(StatelessSourcePartition[RulesUpdate]):
    def __init__(self, loader: RuleLoader, version: str, interval_s: float) -> None:
        self._loader = loader
        self._version = version  # what this worker's shards run (as far as this partition knows)
        self._interval = interval_s
        self._hups = sighups()
        now = time.monotonic()
        self._next_look = now + interval_s if interval_s > 0 else float("inf")
        step = min(interval_s, SIGHUP_CHECK_S) if interval_s > 0 else SIGHUP_CHECK_S
        # woken every EPOCH_TICK_S and at its epoch's end although it looks far less often: an
        # input that sleeps holds every other input at each epoch boundary
        # (connectors/ops/epochs.py)
        self._step = min(step, EPOCH_TICK_S)
        self._epoch = EpochClock()
        self._awake = time.time() + self._step

    def next_batch(self) -> list[RulesUpdate]:
        wall = time.time()
        self._epoch.seen(wall)
        self._awake = wall + self._step
        hups = sighups()
        now = time.monotonic()
        if hups == self._hups and now < self._next_look:
            return []
        if hups != self._hups:
            log.info("SIGHUP: looking at the rule files now")
        self._hups = hups
        if self._interval > 0:
            self._next_look = now + self._interval
        version, files = content_version(self._loader.paths)
        if version == self._version:
            return []
        result = self._loader.attempt(version, files)
        if result is None:
            return []
        self._version = version
        if result.ruleset is None:
            return []
        return [RulesUpdate(version, result.at, result.ruleset, files, result.groups)]

    def next_awake(self) -> datetime | None:
        self._epoch.seen()  # the first ask comes right after Bytewax started the first epoch
        return self._epoch.wake_dt(self._awake)


class RuleWatch(DynamicSource[RulesUpdate]):
    """Per worker: `RulesUpdate`s when RULES_PATH changes (see the module docstring).

    `version` is the content hash of the set the job started with (`content_version`), so the
    start-up set is not loaded a second time.
    """

    def __init__(self, loader: RuleLoader, version: str, interval_s: float) -> None:
        self.loader = loader
        self.version = version
        self.interval_s = interval_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WatchPartition:
        return _WatchPartition(self.loader, self.version, self.interval_s)
