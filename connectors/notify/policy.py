"""Delivery policy, free of any HTTP client: what an attempt's outcome means, backoff with
full jitter, Retry-After, and the circuit breaker (pure and clock-injected, unit-testable)."""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connectors.errors import ConnectorError

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class NotifyError(ConnectorError):
    """Root exception of the notification delivery connector (configuration and callback errors)."""


class Verdict(enum.Enum):
    """What one HTTP attempt means for the message."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: worth another attempt, and counts against the breaker
    REJECT = "reject"  # permanent: the request is wrong, retrying cannot help


class Undeliverable(enum.Enum):
    """Why a message went to `on_undeliverable` (the `reason` label of the counter)."""

    REJECTED = "rejected"  # non-retryable HTTP status
    EXHAUSTED = "exhausted"  # retry budget spent on transient failures
    CIRCUIT_OPEN = "circuit_open"  # breaker open for longer than the remaining budget
    ERROR = "error"  # payload could not be built / client misuse


def classify_status(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx transient; anything else (4xx, unfollowed 3xx, 1xx) permanent."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or status >= 500:  # 408: the server timed the request out, try again
        return Verdict.RETRY
    return Verdict.REJECT


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff and budget of one message; at least one of max_attempts / deadline_s bounds it."""

    base_s: float = 0.2
    cap_s: float = 5.0
    max_attempts: int | None = 6
    deadline_s: float | None = 15.0  # measured from the message's first attempt
    # transient failures are retried until the receiver takes the message (the delivery keeps
    # its backlog instead of dead-lettering it); both bounds must then be None
    until_delivered: bool = False

    def __post_init__(self) -> None:
        if self.until_delivered:
            if self.max_attempts is not None or self.deadline_s is not None:
                raise NotifyError("RetryPolicy: until_delivered takes no max_attempts or deadline_s")
        elif self.max_attempts is None and self.deadline_s is None:
            raise NotifyError("RetryPolicy: set max_attempts or deadline_s, or retries never end")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise NotifyError(f"RetryPolicy: max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise NotifyError(f"RetryPolicy: need 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")

    def backoff(self, retry: int, rand: float) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)), `retry` counting from 0.

        Full rather than equal jitter because a burst of failures (an outage) should spread its
        retries over the whole window instead of re-synchronising them.
        """
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(retry, 60))
        return rand * ceiling

    def may_attempt_again(self, attempts: int) -> bool:
        return self.max_attempts is None or attempts < self.max_attempts

    def fits(self, elapsed: float, delay: float) -> bool:
        """Whether waiting `delay` more still leaves the next attempt inside the deadline."""
        return self.deadline_s is None or elapsed + delay <= self.deadline_s


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker: CLOSED -> OPEN (cooldown) -> HALF_OPEN (one probe) -> ...

    Only the clock is injected; no I/O, so the transitions are unit-testable. Verdicts that arrive
    while OPEN (from requests started before it opened) are ignored: only the half-open probe
    decides whether to close again.
    """

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Clock = time.monotonic):
        if failure_threshold < 1:
            raise NotifyError(f"CircuitBreaker: failure_threshold must be >= 1, got {failure_threshold}")
        if cooldown_s < 0:
            raise NotifyError(f"CircuitBreaker: cooldown_s must be >= 0, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opened_count = 0  # times it tripped; for tests and logs

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a request go out now? In HALF_OPEN this reserves the single probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 unless OPEN)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def record_success(self) -> None:
        if self._state is BreakerState.OPEN:
            return
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        if self._state is BreakerState.OPEN:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._trip()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._trip()

    def release(self) -> None:
        """Free a half-open probe that ended without a verdict about the server (client-side error)."""
        self._probe_in_flight = False

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self._failures = 0
        self.opened_count += 1
        log.warning("notify: circuit breaker opened for %.1fs", self.cooldown_s)


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """Where and how hard to try. `base_url` is NOTIFY_URL; the post goes to base_url + path."""

    base_url: str
    path: str = "/alerts"
    timeout_s: float = 5.0
    max_in_flight: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    # notifications submitted and not yet answered before `submit` waits (a partition's memory)
    max_pending: int = 10_000

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise NotifyError(f"NotifyConfig: max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.timeout_s <= 0:
            raise NotifyError(f"NotifyConfig: timeout_s must be > 0, got {self.timeout_s}")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/" + self.path.lstrip("/")
