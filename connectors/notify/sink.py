"""Delivery of alert notifications to the notification service (`POST {NOTIFY_URL}/alerts`).

A `NotifyPartition` owns an asyncio loop, run on its own thread, and a `Poster` (default:
`Http1Poster`: keep-alive, redirects not followed, TLS checked against certifi or SSL_CERT_FILE,
the environment's proxy). `submit` hands a batch to the loop and returns; `collect` reads the
outcomes on the caller's thread, in batch order. The flows use `PipelinedNotifySink`: posts
overlap the evaluation, and each epoch ends (`snapshot`) only once every notification of it is
delivered, muted or handed to `on_undeliverable`. `NotifySink` (a one-off send: the DLQ redrive)
waits for each batch in `write_batch`. Neither httpx nor aiohttp: under one GIL the client's CPU
is what delivery costs (`connectors.notify.http1` says what was measured). Nothing is dropped
silently: that callback is the flow's DLQ producer (`gds.alerts.dlq`), and an exception it
raises propagates out of `write_batch` and stops the flow rather than losing the notification
(on restart Bytewax replays the epoch; duplicates are harmless because every post carries
`Idempotency-Key: <message_id>` and the message_id of a transition is
deterministic).

Policy, each piece injectable (one `NotifyDeps`) so it can be tested without sleeping or a network:
- Retries: exponential backoff with full jitter, bounded by `max_attempts` and/or a per-message
  `deadline_s`. Retried: connect/read/write errors, timeouts, 5xx and 429 (honouring Retry-After on
  429/503). Not retried: every other status (4xx, and 3xx because redirects are not followed): the
  request itself is wrong, so it is undeliverable at once.
- A circuit breaker per partition: after `failure_threshold` consecutive retryable failures it
  opens for `cooldown_s`; while open, attempts fail fast without touching the network, then one
  half-open probe decides. A message whose remaining retry budget is shorter than the time left in
  the cooldown is handed to `on_undeliverable` immediately, so `cooldown_s > deadline_s` (the
  default) drains an outage to the DLQ instead of stalling the dataflow, and `cooldown_s <
  deadline_s` rides out short outages at the price of blocking the worker while it waits.
- Per-alert order: notifications with the same fingerprint are sent one after the other (firing
  before resolved), within a batch and across the batches in flight; different alerts go
  concurrently (at most `max_in_flight` posts), and at most `max_pending` notifications wait
  for an answer before `submit` waits too.
- Maintenance: an optional batch hook `is_muted(events) -> list[bool]` (see
  `connectors.notify.maintenance`); muted events are not posted but passed to `on_muted` marked
  `suppressed=Suppression.MAINTENANCE`. If the hook itself fails the batch is delivered anyway
  (fail open): a Redis outage must not swallow alerts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from connectors.notify.http1 import Http1Poster, ProtocolError, Reply
from connectors.notify.policy import (
    CircuitBreaker,
    Clock,
    NotifyConfig,
    NotifyError,
    Undeliverable,
    Verdict,
    classify_status,
    parse_retry_after,
)
from connectors.ops.metrics import METRICS, Metrics
from connectors.ops.trace import TraceRef, client_span
from rules.model import AlertEvent, AlertState, NotifyReason, Suppression
from rules.payload import notification_payload

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
RandomSource = Callable[[], float]
PosterFactory = Callable[[], "Poster"]
UndeliverableHandler = Callable[[AlertEvent, Mapping[str, Any] | None, str], None]
EventHandler = Callable[[AlertEvent], None]
MuteCheck = Callable[[Sequence[AlertEvent]], Sequence[bool]]


_RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    # Http1Poster: timeouts; refused, reset or closed connections and TLS failures (OSError, as
    # httpx's ConnectError); an answer that is not HTTP, a refused proxy tunnel
    TimeoutError,
    OSError,
    ProtocolError,
)


def classify_exception(exc: BaseException) -> Verdict:
    """Network trouble and timeouts are transient; a bad URL, protocol or payload is not."""
    if isinstance(exc, _RETRYABLE_EXCEPTIONS):
        return Verdict.RETRY
    return Verdict.REJECT


class Poster(Protocol):
    """The HTTP client of one partition, used on its loop only. `post` sends `body` (JSON bytes)
    once, follows no redirect, and returns the answer or raises (`classify_exception` decides)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply: ...

    async def aclose(self) -> None: ...


class HttpxPoster:
    """An `httpx.AsyncClient` behind the `Poster` protocol: for an injected httpx transport
    (tests' MockTransport). About 6x the CPU of the default per POST."""

    def __init__(self, timeout_s: float, max_connections: int, transport: httpx.AsyncBaseTransport) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=limits, transport=transport)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        r = await self._client.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
        return Reply(r.status_code, r.headers.get("Retry-After"), "" if r.is_success else r.text)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one message's delivery, reported to the callbacks after the batch."""

    event: AlertEvent
    payload: Mapping[str, Any] | None
    attempts: int
    error: str = ""  # empty when delivered
    reason: Undeliverable | None = None  # None when delivered

    @property
    def delivered(self) -> bool:
        return self.reason is None


def mute_each(predicate: Callable[[AlertEvent], bool]) -> MuteCheck:
    """Adapt a per-event predicate to the batch `is_muted` hook."""

    def check(events: Sequence[AlertEvent]) -> list[bool]:
        return [predicate(e) for e in events]

    return check


@dataclass(frozen=True, slots=True)
class NotifyDeps:
    """What delivery is given rather than builds: callbacks, hooks, client, clock, metrics.

    One object for `NotifySink` and every `NotifyPartition` it builds. `on_undeliverable` is
    the DLQ producer (required: nothing is dropped silently); `poster` builds each partition's
    HTTP client and wins over `transport` (an httpx transport, served by `HttpxPoster`); neither:
    `Http1Poster`. `breaker` builds each partition's breaker (default: from the config, on `clock`).
    """

    on_undeliverable: UndeliverableHandler
    on_delivered: EventHandler | None = None
    on_muted: EventHandler | None = None
    is_muted: MuteCheck | None = None
    poster: PosterFactory | None = None
    transport: httpx.AsyncBaseTransport | None = None
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    rand: RandomSource = random.random
    breaker: Callable[[], CircuitBreaker] | None = None
    metrics: Metrics = field(default_factory=lambda: METRICS)


@dataclass(frozen=True, slots=True)
class Recheck:
    """A tick for the sink (from the flow's heartbeat): look at parked notifications again."""


class NotifyPartition(StatelessSinkPartition["AlertEvent | Recheck"]):
    """One worker's delivery: its own loop, client, semaphore and breaker."""

    def __init__(self, config: NotifyConfig, deps: NotifyDeps) -> None:
        self.config = config
        self.deps = deps
        self._on_undeliverable = deps.on_undeliverable
        self._on_delivered = deps.on_delivered
        self._on_muted = deps.on_muted
        self._is_muted = deps.is_muted
        self._poster_factory = deps.poster or self._default_poster_factory(config, deps.transport)
        self._clock = deps.clock
        self._sleep = deps.sleep
        self._rand = deps.rand
        self._metrics = deps.metrics
        self.breaker = (
            deps.breaker()
            if deps.breaker is not None
            else CircuitBreaker(config.failure_threshold, config.cooldown_s, deps.clock)
        )
        # the partition's loop runs on its own thread (started by the first post), so a post
        # never holds the worker: `submit` hands a batch over, `collect` reads the outcomes
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._sem = asyncio.Semaphore(config.max_in_flight)
        self._poster: Poster | None = None
        self._closed = False
        # submitted batches in order, and how many notifications they hold
        self._inflight: deque[concurrent.futures.Future[list[Outcome]]] = deque()
        self._pending = 0
        # fingerprint -> when its last submitted notifications are done (on the loop only):
        # an alert's notifications go one after the other across batches too
        self._tails: dict[str, asyncio.Future[None]] = {}
        self.delivered = 0
        self.retried = 0
        self.undeliverable = 0
        self.muted = 0
        self.skipped = 0
        self.mute_check_errors = 0
        # fingerprint -> a FIRING muted by maintenance: sent when the maintenance ends while it
        # still fires, dropped with its RESOLVED (an incident never announced closes silently)
        self.parked: dict[str, AlertEvent] = {}

    @staticmethod
    def _default_poster_factory(
        config: NotifyConfig, transport: httpx.AsyncBaseTransport | None
    ) -> PosterFactory:
        def make() -> Poster:
            if transport is not None:
                return HttpxPoster(config.timeout_s, config.max_in_flight, transport)
            return Http1Poster(config.timeout_s, config.max_in_flight)

        return make

    def write_batch(self, items: Sequence[AlertEvent | Recheck]) -> None:
        """Deliver, mute or dead-letter every item before returning (Bytewax calls this sync).

        `Recheck` items (the flow's heartbeat) only give parked FIRINGs a chance to go out.
        """
        self.submit(items)
        self.collect(wait=True)

    def submit(self, items: Sequence[AlertEvent | Recheck]) -> None:
        """Mute, park or hand the items to the partition's loop, and return without waiting for
        their posts: `collect` reads the outcomes. Outcomes already in are read now; with more
        than `max_pending` notifications in flight it waits for the oldest batches (a slow
        receiver slows the flow down rather than filling the memory)."""
        if self._closed:
            raise NotifyError("notify: write_batch after close")
        candidates = [item for item in items if item.__class__ is not Recheck and self._deliverable(item)]
        to_send = self._unparked() + self._apply_maintenance(candidates)  # type: ignore[arg-type]
        # Outcomes of earlier batches first: a batch's own outcome is then never read in the call
        # that submits it (unless `max_pending` makes it wait), whatever the receiver's speed.
        self.collect(wait=False)
        if to_send:
            if self._thread is None:
                loop = self._loop
                self._thread = threading.Thread(target=loop.run_forever, name="notify-loop", daemon=True)
                self._thread.start()
            self._inflight.append(asyncio.run_coroutine_threadsafe(self._deliver_all(to_send), self._loop))
            self._pending += len(to_send)
        while self._pending > self.config.max_pending:
            self._finish(self._inflight.popleft().result())

    def collect(self, wait: bool = True) -> None:
        """Read the outcomes of submitted batches, in submission order: all of them (`wait`), or
        those done by now. An exception of a callback (the DLQ producer) propagates from here."""
        while self._inflight and (wait or self._inflight[0].done()):
            self._finish(self._inflight.popleft().result())

    @property
    def in_flight(self) -> int:
        """Notifications submitted whose outcome has not been read yet."""
        return self._pending

    def _finish(self, outcomes: list[Outcome]) -> None:
        # Callbacks run here, on the worker thread and in batch order, so an exception in the DLQ
        # producer propagates to Bytewax instead of vanishing inside a task.
        self._pending -= len(outcomes)
        for outcome in outcomes:
            if outcome.delivered:
                self.delivered += 1
                self._metrics.notify_delivered.inc()
                if self._on_delivered is not None:
                    self._on_delivered(outcome.event)
            else:
                reason = outcome.reason or Undeliverable.ERROR
                self.undeliverable += 1
                self._metrics.notify_undeliverable.labels(reason.value).inc()
                log.warning(
                    "notify: undeliverable message_id=%s alert=%s after %d attempt(s): %s",
                    outcome.event.message_id,
                    outcome.event.alert_name,
                    outcome.attempts,
                    outcome.error,
                )
                self._on_undeliverable(outcome.event, outcome.payload, outcome.error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.collect(wait=True)
        finally:
            try:
                if self._poster is not None:  # made on the loop's thread: closed there
                    asyncio.run_coroutine_threadsafe(self._poster.aclose(), self._loop).result(timeout=10)
            finally:
                self._poster = None
                if self._thread is not None:
                    self._loop.call_soon_threadsafe(self._loop.stop)
                    self._thread.join(timeout=10)
                self._loop.close()

    def _deliverable(self, item: object) -> bool:
        """The flow filters upstream; anything else reaching us is a wiring bug worth a warning."""
        if isinstance(item, AlertEvent) and item.notify is not None and item.suppressed is None:
            return True
        self.skipped += 1
        self._metrics.notify_skipped.inc()
        log.warning(
            "notify: skipping item not meant for delivery (message_id=%s, notify=%s, suppressed=%s)",
            getattr(item, "message_id", "?"),
            getattr(item, "notify", "?"),
            getattr(item, "suppressed", "?"),
        )
        return False

    def _mute_flags(self, events: list[AlertEvent]) -> list[bool] | None:
        """None when the check failed: maintenance unknown, deliver (fail open)."""
        assert self._is_muted is not None
        try:
            flags = list(self._is_muted(events))
            if len(flags) != len(events):
                raise NotifyError(f"is_muted returned {len(flags)} flags for {len(events)} events")
        except Exception as exc:
            self.mute_check_errors += 1
            log.warning("notify: maintenance check failed, delivering anyway: %s", exc)
            return None
        return flags

    def _unparked(self) -> list[AlertEvent]:
        """Parked FIRINGs whose maintenance is over (or unknown): deliver them now."""
        if not self.parked or self._is_muted is None:
            return []
        parked = list(self.parked.values())
        flags = self._mute_flags(parked)
        out = [e for e, muted in zip(parked, flags or [False] * len(parked), strict=True) if not muted]
        for e in out:
            del self.parked[e.fingerprint]
            log.info("notify: maintenance over, sending message_id=%s now", e.message_id)
        return out

    def _apply_maintenance(self, events: list[AlertEvent]) -> list[AlertEvent]:
        if self._is_muted is None or not events:
            return events
        keep: list[AlertEvent] = []
        for event in events:
            if event.state is AlertState.RESOLVED and self.parked.pop(event.fingerprint, None) is not None:
                # its FIRING never went out: nothing to resolve at the receiver
                self.muted += 1
                self._metrics.notify_muted.inc()
                continue
            keep.append(event)
        events, keep = keep, []
        flags = self._mute_flags(events) if events else []
        if flags is None:
            return events
        for event, muted in zip(events, flags, strict=True):
            if not muted:
                keep.append(event)
                continue
            if event.state is AlertState.FIRING and event.notify is not NotifyReason.REPEAT_ELAPSED:
                self.parked[event.fingerprint] = event  # a first announcement, held back
            self.muted += 1
            self._metrics.notify_muted.inc()
            log.info(
                "notify: muted (maintenance) message_id=%s instance=%s", event.message_id, event.instance_id
            )
            if self._on_muted is not None:
                self._on_muted(replace(event, suppressed=Suppression.MAINTENANCE))
        return keep

    async def _deliver_all(self, events: list[AlertEvent]) -> list[Outcome]:
        if self._poster is None:
            self._poster = self._poster_factory()
        client = self._poster
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            groups.setdefault(event.fingerprint, []).append(index)
        results: list[Outcome | None] = [None] * len(events)

        async def run_group(fingerprint: str, indexes: list[int]) -> None:
            before = self._tails.get(fingerprint)
            mine = self._tails[fingerprint] = asyncio.get_running_loop().create_future()
            try:
                if before is not None:  # the alert's notifications of an earlier batch first
                    await before
                for index in indexes:  # same alert: keep the transition order
                    results[index] = await self._deliver_one(client, events[index])
            finally:
                mine.set_result(None)
                if self._tails.get(fingerprint) is mine:
                    del self._tails[fingerprint]

        await asyncio.gather(*(run_group(fp, g) for fp, g in groups.items()))
        done = [r for r in results if r is not None]
        if len(done) != len(events):  # cannot happen: _deliver_one returns for every event
            raise NotifyError(f"notify: {len(events) - len(done)} message(s) without an outcome")
        return done

    async def _deliver_one(self, client: Poster, event: AlertEvent) -> Outcome:
        try:
            payload = notification_payload(event)
            body = orjson.dumps(payload)
        except Exception as exc:
            return Outcome(event, None, 0, f"payload: {_describe(exc)}", Undeliverable.ERROR)
        headers = {"Idempotency-Key": event.message_id}
        trace_ref = TraceRef.of(event)
        policy = self.config.retry
        started: float | None = None
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            circuit_open = False
            async with self._sem:
                if started is None:
                    started = self._clock()
                if self.breaker.allow():
                    verdict, error, retry_after = await self._attempt(client, body, headers, trace_ref)
                else:
                    verdict, error, circuit_open = Verdict.RETRY, "circuit open", True
            if verdict is Verdict.DELIVERED:
                return Outcome(event, payload, attempts)
            if verdict is Verdict.REJECT:
                return Outcome(event, payload, attempts, error, Undeliverable.REJECTED)
            if circuit_open:
                # No request was made, so no attempt is spent: a message waits out the breaker
                # (bounded by the deadline) instead of burning its attempts in a tight loop.
                attempts -= 1
                delay = max(policy.backoff(0, self._rand()), self.breaker.retry_in())
                if not policy.fits(self._clock() - started, delay):
                    return Outcome(
                        event, payload, attempts, f"{error} (retry deadline)", Undeliverable.CIRCUIT_OPEN
                    )
                await self._sleep(delay)
                continue
            give_up = Undeliverable.EXHAUSTED
            if not policy.may_attempt_again(attempts):
                return Outcome(event, payload, attempts, f"{error} (max attempts)", give_up)
            delay = policy.backoff(attempts - 1, self._rand())
            if retry_after is not None:
                delay = max(delay, retry_after)
            if not policy.fits(self._clock() - started, delay):
                return Outcome(event, payload, attempts, f"{error} (retry deadline)", give_up)
            self.retried += 1
            self._metrics.notify_retried.inc()
            log.info(
                "notify: retry %d of message_id=%s in %.3fs: %s", attempts, event.message_id, delay, error
            )
            await self._sleep(delay)

    async def _attempt(
        self,
        client: Poster,
        body: bytes,
        headers: Mapping[str, str],
        trace_ref: TraceRef | None = None,
    ) -> tuple[Verdict, str, float | None]:
        """One POST, carrying the alert's `traceparent` (in a client span when an OpenTelemetry
        SDK is configured); feeds the breaker. Returns (verdict, error text, Retry-After seconds)."""
        try:
            with client_span("notify POST", trace_ref) as trace_headers:
                response = await client.post(self.config.url, body, {**headers, **trace_headers})
        except Exception as exc:
            verdict = classify_exception(exc)
            if verdict is Verdict.RETRY:
                self.breaker.record_failure()
            else:
                self.breaker.release()
            return verdict, _describe(exc), None
        verdict = classify_status(response.status)
        if verdict is Verdict.RETRY:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()  # a 4xx still proves the service is up
        if verdict is Verdict.DELIVERED:
            return verdict, "", None
        retry_after = None
        if response.status in (429, 503):
            retry_after = parse_retry_after(response.retry_after, datetime.now(UTC))
        text = response.text.strip().replace("\n", " ")[:200]
        return verdict, f"HTTP {response.status}: {text}" if text else f"HTTP {response.status}", retry_after


class NotifySink(DynamicSink["AlertEvent | Recheck"]):
    """Bytewax sink posting AlertEvents; every worker builds its own `NotifyPartition`.

    Callbacks are called on the worker threads, so they must be thread-safe (a confluent-kafka
    Producer is). `parts` keeps the built partitions so tests and metrics endpoints can read
    their counters.
    """

    def __init__(self, config: NotifyConfig, deps: NotifyDeps) -> None:
        self.config = config
        self.deps = deps
        self.parts: list[NotifyPartition] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> NotifyPartition:
        part = NotifyPartition(self.config, self.deps)
        self.parts.append(part)
        return part

    def totals(self) -> dict[str, int]:
        """Counters summed over this process's partitions."""
        keys = ("delivered", "retried", "undeliverable", "muted", "skipped", "mute_check_errors")
        return {k: sum(getattr(p, k) for p in self.parts) for k in keys}


class _EpochPartition(StatefulSinkPartition["AlertEvent | Recheck", None]):
    """A `NotifyPartition` whose posts overlap the flow: `write_batch` submits, and the epoch
    waits for every outcome in `snapshot`, which Bytewax calls when an epoch in which the
    partition was written closes (with recovery or not) and before that epoch can be committed."""

    def __init__(self, part: NotifyPartition) -> None:
        self.part = part

    def write_batch(self, values: list[AlertEvent | Recheck]) -> None:
        self.part.submit(values)

    def snapshot(self) -> None:
        self.part.collect(wait=True)

    def close(self) -> None:
        self.part.close()


class PipelinedNotifySink(FixedPartitionedSink["AlertEvent | Recheck", None]):
    """The flows' notification sink: posts run on the partition's loop while the worker goes on
    evaluating, and every notification of an epoch is delivered, muted or dead-lettered before
    the epoch ends (at-least-once as `NotifySink`, whose `write_batch` waits for each batch).

    Waiting for each batch held the worker for a round trip to the receiver whenever a batch
    carried a notification, and a slow receiver slowed evaluation to its pace. Outcomes are read
    at the next batch or at the epoch's end, so a dead letter (or a `delivered` count) can trail
    its post by up to an epoch. One partition, `PART`: items are `(PART, item)`, and every
    worker's notifications go to the worker that holds it, so one client, one breaker and one
    order per alert serve the whole flow (notifications are a small fraction of the messages).
    """

    PART = "notify"

    def __init__(self, config: NotifyConfig, deps: NotifyDeps) -> None:
        self.config = config
        self.deps = deps
        self.parts: list[NotifyPartition] = []

    def list_parts(self) -> list[str]:
        return [self.PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _EpochPartition:
        part = NotifyPartition(self.config, self.deps)
        self.parts.append(part)
        return _EpochPartition(part)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
