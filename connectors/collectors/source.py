"""The polling input of the collector flow: one Bytewax partition per target.

Why not `SimplePollingSource`: it has a single partition ("singleton"), so one instance
polls on one worker; one instance per target would need one input step per target and
would still put every target on the same worker (same partition key). A
`FixedPartitionedSource` whose partitions are the target names lets Bytewax spread the
targets over all workers and processes (each partition lives on exactly one worker), with
a per-target interval.

`next_batch` must never block (it shares the worker with every other step), so each
partition runs its collector on its own event loop thread: a poll is submitted when due,
and its result is emitted by a later `next_batch` once done. A slow or hung target thus
delays nobody else, and its poll is cut at the target's `timeout`. A failed poll is an item
too (`Poll.error`): the flow turns it into `up = 0` and keeps polling.

The schedule runs on the real clock (Bytewax wakes partitions by it); the injected `clock`
only stamps the samples, so a test can make each poll "one minute later".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.collectors.base import Collector, Target, create_collector, error_class
from connectors.collectors.redact import redact_text
from connectors.ops.epochs import EpochClock
from rules.collect.policy import Poll
from rules.metric import Metric

log = logging.getLogger(__name__)

Clock = Callable[[], float]
CollectorFactory = Callable[[Target], Collector]
DETAIL_MAX: Final = 300
_CHECK_EVERY: Final = timedelta(milliseconds=20)  # how often a worker looks at an in-flight poll


class _LoopThread:
    """An asyncio loop on a daemon thread; asyncpg connections stay bound to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def run_collect(collector: Collector, now: float, timeout_s: float) -> list[Metric]:
    """One poll, cut at `timeout_s`; sync collectors run in a thread (a hung statvfs on a
    dead NFS mount then costs a thread, not the flow)."""
    if inspect.iscoroutinefunction(collector.collect):
        result: Any = collector.collect(now)
    else:
        result = asyncio.to_thread(collector.collect, now)
    metrics = await asyncio.wait_for(result, timeout_s)
    if inspect.isawaitable(metrics):  # a plain function that returned a coroutine
        metrics = await asyncio.wait_for(metrics, timeout_s)
    return list(metrics)


async def _close(collector: Collector) -> None:
    result = collector.close()
    if inspect.isawaitable(result):
        await result


def failed_poll(target: Target, at: float, exc: BaseException) -> Poll:
    if isinstance(exc, TimeoutError) and not str(exc):
        detail = f"no answer within {target.timeout_s:g}s"
    else:
        detail = redact_text(str(exc) or type(exc).__name__).removeprefix(f"target {target.name!r}: ")
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 3] + "..."
    return Poll(
        target.name,
        target.instance_id,
        target.database_type,
        target.environment,
        at,
        (),
        target.tags,
        error_class(exc),
        detail,
    )


class _TargetPartition(StatefulSourcePartition[Poll, None]):
    def __init__(self, target: Target, collector: Collector, clock: Clock, polls: int | None) -> None:
        self._target = target
        self._collector = collector
        self._clock = clock
        self._polls_left = polls
        self._interval = timedelta(seconds=target.interval_s)
        self._next = datetime.now(UTC)
        self._pending: concurrent.futures.Future[list[Metric]] | None = None
        self._pending_at = 0.0
        self._loop = _LoopThread(f"collect-{target.name}")
        # it sleeps until its next poll, and at its epoch's end (connectors/ops/epochs.py)
        self._epoch = EpochClock()
        self._epoch.seen()  # built in the activation that starts its first epoch

    def next_batch(self) -> list[Poll]:
        if self._pending is None:
            if self._polls_left == 0:
                raise StopIteration
            now = datetime.now(UTC)
            if now < self._next:
                return []
            self._pending_at = self._clock()
            self._pending = self._loop.submit(
                run_collect(self._collector, self._pending_at, self._target.timeout_s)
            )
            # fixed schedule; a poll that overran skips ticks instead of bunching up
            while self._next <= now:
                self._next += self._interval
            return []
        if not self._pending.done():
            return []
        future, self._pending = self._pending, None
        if self._polls_left is not None:
            self._polls_left -= 1
        t = self._target
        try:
            metrics = future.result()
        except Exception as exc:
            return [failed_poll(t, self._pending_at, exc)]
        return [
            Poll(
                t.name,
                t.instance_id,
                t.database_type,
                t.environment,
                self._pending_at,
                tuple(metrics),
                t.tags,
            )
        ]

    def next_awake(self) -> datetime | None:
        if self._pending is not None:
            return datetime.now(UTC) + _CHECK_EVERY
        if self._polls_left == 0:
            return None
        return self._epoch.wake_dt(self._next.timestamp())

    def snapshot(self) -> None:
        self._epoch.ended()  # Bytewax ends this partition's epoch now
        # Nothing to resume: a restarted collector polls now and re-reads its counters.
        return None

    def close(self) -> None:
        try:
            self._loop.submit(_close(self._collector)).result(timeout=self._target.timeout_s + 1)
        except Exception as exc:
            log.warning("closing target %r: %s", self._target.name, redact_text(str(exc)))
        finally:
            self._loop.stop()


class CollectSource(FixedPartitionedSource[Poll, None]):
    """Polls each target at its interval; items are `Poll`s (successful or failed).

    `polls` bounds the polls per target (tests, one-shot runs); None polls forever.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        clock: Clock,
        *,
        make_collector: CollectorFactory = create_collector,
        polls: int | None = None,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique (they are the partition keys)")
        self._targets = {t.name: t for t in targets}
        self._clock = clock
        self._make = make_collector
        self._polls = polls

    def list_parts(self) -> list[str]:
        return list(self._targets)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TargetPartition:
        target = self._targets[for_part]
        return _TargetPartition(target, self._make(target), self._clock, self._polls)
