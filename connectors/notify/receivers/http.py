"""HTTP receivers: webhook, alertmanager, slack, pagerduty, notification_service.

One `HttpSender` (a `GuardedSender` over a sync `urllib3.PoolManager`, see base.py for why sync)
with a body builder per kind from `rules.routing.payloads`; the factories below are what the delivery
flow calls with a receiver's configuration. Verdicts: 2xx delivered; 408, 429, 5xx and network
errors/timeouts transient (Retry-After honoured when the answer carries one); any other status
(4xx, and 3xx since redirects are not followed) permanent.

Every request carries the W3C `traceparent` of its alert (connectors/ops/trace.py): the one
alert of a per-alert request (notification_service, pagerduty), else the group's newest alert
that has one; with an OpenTelemetry SDK configured each request is a client span with the
alert's `correlation_id` attribute.

urllib3 rather than httpx.Client: ~half its CPU per POST (bench/notify_client.py), and a sender's
cost is client CPU under the GIL. Thread-safe (the senders are shared by worker threads), no
retries or redirects of its own (the guard retries; a 3xx is permanent), TLS against
SSL_CERT_FILE or certifi's CAs as httpx did, and the environment's proxy (HTTP_PROXY, HTTPS_PROXY,
NO_PROXY) as httpx went through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import LocationValueError, ProxyError, SSLError, TimeoutError, URLSchemeUnknown

from connectors.notify.policy import Verdict, classify_status, parse_retry_after
from connectors.notify.receivers.base import (
    NO_LOOKUP,
    GuardedSender,
    Runtime,
    Sender,
    SenderOptions,
    Try,
    describe,
    env_proxy,
    tls_context,
)
from connectors.ops.trace import TraceRef, client_span
from rules.routing import payloads
from rules.routing.types import GroupNotification

DEFAULT_TIMEOUT_S = 10.0
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

# ours, not the receiver's: a URL that cannot be parsed or a scheme urllib3 does not speak
_OUR_EXCEPTIONS: tuple[type[BaseException], ...] = (LocationValueError, URLSchemeUnknown)
# timeouts, refused/reset connections, TLS handshakes (as httpx's ConnectError), proxies, and any
# other urllib3 error (a broken answer): transient
_TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TimeoutError,
    SSLError,
    ProxyError,
    Urllib3Error,
    OSError,
)


def pool(timeout_s: float, max_connections: int, proxy: str | None = None) -> urllib3.PoolManager:
    """Keep-alive connections per host, `max_connections` kept each (the guard's semaphore bounds
    requests in flight), no retries or redirects of its own; through `proxy` when given."""
    options: dict[str, Any] = {
        "num_pools": 16,
        "maxsize": max_connections,
        "timeout": urllib3.Timeout(connect=timeout_s, read=timeout_s),
        "retries": False,
        "ssl_context": tls_context(),
    }
    return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


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
        client: urllib3.PoolManager | None = None,
        fallback: Sender | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(name, options, fallback=fallback, runtime=runtime)
        self._build = build
        self._headers = dict(headers or {})
        self._own_client = client is None
        self.client = client or pool(timeout_s, self.options.max_in_flight)
        self._timeout_s = timeout_s
        self._proxy_of: dict[str, str | None] = {}  # url -> proxy (env_proxy, looked up once)
        self._proxied: dict[str, urllib3.PoolManager] = {}

    def _client_for(self, url: str) -> urllib3.PoolManager:
        """The pool for `url`: through the environment's proxy, as httpx went (an injected
        client is used as given)."""
        proxy = self._proxy_of.get(url, NO_LOOKUP)
        if proxy is NO_LOOKUP:
            proxy = self._proxy_of[url] = env_proxy(url)
        if proxy is None or not self._own_client:
            return self.client
        manager = self._proxied.get(proxy)
        if manager is None:
            manager = self._proxied[proxy] = pool(self._timeout_s, self.options.max_in_flight, proxy)
        return manager

    def parts(self, n: GroupNotification) -> Sequence[HttpRequest]:
        requests = self._build(n, self.runtime.wall())
        if all(r.trace is not None for r in requests):
            return requests
        group = TraceRef.newest(n.alerts)
        return [r if r.trace is not None else replace(r, trace=group) for r in requests]

    def attempt(self, part: HttpRequest) -> Try:
        try:
            with client_span(f"{self.name} POST", part.trace) as trace_headers:
                headers = {
                    "Content-Type": "application/json",
                    **self._headers,
                    **part.headers,
                    **trace_headers,
                }
                response = self._client_for(part.url).request(
                    "POST",
                    part.url,
                    body=orjson.dumps(part.body),
                    headers=headers,
                    redirect=False,
                    retries=False,
                )
        except _OUR_EXCEPTIONS as exc:  # bad URL, unsupported protocol: ours, not the receiver's
            return Try(Verdict.REJECT, describe(exc), about_server=False)
        except _TRANSIENT_EXCEPTIONS as exc:
            return Try(Verdict.RETRY, describe(exc))
        status = response.status
        verdict = http_verdict(status)
        if verdict is Verdict.DELIVERED:
            return Try(verdict)
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        text = response.data.decode(errors="replace").strip().replace("\n", " ")[:200]
        error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        return Try(verdict, error, retry_after)

    def close(self) -> None:
        if self._own_client:
            self.client.clear()
            for manager in self._proxied.values():
                manager.clear()


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
