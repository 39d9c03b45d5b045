"""The notify sink's HTTP client (aiohttp) and the routed senders' (urllib3) on the wire, against
real loopback servers.

What the sink promises regardless of the client it uses: the request (POST, JSON body equal to the
payload, Content-Type, Idempotency-Key = message_id) over reused keep-alive connections, no
redirect followed (a 3xx is a rejection), Retry-After honoured on 503, and TLS checked against the
CAs of SSL_CERT_FILE (an unknown certificate is never sent a notification).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from connectors.notify.policy import NotifyConfig, RetryPolicy
from connectors.notify.receivers import (
    OutcomeKind,
    SenderOptions,
    notification_service_sender,
    webhook_sender,
)
from connectors.notify.receivers.base import Runtime
from connectors.notify.sink import NotifyDeps, NotifyPartition
from rules.model import AlertEvent
from rules.payload import notification_payload
from rules.routing.types import GroupNotification
from tests.support.events import alert_event, instance_labels
from tests.support.loopback import LoopbackServer
from tests.support.smtp_server import _self_signed

pytestmark = pytest.mark.integration


@dataclass
class Seen:
    """What the server saw, and how it answers: `answers` are (status, headers) per request, then 202."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def _answer(self) -> None:
        seen = self.server.seen
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with seen.lock:
            seen.requests.append({
                "method": self.command, "path": self.path, "headers": dict(self.headers),
                "body": body, "peer": self.client_address,
            })  # fmt: skip
            status, headers = seen.answers.pop(0) if seen.answers else (202, {})
        text = b'{"status":"ok"}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        return


class Server(LoopbackServer):
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen = Seen()
        super().__init__(0, _Handler, "notify-client-test")
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.stop()


def event(n: int) -> AlertEvent:
    return alert_event(
        fingerprint=f"client-fp{n:03d}",
        labels=instance_labels(f"client-db-{n:03d}"),
        message_id=f"client-{n:03d}",
    )


@dataclass
class Run:
    delivered: list[AlertEvent] = field(default_factory=list)
    undeliverable: list[tuple[AlertEvent, str]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)


def partition(url: str, run: Run, **config: Any) -> NotifyPartition:
    async def sleep(delay: float) -> None:  # recorded, not slept: the test is about what was asked
        run.sleeps.append(delay)
        await asyncio.sleep(0)

    fields: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_in_flight": 4,
        "retry": RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=3, deadline_s=None),
        "failure_threshold": 100,
    }
    return NotifyPartition(
        NotifyConfig(url, **{**fields, **config}),
        NotifyDeps(
            on_undeliverable=lambda e, p, err: run.undeliverable.append((e, err)),
            on_delivered=run.delivered.append,
            sleep=sleep,
        ),
    )


def deliver(url: str, *events: AlertEvent) -> Run:
    """One batch through a fresh partition (closed afterwards); what happened to it."""
    run = Run()
    part = partition(url, run)
    try:
        part.write_batch(list(events))
    finally:
        part.close()
    return run


def test_posts_the_payload_with_its_headers_over_reused_connections(server: Server) -> None:
    run = Run()
    part = partition(server.url, run)
    events = [event(n) for n in range(24)]
    try:
        for i in range(0, 24, 8):  # three batches: connections outlive a batch
            part.write_batch(events[i : i + 8])
    finally:
        part.close()
    assert [e.message_id for e in run.delivered] == [e.message_id for e in events]
    by_id = {r["headers"]["Idempotency-Key"]: r for r in server.seen.requests}
    assert sorted(by_id) == sorted(e.message_id for e in events)
    for e in events:
        r = by_id[e.message_id]
        assert (r["method"], r["path"]) == ("POST", "/alerts")
        assert r["headers"]["Content-Type"] == "application/json"
        assert json.loads(r["body"]) == json.loads(json.dumps(notification_payload(e)))
    # keep-alive: at most max_in_flight connections for 24 posts
    assert len({r["peer"] for r in server.seen.requests}) <= 4


def test_a_redirect_is_not_followed_but_rejected(server: Server) -> None:
    target = Server()
    try:
        server.seen.answers = [(302, {"Location": target.url + "/elsewhere"})]
        run = deliver(server.url, event(1))
        [(rejected, error)] = run.undeliverable
        assert rejected.message_id == "client-001" and error.startswith("HTTP 302")
        assert len(server.seen.requests) == 1 and target.seen.requests == []
        assert run.delivered == []
    finally:
        target.stop()


def test_retry_after_of_a_503_is_honoured(server: Server) -> None:
    server.seen.answers = [(503, {"Retry-After": "3"})]
    run = deliver(server.url, event(2))
    assert [e.message_id for e in run.delivered] == ["client-002"]
    assert len(server.seen.requests) == 2
    assert run.sleeps and run.sleeps[0] >= 3.0  # not the 0.05 s backoff cap


def test_https_is_verified_against_ssl_cert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    srv = Server(tls)
    url = srv.url.replace("http://", "https://")
    try:
        # an unknown certificate: retried as a network failure, then dead-lettered, never sent
        run = deliver(url, event(3))
        [(_, error)] = run.undeliverable
        assert "certificate" in error.lower()
        assert srv.seen.requests == [] and run.delivered == []
        # trusted through SSL_CERT_FILE: delivered over TLS
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        run = deliver(url, event(4))
        assert [e.message_id for e in run.delivered] == ["client-004"]
        assert [r["headers"]["Idempotency-Key"] for r in srv.seen.requests] == ["client-004"]
    finally:
        srv.stop()


# --- the routed delivery's HTTP senders (connectors/notify/receivers/http.py, urllib3) ----------


def group(*instances: str) -> GroupNotification:
    alerts = tuple(
        alert_event(fingerprint=f"fp-{i}", labels=instance_labels(i), message_id=f"m-{i}") for i in instances
    )
    return GroupNotification("team", "{}:{}", (("alertname", "HighCPUUsage"),), alerts, alerts[0].at)


def sender_options() -> SenderOptions:
    return SenderOptions(retry=RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=2, deadline_s=None))


def no_sleep() -> Runtime:
    return Runtime(sleep=lambda _: None)


def test_sender_posts_json_over_reused_connections_and_rejects_a_redirect(server: Server) -> None:
    sender = notification_service_sender("svc", server.url, options=sender_options(), runtime=no_sleep())
    try:
        for n in range(3):
            assert sender.send(group(f"db-{n}a", f"db-{n}b")).delivered
        assert len(server.seen.requests) == 6
        for r in server.seen.requests:
            assert (r["method"], r["path"]) == ("POST", "/alerts")
            assert r["headers"]["Content-Type"] == "application/json"
            assert json.loads(r["body"])["message_id"] == r["headers"]["Idempotency-Key"]
        assert len({r["peer"] for r in server.seen.requests}) == 1  # one after the other: one connection
        target = Server()
        try:
            server.seen.answers = [(301, {"Location": target.url + "/alerts"})]
            out = sender.send(group("db-moved"))
            assert out.kind is OutcomeKind.REJECTED and out.error.startswith("HTTP 301")
            assert target.seen.requests == []
        finally:
            target.stop()
    finally:
        sender.close()


def test_sender_https_is_verified_against_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    srv = Server(tls)
    url = srv.url.replace("http://", "https://") + "/hook"
    try:
        sender = webhook_sender("hook", url, options=sender_options(), runtime=no_sleep())
        out = sender.send(group("db-tls"))
        sender.close()
        assert out.kind is OutcomeKind.RETRY_LATER and "certificate" in out.error.lower()
        assert srv.seen.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        sender = webhook_sender("hook", url, options=sender_options(), runtime=no_sleep())
        assert sender.send(group("db-tls")).delivered
        sender.close()
        assert [r["path"] for r in srv.seen.requests] == ["/hook"]
    finally:
        srv.stop()


def test_the_environment_proxy_is_used_and_no_proxy_is_honoured(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx honoured HTTP_PROXY; so does the aiohttp poster: the loopback server plays the proxy
    # for a host that does not resolve, and receives the absolute-URI request a proxy gets
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    run = deliver("http://notify.invalid", event(1))
    assert [e.message_id for e in run.delivered] == ["client-001"]
    assert [r["path"] for r in server.seen.requests] == ["http://notify.invalid/alerts"]
    # a host in NO_PROXY is posted to directly
    direct = Server()
    try:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        run = deliver(direct.url, event(2))
        assert [r["path"] for r in direct.seen.requests] == ["/alerts"]
        assert len(server.seen.requests) == 1
    finally:
        direct.stop()


def test_sender_goes_through_the_environment_proxy(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    sender = webhook_sender("hook", "http://hook.invalid/hook", options=sender_options(), runtime=no_sleep())
    try:
        assert sender.send(group("db-proxy")).delivered
    finally:
        sender.close()
    assert [r["path"] for r in server.seen.requests] == ["http://hook.invalid/hook"]
