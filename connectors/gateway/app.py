"""The gateway's HTTP layer: Starlette routes over the parsers and `GatewayProducer`.

  GET  /health /healthz /readyz /metrics                 open
  POST /metrics, /metrics/batch    seed JSON (the guide's labels form or the seed message)
  POST /api/v1/write               Prometheus remote_write 1.0 (snappy protobuf), 204
  POST /v1/metrics                 OTLP/HTTP metrics, protobuf or JSON

Valid items of a request are produced even when others are bad; the answer lists the bad ones
(JSON: 207 some / 400 none accepted; remote_write: 400 with the list, after producing the rest;
OTLP: 200 with `partial_success`). Accepted means durable: confirmed by Kafka, or fsynced in the
gateway's spool while Kafka is unreachable; a full spool (or no spool) -> 503 with Retry-After,
nothing of the request accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.api.auth import Authenticator
from connectors.errors import PoisonMessage
from connectors.gateway import otlp, remote_write
from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.parse import Defaults, Parsed, Record, json_items
from connectors.gateway.producer import SpoolFullUnavailableError, UnavailableError
from connectors.gateway.remote_write import BadRequestError, TooLargeError
from connectors.ops.asgi import RequestMetrics, read_body

log = logging.getLogger(__name__)

REALM: Final = 'Bearer realm="gds-gateway"'
RETRY_AFTER_S: Final = 5
MAX_ERRORS_SHOWN: Final = 100


class Sender(Protocol):
    async def send(self, records: Sequence[Record]) -> None: ...


def create_app(
    sender: Sender,
    *,
    defaults: Defaults,
    max_body_bytes: int,
    authenticator: Authenticator | None = None,
    metrics: GatewayMetrics | None = None,
    readiness: Callable[[], Awaitable[list[str]]] | None = None,
    clock: Callable[[], float] = time.time,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Starlette:
    """`authenticator` None: no auth (GATEWAY_TOKENS unset)."""
    gm = metrics or GatewayMetrics()

    def authorize(request: Request) -> None:
        if authenticator is None:
            return
        if authenticator.from_header(request.headers.get("authorization")) is None:
            raise HTTPException(
                401, "a bearer token is required (Authorization: Bearer <token>)", {"WWW-Authenticate": REALM}
            )

    async def deliver(endpoint: str, parsed: Parsed) -> None:
        """Produce the valid records (all confirmed or `UnavailableError`), and count."""
        try:
            await sender.send(parsed.records)
        except UnavailableError as exc:
            gm.unavailable.labels(endpoint).inc()
            if isinstance(exc, SpoolFullUnavailableError):
                gm.spool_full.labels(endpoint).inc()
            raise
        gm.accepted.labels(endpoint).inc(len(parsed.records))
        gm.rejected.labels(endpoint).inc(len(parsed.errors))
        if parsed.skipped:
            gm.skipped.labels(endpoint).inc(parsed.skipped)

    # ---------------------------------------------------------------- probes

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def health(request: Request) -> Response:
        problems = await readiness() if readiness is not None else []
        status = "unavailable" if problems else "ok"
        return JSONResponse({"status": status, "problems": problems}, status_code=503 if problems else 200)

    async def readyz(request: Request) -> Response:
        problems = await readiness() if readiness is not None else []
        if problems:
            return PlainTextResponse("not ready: " + "; ".join(problems) + "\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def own_metrics(request: Request) -> Response:
        return Response(generate_latest(gm.registry), media_type=CONTENT_TYPE_LATEST)

    # ---------------------------------------------------------------- seed JSON

    async def _json(request: Request, batch: bool) -> Response:
        authorize(request)
        body = await read_body(request, max_body_bytes, "GATEWAY_MAX_BODY_BYTES")
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, status_code=400)
        try:
            parsed = json_items(payload, clock(), defaults, batch=batch)
        except PoisonMessage as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        await deliver("batch" if batch else "metric", parsed)
        answer: dict[str, Any] = {"accepted": len(parsed.records), "rejected": len(parsed.errors)}
        if parsed.errors:
            answer["errors"] = [{"item": e.item, "error": e.error} for e in parsed.errors[:MAX_ERRORS_SHOWN]]
        status = 200 if not parsed.errors else 207 if parsed.records else 400
        return JSONResponse(answer, status_code=status)

    async def post_metric(request: Request) -> Response:
        return await _json(request, batch=False)

    async def post_batch(request: Request) -> Response:
        return await _json(request, batch=True)

    # ---------------------------------------------------------------- remote_write

    async def remote_write_endpoint(request: Request) -> Response:
        authorize(request)
        body = await read_body(request, max_body_bytes, "GATEWAY_MAX_BODY_BYTES")
        encoding = request.headers.get("content-encoding", "snappy").lower()
        if encoding != "snappy":
            return PlainTextResponse(
                f"Content-Encoding {encoding!r}: remote_write 1.0 bodies are snappy\n", status_code=415
            )
        try:
            raw = remote_write.decompress(body, max_body_bytes)
            parsed = remote_write.samples(remote_write.decode(raw), clock(), defaults)
        except TooLargeError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=413)
        except BadRequestError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        await deliver("remote_write", parsed)
        if parsed.errors:  # the valid samples are in Kafka; Prometheus drops the batch (nothing to retry)
            shown = "\n".join(e.text() for e in parsed.errors[:MAX_ERRORS_SHOWN])
            return PlainTextResponse(
                f"{len(parsed.errors)} sample(s) refused, {len(parsed.records)} accepted:\n{shown}\n",
                status_code=400,
            )
        return Response(status_code=204)

    # ---------------------------------------------------------------- OTLP

    async def otlp_endpoint(request: Request) -> Response:
        authorize(request)
        content_type = request.headers.get("content-type", otlp.PROTOBUF).split(";")[0].strip().lower()
        if content_type not in (otlp.JSON, otlp.PROTOBUF):
            return PlainTextResponse(
                f"Content-Type {content_type!r}: send {otlp.PROTOBUF} or {otlp.JSON}\n", status_code=415
            )
        body = await read_body(request, max_body_bytes, "GATEWAY_MAX_BODY_BYTES")
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = _gunzip(body, max_body_bytes)
        try:
            parsed = otlp.samples(otlp.decode(body, content_type), clock(), defaults)
        except BadRequestError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        await deliver("otlp", parsed)
        return Response(otlp.response(parsed, content_type), media_type=content_type)

    # ---------------------------------------------------------------- errors

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    unavailable_log = {"next": 0.0, "quiet": 0}  # one line per minute in an outage, not per request

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        now = time.monotonic()
        if now >= unavailable_log["next"]:
            more = (
                f" ({unavailable_log['quiet']} more 503s since the last line)"
                if unavailable_log["quiet"]
                else ""
            )
            log.warning("%s %s: 503: %s%s", request.method, request.url.path, exc, more)
            unavailable_log.update(next=now + 60.0, quiet=0)
        else:
            unavailable_log["quiet"] += 1
        return JSONResponse(
            {"error": f"Kafka is not available, nothing was accepted; retry later: {exc}"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    routes = [
        Route("/health", health),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", own_metrics, methods=["GET"]),
        Route("/metrics", post_metric, methods=["POST"]),
        Route("/metrics/batch", post_batch, methods=["POST"]),
        Route("/api/v1/write", remote_write_endpoint, methods=["POST"]),
        Route("/v1/metrics", otlp_endpoint, methods=["POST"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for start in on_startup:
            await start()
        try:
            yield
        finally:
            for stop in on_shutdown:
                await stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: on_http, UnavailableError: on_unavailable},
    )
    app.add_middleware(RequestMetrics, requests=gm.requests, latency=gm.latency)
    return app


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """OTLP exporters compress with gzip when told to; bounded like the body."""
    import zlib

    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise HTTPException(400, f"Content-Encoding gzip: {exc}") from None
    if len(out) > max_bytes:
        raise HTTPException(413, f"the body decompresses to more than {max_bytes} bytes")
    return out
