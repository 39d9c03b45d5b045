"""HTTP receivers: webhook, alertmanager, slack, pagerduty, notification_service.

One `HttpSender` (a `GuardedSender` over a sync `httpx.Client`, see base.py for why sync) with a
body builder per kind from `rules.routing.payloads`; the factories below are what the delivery
flow calls with a receiver's configuration. Verdicts: 2xx delivered; 408, 429, 5xx and network
errors/timeouts transient (Retry-After honoured when the answer carries one); any other status
(4xx, and 3xx since redirects are not followed) permanent.

Every request carries the W3C `traceparent` of its alert (connectors/ops/trace.py): the one
alert of a per-alert request (notification_service, pagerduty), else the group's newest alert
that has one; with an OpenTelemetry SDK configured each request is a client span with the
alert's `correlation_id` attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.notify.policy import Verdict, classify_status, parse_retry_after
from connectors.notify.receivers.base import GuardedSender, Runtime, Sender, SenderOptions, Try, describe
from connectors.ops.trace import TraceRef, client_span
from rules.routing import payloads
from rules.routing.types import GroupNotification

DEFAULT_TIMEOUT_S = 10.0
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

_TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST: where, the JSON body, extra headers, and the trace context it carries
    (None: the notification's, see `HttpSender.parts`)."""

    url: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    trace: TraceRef | None = None


BodyBuilder = Callable[[GroupNotification, float], Sequence[HttpRequest]]  # (notification, wall now)


def http_verdict(status: int) -> Verdict:
    """`classify_status`, plus 408 (request timeout) as transient: the server asks for a retry."""
    return Verdict.RETRY if status == 408 else classify_status(status)


class HttpSender(GuardedSender[HttpRequest]):
    """POSTs the requests `build` makes of a notification."""

    def __init__(
        self,
        name: str,
        build: BodyBuilder,
        options: SenderOptions | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: httpx.Client | None = None,
        fallback: Sender | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(name, options, fallback=fallback, runtime=runtime)
        self._build = build
        self._headers = dict(headers or {})
        self._own_client = client is None
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def parts(self, n: GroupNotification) -> Sequence[HttpRequest]:
        requests = self._build(n, self.runtime.wall())
        if all(r.trace is not None for r in requests):
            return requests
        group = TraceRef.newest(n.alerts)
        return [r if r.trace is not None else replace(r, trace=group) for r in requests]

    def attempt(self, part: HttpRequest) -> Try:
        try:
            with client_span(f"{self.name} POST", part.trace) as trace_headers:
                response = self.client.post(
                    part.url, json=part.body, headers={**self._headers, **part.headers, **trace_headers}
                )
        except _TRANSIENT_EXCEPTIONS as exc:
            return Try(Verdict.RETRY, describe(exc))
        except httpx.HTTPError as exc:  # bad URL, unsupported protocol: ours, not the receiver's
            return Try(Verdict.REJECT, describe(exc), about_server=False)
        verdict = http_verdict(response.status_code)
        if verdict is Verdict.DELIVERED:
            return Try(verdict)
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        text = response.text.strip().replace("\n", " ")[:200]
        error = f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"
        return Try(verdict, error, retry_after)

    def close(self) -> None:
        if self._own_client:
            self.client.close()


def webhook_sender(
    name: str,
    url: str,
    *,
    max_alerts: int = 0,
    external_url: str = "",
    options: SenderOptions | None = None,
    **kw: Any,
) -> HttpSender:
    """Alertmanager's `webhook_config`: the grouped webhook JSON (version 4) to `url`."""

    def build(n: GroupNotification, now: float) -> list[HttpRequest]:
        body = payloads.webhook_payload(n, max_alerts=max_alerts, external_url=external_url)
        return [HttpRequest(url, body)]

    return HttpSender(name, build, options, **kw)


def alertmanager_sender(
    name: str,
    base_url: str,
    *,
    resolve_timeout_s: float = payloads.RESOLVE_TIMEOUT_S,
    options: SenderOptions | None = None,
    **kw: Any,
) -> HttpSender:
    """Push to an Alertmanager (`POST {base_url}/api/v2/alerts`); firing alerts expire after
    `resolve_timeout_s` unless sent again (the flow re-sends them, as Prometheus does)."""
    url = base_url.rstrip("/") + "/api/v2/alerts"

    def build(n: GroupNotification, now: float) -> list[HttpRequest]:
        return [
            HttpRequest(url, payloads.alertmanager_payload(n, now=now, resolve_timeout_s=resolve_timeout_s))
        ]

    return HttpSender(name, build, options, **kw)


def slack_sender(
    name: str,
    url: str,
    *,
    channel: str = "",
    username: str = "",
    options: SenderOptions | None = None,
    **kw: Any,
) -> HttpSender:
    """A Slack incoming webhook (`api_url` in Alertmanager's slack_config)."""

    def build(n: GroupNotification, now: float) -> list[HttpRequest]:
        return [HttpRequest(url, payloads.slack_payload(n, channel=channel, username=username))]

    return HttpSender(name, build, options, **kw)


def pagerduty_sender(
    name: str,
    routing_key: str,
    *,
    url: str = PAGERDUTY_EVENTS_URL,
    client_url: str = "",
    options: SenderOptions | None = None,
    **kw: Any,
) -> HttpSender:
    """PagerDuty Events API v2: one event per alert, `dedup_key` = fingerprint (payloads.py)."""

    def build(n: GroupNotification, now: float) -> list[HttpRequest]:
        events = payloads.pagerduty_events(n, routing_key=routing_key, client_url=client_url)
        # one event per alert, in `sorted_alerts` order: each carries its own alert's trace
        traces = [TraceRef.of(a) for a in payloads.sorted_alerts(n)]
        return [HttpRequest(url, e, trace=t) for e, t in zip(events, traces, strict=True)]

    return HttpSender(name, build, options, **kw)


def notification_service_sender(
    name: str,
    base_url: str,
    *,
    path: str = "/alerts",
    options: SenderOptions | None = None,
    **kw: Any,
) -> HttpSender:
    """The seeds' notification service: one `POST {base_url}/alerts` per alert, with its own
    message_id and `Idempotency-Key` (today's posts, byte for byte)."""
    url = base_url.rstrip("/") + "/" + path.lstrip("/")

    def build(n: GroupNotification, now: float) -> list[HttpRequest]:
        posts = payloads.notification_service_posts(n)  # one per alert, in `sorted_alerts` order
        traces = [TraceRef.of(a) for a in payloads.sorted_alerts(n)]
        return [HttpRequest(url, p.body, p.headers, t) for p, t in zip(posts, traces, strict=True)]

    return HttpSender(name, build, options, **kw)
