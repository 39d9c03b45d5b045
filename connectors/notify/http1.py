"""The notification sink's HTTP/1.1 client: asyncio transports, httptools' parser (llhttp, in C).

Why not aiohttp, the sink's client before: delivery shares the GIL with the evaluation, so every
microsecond of the client's Python is a microsecond the job does not evaluate, and on a worker
that is always computing, each GIL hand-off to the sink's loop thread costs more again. aiohttp
spends its Python on what a notification never needs (cookies, redirects, tracing signals, URL
normalisation, multipart); this client writes one request and reads one answer per POST. Same
run, 2,000 posts (bench/notify_client.py): the sink spent 82 us of CPU a post on it, 142 us on
aiohttp. In the inline job (1M messages, 5,859 posts, alternated bounded runs, medians of 3) the
delivery's extra wall time over the job writing the alerts topic only went from 1.6 s to 1.1 s.

What it does, as the sink needs it (and as httpx and aiohttp did it for the sink):
- POST over keep-alive connections per origin, at most `max_connections` kept idle; a connection
  the server closed (or said `Connection: close` on) is never reused.
- `timeout_s` bounds an attempt as a whole: connect, TLS, proxy tunnel, send, answer.
- TLS verified against `tls_context()` (SSL_CERT_FILE, else certifi), SNI to the URL's host;
  credentials in the URL go as `Authorization: Basic`.
- HTTP_PROXY / HTTPS_PROXY / NO_PROXY, looked up once per URL: an `http://` target through a
  proxy gets the absolute-URI request, an `https://` target a CONNECT tunnel, then TLS to the
  target; credentials in the proxy URL go as `Proxy-Authorization: Basic`.
- No redirect is followed: a 3xx is an answer like any other (the sink rejects it).
- Errors are exceptions the sink classifies as retryable: `OSError` (refused, reset, closed
  before the answer, TLS failures), `TimeoutError`, `ProtocolError` (an answer that is not HTTP,
  a refused tunnel).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

from connectors.notify.receivers.base import env_proxy, tls_context


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read, or a proxy refused the tunnel."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What delivery reads of an answer: the status, Retry-After, and the body when not 2xx."""

    status: int
    retry_after: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Route:
    """How one URL is reached: where to connect, whether to tunnel, what to send."""

    connect_host: str
    connect_port: int
    connect_tls: bool  # TLS to what we connect to (the target, or an https:// proxy)
    tunnel: bool  # CONNECT through the proxy, then TLS to the target
    host: str  # the target's host name (SNI, certificate check)
    authority: str  # the target's host:port, as CONNECT names it
    head: bytes  # "POST <target> HTTP/1.1\r\nHost: ..\r\n" + fixed headers, up to the variable part
    proxy_auth: str | None

    @property
    def pool_key(self) -> tuple[str, int, bool, bool, str]:
        return (self.connect_host, self.connect_port, self.connect_tls, self.tunnel, self.host)


def _basic(user: str, password: str | None) -> str:
    creds = f"{unquote(user)}:{unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(creds).decode("ascii")


def _route(url: str, proxy: str | None) -> _Route:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"notify: cannot POST to {url!r}: an http:// or https:// URL is needed")
    https = u.scheme == "https"
    port = u.port or (443 if https else 80)
    host_port = u.netloc.rpartition("@")[2]  # as written: an IPv6 literal keeps its brackets
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    auth = None
    if proxy is None:
        connect_host, connect_port, connect_tls, tunnel = u.hostname, port, https, False
    else:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ValueError(
                f"notify: proxy {proxy!r} for {url!r}: an http:// or https:// proxy URL is needed"
            )
        connect_host, connect_port = p.hostname, p.port or (443 if p.scheme == "https" else 80)
        connect_tls, tunnel = p.scheme == "https", https
        if p.username is not None:
            auth = _basic(p.username, p.password)
        if not https:  # a plain-HTTP target: the proxy gets the absolute URI
            target = f"http://{host_port}{target}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_port}", "Content-Type: application/json"]
    if u.username is not None:  # credentials in the URL: Basic auth, as httpx and aiohttp sent them
        lines.append(f"Authorization: {_basic(u.username, u.password)}")
    if auth is not None and not tunnel:
        lines.append(f"Proxy-Authorization: {auth}")
    head = ("\r\n".join(lines) + "\r\n").encode("ascii")
    authority = f"[{u.hostname}]:{port}" if ":" in u.hostname else f"{u.hostname}:{port}"
    return _Route(connect_host, connect_port, connect_tls, tunnel, u.hostname, authority, head, auth)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, its answer parsed as it comes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._retry_after: str | None = None
        self._body: list[bytes] = []
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the answer's end is known
        self._keep_alive = True

    def expect(self, waiter: asyncio.Future[Reply]) -> None:
        self._waiter = waiter
        self._retry_after, self._body, self._headers_done, self._framed = None, [], False, False

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"not an HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed connection is not reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._framed:
                self._complete()  # an answer without a length ends with the connection
            else:
                self._waiter.set_exception(exc or ConnectionResetError("connection closed before the answer"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete()

    # --
    def _complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._retry_after, self._body, self._headers_done, self._framed = None, [], False, False
            return
        text = "" if 200 <= status < 300 else b"".join(self._body).decode("utf-8", "replace")
        if not self._keep_alive:
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(status, self._retry_after, text))

    def _fail(self, exc: BaseException) -> None:
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _TunnelAnswer:
    """httptools callbacks for a proxy's answer to CONNECT."""

    def __init__(self) -> None:
        self.done = False

    def on_headers_complete(self) -> None:
        self.done = True


class Http1Poster:
    """The default `Poster` of `NotifyPartition`: used on the partition's loop only."""

    def __init__(self, timeout_s: float, max_connections: int) -> None:
        self._timeout_s = timeout_s
        self._max_idle = max_connections
        self._routes: dict[str, _Route] = {}
        self._idle: dict[tuple[str, int, bool, bool, str], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        route = self._routes.get(url)
        if route is None:
            route = self._routes[url] = _route(url, env_proxy(url))
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if extra.count("\n") != len(headers) or extra.count("\r") != len(headers):
            raise ValueError(f"notify: a header carries a line break: {dict(headers)!r}")
        request = b"".join(
            (route.head, f"Content-Length: {len(body)}\r\n{extra}\r\n".encode("latin-1"), body)
        )
        async with asyncio.timeout(self._timeout_s):
            conn = self._take(route) or await self._open(route)
            self._busy.add(conn)
            try:
                waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
                conn.expect(waiter)
                assert conn.transport is not None
                conn.transport.write(request)
                answer = await waiter
            except BaseException:
                conn.close()  # a request cut short leaves the connection in an unknown state
                raise
            finally:
                self._busy.discard(conn)
        self._give_back(route, conn)
        return answer

    def _take(self, route: _Route) -> _Connection | None:
        idle = self._idle.get(route.pool_key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def _give_back(self, route: _Route, conn: _Connection) -> None:
        if conn.closed:
            return
        idle = self._idle.setdefault(route.pool_key, [])
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context()
        return self._tls

    async def _open(self, route: _Route) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if route.connect_tls else None
        hostname = route.connect_host if route.connect_tls else None
        transport, conn = await loop.create_connection(
            _Connection, route.connect_host, route.connect_port, ssl=tls, server_hostname=hostname
        )
        if not route.tunnel:
            return conn
        try:
            await self._tunnel(conn, route)
            tls_transport = await loop.start_tls(
                transport, conn, self._tls_context(), server_hostname=route.host
            )
        except BaseException:
            conn.close()
            raise
        assert tls_transport is not None
        conn.transport = tls_transport
        return conn

    async def _tunnel(self, conn: _Connection, route: _Route) -> None:
        """CONNECT host:port through the proxy; the connection then carries TLS to the target."""
        loop = asyncio.get_running_loop()
        answer = _TunnelAnswer()
        parser = httptools.HttpResponseParser(answer)
        done: asyncio.Future[int] = loop.create_future()
        authority = route.authority
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if route.proxy_auth is not None:
            lines.append(f"Proxy-Authorization: {route.proxy_auth}")
        original = conn.data_received

        def on_data(data: bytes) -> None:
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                if not done.done():
                    done.set_exception(ProtocolError(f"proxy: not an HTTP answer to CONNECT: {exc}"))
                return
            if answer.done and not done.done():
                done.set_result(parser.get_status_code())

        conn.data_received = on_data  # type: ignore[method-assign]
        try:
            assert conn.transport is not None
            conn.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
            status = await done
        finally:
            conn.data_received = original  # type: ignore[method-assign]
        if not 200 <= status < 300:
            raise ProtocolError(f"proxy refused CONNECT {authority}: HTTP {status}")

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        for conn in self._busy:
            conn.close()
        self._idle.clear()
        self._busy.clear()
