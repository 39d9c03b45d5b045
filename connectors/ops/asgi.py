"""What the HTTP services (the control-plane API, the metrics gateway) share: requests and latency
by route, and a bounded read of a request body."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def read_body(request: Request, max_bytes: int, setting: str = "") -> bytes:
    """The body, at most `max_bytes`; 413 otherwise.

    A larger body is read (and dropped) to its end first, up to 16x, so the client is sending no
    more when the 413 comes: an answer before the end of its upload reaches it as a broken pipe.
    A body declared larger than that is refused at once (the connection is closed under it)."""
    drain_limit = 16 * max_bytes
    hint = f" ({setting})" if setting else ""
    too_large = HTTPException(413, f"body larger than {max_bytes} bytes{hint}")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > drain_limit):
        raise too_large
    body = bytearray()
    drained = 0
    async for chunk in request.stream():
        if drained or len(body) + len(chunk) > max_bytes:
            drained += len(chunk)
            if drained > drain_limit:
                raise too_large
            continue
        body += chunk
    if drained:
        raise too_large
    return bytes(body)


class RequestMetrics:
    """ASGI middleware: `requests{route, method, status}` and `latency{route}`, the route being the
    endpoint's name ('unmatched' for a 404 of no route)."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("endpoint"), "__name__", "unmatched")
            self.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
