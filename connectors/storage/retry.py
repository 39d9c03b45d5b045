"""Blocking retries for the storage sinks (PostgreSQL, Redis, ClickHouse).

The backoff policy is the notification connector's `RetryPolicy` (exponential, full jitter,
bounded by attempts and/or a deadline), reused rather than twinned. What differs is the
failure mode: a storage batch must never be dropped, so a sink retries *inside*
`write_batch`, blocking the worker (which is the backpressure we want), and when the budget
is spent it raises `RetryExhaustedError`. That stops the flow; the pod restarts from its last
recovery snapshot and writes the batch again (the writes are idempotent). Permanent errors
(bad schema, bad data) are raised at once: retrying cannot fix them.

`next_delay` is the pure decision; `retry_call` is the loop, run by tenacity (its `wait` and
`stop` both ask `next_delay`), with sleep, clock and randomness injected so tests neither
sleep nor depend on chance.

With `store=` the loop also keeps the store's health for self-monitoring
(`connectors.ops.selfmetrics` feeds it back as `timescaledb_up`, `clickhouse_insert_error_rate`):
`gds_store_up{store}` is 0 from the first transient failure until an attempt succeeds, and
`gds_store_errors_total{store}` counts failed attempts, transient or not.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from connectors.errors import ConnectorError
from connectors.notify.policy import RetryPolicy
from connectors.ops.metrics import METRICS, Metrics

__all__ = ["RetryExhaustedError", "RetryPolicy", "next_delay", "retry_call"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Storage default: ride out a restart or failover of a few minutes, then stop the flow.
STORAGE_RETRY = RetryPolicy(base_s=0.1, cap_s=5.0, max_attempts=None, deadline_s=600.0)


# the process's collectors (`Metrics.store_up`, `Metrics.store_errors`), by their old names
STORE_UP = METRICS.store_up
STORE_ERRORS = METRICS.store_errors


class RetryExhaustedError(ConnectorError):
    """Transient failures went on past the policy's budget; the cause is chained."""


def next_delay(policy: RetryPolicy, attempts: int, elapsed: float, rand: float) -> float | None:
    """Seconds to wait before attempt `attempts + 1`, or None when the budget is spent.

    `attempts` counts the attempts made so far (>= 1), `elapsed` the seconds since the first
    one started, `rand` a uniform draw in [0, 1).
    """
    if not policy.may_attempt_again(attempts):
        return None
    delay = policy.backoff(attempts - 1, rand)
    if not policy.fits(elapsed, delay):
        return None
    return delay


class _Budget:
    """tenacity's `wait` and `stop` for one call: both read one `next_delay` decision per
    failed attempt (one random draw), on the injected clock rather than tenacity's own."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rand: Callable[[], float]) -> None:
        self.policy, self.clock, self.rand = policy, clock, rand
        self.start = clock()
        self._decided: tuple[int, float | None] = (0, None)

    def elapsed(self) -> float:
        return self.clock() - self.start

    def delay(self, state: tenacity.RetryCallState) -> float | None:
        attempts = state.attempt_number
        if self._decided[0] != attempts:
            self._decided = (attempts, next_delay(self.policy, attempts, self.elapsed(), self.rand()))
        return self._decided[1]

    def wait(self, state: tenacity.RetryCallState) -> float:
        return self.delay(state) or 0.0

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return self.delay(state) is None


def retry_call(
    fn: Callable[[], T],
    *,
    what: str,
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy = STORAGE_RETRY,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    store: str | None = None,
    metrics: Metrics | None = None,
) -> T:
    """`fn()` until it succeeds; transient failures are logged (with the attempt count) and
    retried after a backoff, permanent ones re-raised as they are.

    `on_retry(exc)` runs before each wait: sinks drop their broken connection there, so the
    next attempt reconnects. `what` names the operation in log lines and errors; `store`
    (e.g. "timescaledb") keeps `gds_store_up` / `gds_store_errors_total` for that store, in
    `metrics` (default: the process's `METRICS`).
    """
    m = metrics or METRICS
    up = m.store_up.labels(store) if store is not None else None
    errors = m.store_errors.labels(store) if store is not None else None
    budget = _Budget(policy, clock, rand)

    def attempt() -> T:
        try:
            result = fn()
        except Exception as exc:
            if errors is not None:
                errors.inc()
            if up is not None and is_transient(exc):
                up.set(0)
            raise
        if up is not None:
            up.set(1)
        return result

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = _failure(state)
        log.warning(
            "%s failed (attempt %d): %s: %s; retrying in %.2fs",
            what,
            state.attempt_number,
            type(exc).__name__,
            exc,
            state.upcoming_sleep,
        )
        if on_retry is not None:
            on_retry(exc)

    def exhausted(state: tenacity.RetryCallState) -> T:
        exc = _failure(state)
        raise RetryExhaustedError(
            f"{what}: still failing after {state.attempt_number} attempt(s) over {budget.elapsed():.1f}s: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    retrying = tenacity.Retrying(
        # only exceptions, and only transient ones: bad data or schema (the store itself
        # answered) is re-raised as it is, at once
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, Exception) and is_transient(e)),
        wait=budget.wait,
        stop=budget.stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=exhausted,
    )
    return retrying(attempt)


def _failure(state: tenacity.RetryCallState) -> BaseException:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert exc is not None, "tenacity retries only on exceptions here"
    return exc
