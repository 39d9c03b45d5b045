"""The sender protocol, its outcome, and the guard every receiver kind shares.

`Sender.send(notification) -> Outcome` is the whole API the delivery flow uses. It blocks until
the notification is delivered, refused for good, or the retry budget is spent:

- `DELIVERED`: the receiver (or the fallback, `via_fallback`) took it.
- `RETRY_LATER`: transient trouble (5xx, 408, 429, network, SMTP 4xx, breaker open) that outlived
  the budget. NOT a dead letter: the caller keeps the notification as backlog and sends it again
  later (`retry_after_s`, when set, is the earliest time that makes sense: a Retry-After or the
  breaker's cooldown). Re-sending is safe: every body is deterministic and keyed (message_id,
  Idempotency-Key, dedup_key, fingerprint).
- `REJECTED`: the receiver refused the request itself (4xx other than 408/429, SMTP 5xx) or the
  body could not be built: retrying cannot help; the caller dead-letters it.

`GuardedSender` implements the policy once for HTTP and SMTP: retries with full-jitter backoff
(`connectors.notify.policy.RetryPolicy`, so `until_delivered` means "never give up"), Retry-After,
a circuit breaker, bounded in-flight requests (a semaphore shared by the threads that call `send`),
an optional token-bucket rate limit, and an optional `fallback` sender used while the breaker is
open (and when the budget ran out with the breaker open). A notification that needs several
requests (one PagerDuty event or one notification-service POST per alert) sends them in order and
stops at the first transient failure, so per-alert order holds when the caller re-sends.

Senders are synchronous on purpose: a Bytewax worker is one thread that calls blocking code, the
delivery flow keys notifications by group so one worker owns a group's order, and under one GIL
overlapping requests buys little (see DESIGN.md: client CPU, not network wait, is the cost). The
semaphore still bounds what several worker threads send to one receiver at once.
"""

from __future__ import annotations

import abc
import enum
import logging
import os
import random
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import certifi

from connectors.notify.policy import (
    BreakerState,
    CircuitBreaker,
    Clock,
    NotifyError,
    RetryPolicy,
    Verdict,
)
from rules.routing.types import GroupNotification

log = logging.getLogger(__name__)

P = TypeVar("P")


NO_LOOKUP: Final = "\x00"
"""A proxy cache's marker for a URL not looked up yet (None means: no proxy)."""


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, as httpx honoured it: HTTP_PROXY / HTTPS_PROXY,
    none for a host in NO_PROXY (urllib's reading). Callers cache it per URL: it reads the
    environment each time."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def tls_context() -> ssl.SSLContext:
    """The CAs an HTTPS receiver is checked against (those httpx trusted): SSL_CERT_FILE when
    set, else certifi's bundle."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class OutcomeKind(enum.Enum):
    DELIVERED = "delivered"
    RETRY_LATER = "retry_later"  # transient: keep as backlog, send again later
    REJECTED = "rejected"  # permanent: dead-letter


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one `send` ended."""

    kind: OutcomeKind
    receiver: str  # the sender that decided: the primary's name, or its fallback's
    attempts: int  # requests made (all parts, primary only)
    error: str = ""  # empty when delivered
    retry_after_s: float | None = None  # RETRY_LATER: wait at least this long, when known
    via_fallback: bool = False

    @property
    def delivered(self) -> bool:
        return self.kind is OutcomeKind.DELIVERED


class Sender(Protocol):
    """One receiver of the configuration. Thread-safe; `close` frees its connections."""

    name: str

    def send(self, n: GroupNotification) -> Outcome: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Try:
    """One request's verdict. `about_server` False: a client-side error that says nothing about
    the receiver's health (it must not trip or close the breaker)."""

    verdict: Verdict
    error: str = ""
    retry_after_s: float | None = None
    about_server: bool = True


@dataclass(frozen=True, slots=True)
class SenderOptions:
    """Per-receiver policy (the `gds_*` options of a receiver in the routing configuration)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failure_threshold: int = 5  # consecutive transient failures that open the breaker
    cooldown_s: float = 30.0  # how long it stays open before one probe
    max_in_flight: int = 4  # concurrent requests to this receiver, over all calling threads
    rate_per_s: float | None = None  # requests per second (token bucket); None: unlimited
    burst: int = 1  # requests the bucket allows at once

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise NotifyError(f"receiver max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise NotifyError(f"receiver rate_per_s must be > 0 (or unset), got {self.rate_per_s}")
        if self.burst < 1:
            raise NotifyError(f"receiver burst must be >= 1, got {self.burst}")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a sender is given rather than reads: clocks, sleep and randomness (tests inject them)."""

    clock: Clock = time.monotonic  # budgets, breaker, rate limit
    wall: Clock = time.time  # Unix time for bodies that need "now" (Alertmanager's endsAt)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random


class RateLimiter:
    """Token bucket: `rate_per_s` tokens a second, at most `burst` saved. Thread-safe."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; return how long to wait before using it (0 when one was saved)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class _PartResult:
    kind: OutcomeKind
    attempts: int
    error: str = ""
    retry_after_s: float | None = None


class GuardedSender(abc.ABC, Generic[P]):
    """Retry, breaker, in-flight bound, rate limit and fallback around `attempt(part)`.

    Subclasses say how a notification becomes parts (`parts`) and how one part is sent once
    (`attempt`, which must not raise for transport errors: it returns a `Try`).
    """

    def __init__(
        self,
        name: str,
        options: SenderOptions | None = None,
        *,
        fallback: Sender | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.name = name
        self.options = options or SenderOptions()
        self.fallback = fallback
        self.runtime = runtime or Runtime()
        self.breaker = CircuitBreaker(
            self.options.failure_threshold, self.options.cooldown_s, self.runtime.clock
        )
        self._lock = threading.Lock()  # the breaker is not thread-safe
        self._slots = threading.BoundedSemaphore(self.options.max_in_flight)
        self._limiter = (
            RateLimiter(self.options.rate_per_s, self.options.burst, self.runtime.clock)
            if self.options.rate_per_s is not None
            else None
        )
        # counters for tests and logs
        self.requests = 0
        self.retries = 0
        self.fallbacks = 0

    @abc.abstractmethod
    def parts(self, n: GroupNotification) -> Sequence[P]:
        """The requests of one notification, in sending order (raise if it cannot be built)."""

    @abc.abstractmethod
    def attempt(self, part: P) -> Try:
        """Send one part once."""

    def close(self) -> None:  # optional hook: most senders own nothing to close
        """Free connections (HTTP client, ...)."""

    @property
    def circuit_open(self) -> bool:
        """Open and still cooling down: the receiver counts as unavailable."""
        with self._lock:
            return self.breaker.state is BreakerState.OPEN and self.breaker.retry_in() > 0

    def send(self, n: GroupNotification) -> Outcome:
        if self.fallback is not None and self.circuit_open:
            return self._to_fallback(n, 0, "circuit open")
        try:
            parts = list(self.parts(n))
        except Exception as exc:  # a body we cannot build never will be: dead-letter it
            return Outcome(OutcomeKind.REJECTED, self.name, 0, f"payload: {_describe(exc)}")
        attempts = 0
        rejected: list[str] = []
        for part in parts:
            result = self._deliver(part)
            attempts += result.attempts
            if result.kind is OutcomeKind.REJECTED:
                rejected.append(result.error)
                continue
            if result.kind is OutcomeKind.RETRY_LATER:
                if self.fallback is not None and self.circuit_open:
                    return self._to_fallback(n, attempts, result.error)
                log.warning(
                    "notify: %s: message_id=%s kept for later after %d request(s): %s",
                    self.name, n.message_id, attempts, result.error,
                )  # fmt: skip
                return Outcome(
                    OutcomeKind.RETRY_LATER, self.name, attempts, result.error, result.retry_after_s
                )
        if rejected:
            error = "; ".join(rejected)
            log.warning("notify: %s: message_id=%s rejected: %s", self.name, n.message_id, error)
            return Outcome(OutcomeKind.REJECTED, self.name, attempts, error)
        return Outcome(OutcomeKind.DELIVERED, self.name, attempts)

    def _to_fallback(self, n: GroupNotification, attempts: int, why: str) -> Outcome:
        assert self.fallback is not None
        self.fallbacks += 1
        log.warning("notify: %s unavailable (%s), sending message_id=%s to fallback %s",
                    self.name, why, n.message_id, self.fallback.name)  # fmt: skip
        out = self.fallback.send(n)
        error = out.error and f"{self.name}: {why}; {out.receiver}: {out.error}"
        return Outcome(out.kind, out.receiver, attempts, error, out.retry_after_s, via_fallback=True)

    def _deliver(self, part: P) -> _PartResult:
        policy = self.options.retry
        rt = self.runtime
        started = rt.clock()
        attempts = 0
        while True:
            if self._limiter is not None:
                wait = self._limiter.reserve()
                if wait > 0:
                    if not policy.fits(rt.clock() - started, wait):
                        return _PartResult(OutcomeKind.RETRY_LATER, attempts, "rate limited", wait)
                    rt.sleep(wait)
            with self._lock:
                allowed = self.breaker.allow()
                cooldown = self.breaker.retry_in()
            if not allowed:
                # no request made, no attempt spent: wait the breaker out inside the budget
                delay = max(policy.backoff(0, rt.rand()), cooldown)
                if self.fallback is not None or not self._may_wait(policy, rt.clock() - started, delay):
                    return _PartResult(OutcomeKind.RETRY_LATER, attempts, "circuit open", cooldown or None)
                rt.sleep(delay)
                continue
            attempts += 1
            with self._slots:
                self.requests += 1
                result = self._safe_attempt(part)
            with self._lock:
                if not result.about_server:
                    self.breaker.release()
                elif result.verdict is Verdict.RETRY:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()  # a 4xx still proves the receiver is up
            if result.verdict is Verdict.DELIVERED:
                return _PartResult(OutcomeKind.DELIVERED, attempts)
            if result.verdict is Verdict.REJECT:
                return _PartResult(OutcomeKind.REJECTED, attempts, result.error)
            if not policy.may_attempt_again(attempts):
                return _PartResult(
                    OutcomeKind.RETRY_LATER, attempts, f"{result.error} (max attempts)", result.retry_after_s
                )
            delay = policy.backoff(attempts - 1, rt.rand())
            if result.retry_after_s is not None:
                delay = max(delay, result.retry_after_s)
            if not policy.fits(rt.clock() - started, delay):
                return _PartResult(
                    OutcomeKind.RETRY_LATER,
                    attempts,
                    f"{result.error} (retry deadline)",
                    result.retry_after_s,
                )
            self.retries += 1
            log.info("notify: %s: retry %d in %.3fs: %s", self.name, attempts, delay, result.error)
            rt.sleep(delay)

    @staticmethod
    def _may_wait(policy: RetryPolicy, elapsed: float, delay: float) -> bool:
        """Wait out an open breaker inside the deadline; without a deadline only when told to
        retry until delivered (else the caller, told RETRY_LATER, decides, and the worker is free)."""
        if policy.deadline_s is None:
            return bool(getattr(policy, "until_delivered", False))
        return policy.fits(elapsed, delay)

    def _safe_attempt(self, part: P) -> Try:
        try:
            return self.attempt(part)
        except Exception as exc:  # a bug in a sender must not look like a delivered message
            log.exception("notify: %s: attempt failed unexpectedly", self.name)
            return Try(Verdict.REJECT, f"sender error: {_describe(exc)}", about_server=False)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, for outcome errors."""
    return _describe(exc)
