"""The notify sink's HTTP client (`Http1Poster`) and the routed senders' (urllib3) on the wire,
against real loopback servers.

What the sink promises regardless of the client it uses: the request (POST, JSON body equal to the
payload, Content-Type, Idempotency-Key = message_id) over reused keep-alive connections, no
redirect followed (a 3xx is a rejection), Retry-After honoured on 503, and TLS checked against the
CAs of SSL_CERT_FILE (an unknown certificate is never sent a notification).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import socketserver
import ssl
import threading
import time
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
from tests.support.loopback import LoopbackServer, LoopbackTCPServer
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
    # httpx honoured HTTP_PROXY; so does the sink's poster: the loopback server plays the proxy
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


# --- the sink's client when the other side misbehaves: a raw loopback server, scripted ----------


def _read_head(rfile: Any) -> bytes | None:
    """A request's head, up to its blank line; None when the client closed first."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = rfile.readline()
        if not line:
            return None
        head += line
    return head


class RawServer(LoopbackTCPServer):
    """Answers each request by the next action of `script` (then "ok"), byte for byte:
    ok | ok_then_close | close | garbage | unframed_400 | silent | interim."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []  # each request's head
        self.connections = 0
        self.closed_by_client = 0  # connections the client closed while an answer was due
        self.lock = threading.Lock()
        super().__init__(0, _RawHandler, "notify-client-raw")


class _RawHandler(socketserver.StreamRequestHandler):
    server: RawServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        while True:
            head = _read_head(self.rfile)
            if head is None:
                return
            length = next(
                (
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                ),
                0,
            )
            self.rfile.read(length)
            with self.server.lock:
                self.server.requests.append(head)
                action = self.server.script.pop(0) if self.server.script else "ok"
            if action == "close":
                return
            if action == "garbage":
                self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
                return
            if action == "unframed_400":  # no Content-Length: the body ends with the connection
                self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nbad labels: severity")
                return
            if action == "silent":  # no answer: wait for the client to give up and close
                if self.rfile.read(1) == b"":
                    with self.server.lock:
                        self.server.closed_by_client += 1
                return
            if action == "interim":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if action == "ok_then_close":  # says close, and leaves the closing to the client
                self.wfile.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                continue
            self.wfile.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture()
def raw() -> Iterator[RawServer]:
    srv = RawServer()
    yield srv
    srv.stop()


def test_a_connection_closed_before_the_answer_is_retried_on_a_new_one(raw: RawServer) -> None:
    raw.script = ["close"]
    run = deliver(raw.url, event(1))
    assert [e.message_id for e in run.delivered] == ["client-001"]
    assert len(raw.requests) == 2 and raw.connections == 2 and len(run.sleeps) == 1


def test_an_answer_that_is_not_http_is_retried(raw: RawServer) -> None:
    raw.script = ["garbage", "garbage", "garbage"]  # every attempt of the three
    run = deliver(raw.url, event(1))
    [(_, error)] = run.undeliverable
    assert "ProtocolError" in error and "not an HTTP answer" in error
    assert len(raw.requests) == 3 and run.delivered == []


def test_an_answer_without_a_length_is_read_to_the_close(raw: RawServer) -> None:
    raw.script = ["unframed_400"]
    run = deliver(raw.url, event(1))
    [(_, error)] = run.undeliverable
    assert error == "HTTP 400: bad labels: severity"  # a 4xx: rejected at once, its body quoted
    assert len(raw.requests) == 1


def test_connections_are_kept_unless_the_server_closes_them(raw: RawServer) -> None:
    run = Run()
    part = partition(raw.url, run, max_in_flight=1)
    try:
        for n in range(3):  # keep-alive: one connection for three batches
            part.write_batch([event(n)])
        raw.script = ["ok_then_close"]
        for n in range(3, 5):  # `Connection: close` is honoured: the next post connects again
            part.write_batch([event(n)])
    finally:
        part.close()
    assert len(run.delivered) == 5 and run.undeliverable == []
    assert raw.connections == 2 and len(raw.requests) == 5 and run.sleeps == []  # no post failed


def test_an_unanswered_post_times_out_and_is_retried(raw: RawServer) -> None:
    raw.script = ["silent"]
    run = Run()
    part = partition(raw.url, run, timeout_s=0.5)
    try:
        part.write_batch([event(1)])
        # the timed-out connection is closed, not left open (nor reused: its answer may still come)
        deadline = time.monotonic() + 10
        while raw.closed_by_client == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        part.close()
    assert [e.message_id for e in run.delivered] == ["client-001"]
    assert len(raw.requests) == 2 and raw.connections == 2 and len(run.sleeps) == 1
    assert raw.closed_by_client == 1


def test_an_interim_100_answer_is_skipped_for_the_real_one(raw: RawServer) -> None:
    raw.script = ["interim"]
    run = deliver(raw.url, event(1))
    assert [e.message_id for e in run.delivered] == ["client-001"] and len(raw.requests) == 1


def test_a_header_with_a_line_break_is_never_sent(raw: RawServer) -> None:
    from connectors.notify.http1 import Http1Poster

    async def post() -> None:
        poster = Http1Poster(2.0, 1)
        try:
            await poster.post(raw.url + "/alerts", b"{}", {"Idempotency-Key": "a\r\nX-Injected: 1"})
        finally:
            await poster.aclose()

    with pytest.raises(ValueError, match="line break"):
        asyncio.run(post())
    assert raw.requests == []


class ConnectProxy(LoopbackTCPServer):
    """A CONNECT proxy: records each tunnel's request head, then relays bytes both ways
    (`refuse`: answers 407 instead)."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[str] = []
        super().__init__(0, _TunnelHandler, "notify-client-proxy")


class _TunnelHandler(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        head = _read_head(self.rfile)
        if head is None:
            return
        self.server.heads.append(head.decode())
        if self.server.refuse:
            self.wfile.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        threading.Thread(target=pipe, args=(upstream, self.connection), daemon=True).start()
        pipe(self.connection, upstream)


def test_https_goes_through_a_connect_tunnel_of_the_environment_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    srv, proxy = Server(tls), ConnectProxy()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.setenv("HTTPS_PROXY", f"http://ops:s%40cret@127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("NO_PROXY", "")
        url = srv.url.replace("http://", "https://")
        run = deliver(url, event(5))
        assert [e.message_id for e in run.delivered] == ["client-005"]
        [head] = proxy.heads
        port = srv.server_address[1]
        assert head.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n")
        assert f"Proxy-Authorization: Basic {base64.b64encode(b'ops:s@cret').decode()}" in head
        # inside the tunnel, TLS to the target itself: the request in origin form
        assert [r["path"] for r in srv.seen.requests] == ["/alerts"]
    finally:
        srv.stop()
        proxy.stop()


def test_a_refused_tunnel_is_retried_then_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ConnectProxy(refuse=True)
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("NO_PROXY", "")
        run = deliver("https://notify.invalid", event(6))
        [(_, error)] = run.undeliverable
        assert "proxy refused CONNECT notify.invalid:443: HTTP 407" in error
        assert len(proxy.heads) == 3  # every attempt tried the tunnel again
    finally:
        proxy.stop()


def test_credentials_in_the_url_go_as_basic_auth(server: Server) -> None:
    port = server.server_address[1]
    run = deliver(f"http://ops:s%40cret@127.0.0.1:{port}", event(7))
    assert [e.message_id for e in run.delivered] == ["client-007"]
    [request] = server.seen.requests
    assert request["headers"]["Authorization"] == f"Basic {base64.b64encode(b'ops:s@cret').decode()}"
    assert request["headers"]["Host"] == f"127.0.0.1:{port}"  # never the credentials
