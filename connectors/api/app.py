"""The HTTP layer: Starlette routes over `ControlService`, auth, limits, errors, metrics.

Route table (docs/api.md has the details):
  /healthz /readyz /metrics                          open
  GET  /api/v2/status|silences|silence/{id}|alerts  read      (Alertmanager API v2, for amtool)
  POST /api/v2/silences, DELETE /api/v2/silence/{id} write
  GET  /api/v1/alerts|history|audit|alerts/{fp}/timeline  read
  POST|DELETE /api/v1/alerts/{fp}/ack                write
  POST /webhook/proxy                                write
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.api import amv2
from connectors.api.auth import ANONYMOUS, Authenticator, Principal
from connectors.api.auth import Scope as TokenScope
from connectors.api.query import parse_audit, parse_history
from connectors.api.service import ConflictError, ControlService, NotFoundError, UnavailableError
from connectors.api.store import StoreError
from connectors.ops.asgi import RequestMetrics, read_body
from rules.control.events import ControlError

log = logging.getLogger(__name__)

MAX_BODY: Final = 1024 * 1024
REALM: Final = 'Bearer realm="gds"'
READ, WRITE = TokenScope.READ, TokenScope.WRITE


class Auth:
    """Checks a request's bearer token against a scope; the console uses it too."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def principal(self, request: Request) -> Principal | None:
        return self.authenticator.from_header(request.headers.get("authorization"))

    def require(self, request: Request, need: TokenScope) -> Principal:
        """The caller, or HTTPException 401 (no or unknown token) / 403 (read token on a write)."""
        principal = self.principal(request)
        if principal is None:
            anonymous = self.authenticator.anonymous_read and not request.headers.get("authorization")
            if need is READ and anonymous:
                return ANONYMOUS
            raise HTTPException(
                401, "a bearer token is required (Authorization: Bearer <token>)", {"WWW-Authenticate": REALM}
            )
        if not principal.scope.allows(need):
            raise HTTPException(
                403, f"token {principal.name!r} has scope {principal.scope.value}; this needs write"
            )
        return principal


async def read_json(request: Request) -> Any:
    """The body as JSON, at most MAX_BODY bytes; ControlError (400) or 413 otherwise."""
    body = await read_body(request, MAX_BODY)
    if not body:
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ControlError(f"the body is not JSON: {str(exc)[:200]}") from None


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise ControlError(f"{name}: true or false")
    return raw.lower() == "true"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    service: ControlService,
    auth: Auth,
    *,
    readiness: Callable[[], Awaitable[list[str]]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Starlette:
    """The API's app. `readiness` returns what is not ready (empty: ready); `extra_routes` are
    mounted beside the API (the console's)."""

    # ---------------------------------------------------------------- probes

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        problems = await readiness() if readiness is not None else []
        if problems:
            return PlainTextResponse("not ready: " + "; ".join(problems) + "\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ---------------------------------------------------------------- Alertmanager v2

    async def am_status(request: Request) -> Response:
        auth.require(request, READ)
        return JSONResponse(amv2.status_json(service.started))

    async def am_receivers(request: Request) -> Response:
        auth.require(request, READ)
        return JSONResponse([{"name": amv2.RECEIVER}])

    async def list_silences(request: Request) -> Response:
        auth.require(request, READ)
        filters = amv2.parse_filters(request.query_params.getlist("filter"))
        now = service.clock()
        return JSONResponse([amv2.silence_json(s, now) for s in service.list_silences(filters)])

    async def post_silence(request: Request) -> Response:
        who = auth.require(request, WRITE)
        body = await read_json(request)
        silence = await service.create_or_update_silence(body, who.name)
        return JSONResponse({"silenceID": silence.id})

    async def get_silence(request: Request) -> Response:
        auth.require(request, READ)
        silence = service.get_silence(request.path_params["silence_id"])
        return JSONResponse(amv2.silence_json(silence, service.clock()))

    async def delete_silence(request: Request) -> Response:
        who = auth.require(request, WRITE)
        await service.expire_silence(request.path_params["silence_id"], who.name)
        return Response(status_code=200)

    async def am_alerts(request: Request) -> Response:
        auth.require(request, READ)
        filters = amv2.parse_filters(request.query_params.getlist("filter"))
        active = _flag(request, "active", True)
        silenced = _flag(request, "silenced", True)
        inhibited = _flag(request, "inhibited", True)
        _flag(request, "unprocessed", True)  # checked; nothing of ours is unprocessed
        alerts = await service.current_alerts(filters)
        chosen = [
            a for a in alerts if amv2.keep_alert(a, active=active, silenced=silenced, inhibited=inhibited)
        ]
        return JSONResponse([amv2.alert_json(a) for a in chosen])

    # ---------------------------------------------------------------- ours

    async def current(request: Request) -> Response:
        auth.require(request, READ)
        filters = amv2.parse_filters(request.query_params.getlist("filter"))
        alerts = await service.current_alerts(filters)
        return JSONResponse({"alerts": [amv2.alert_json(a) for a in alerts]})

    async def ack(request: Request) -> Response:
        who = auth.require(request, WRITE)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ControlError('expected a JSON object, e.g. {"comment": "on it"}')
        fp = request.path_params["fingerprint"]
        comment = body.get("comment", "")
        if request.method == "DELETE":
            event = await service.unacknowledge(fp, who.name, comment)
        else:
            event = await service.acknowledge(fp, who.name, comment)
        return JSONResponse(
            {
                "fingerprint": event.fingerprint,
                "acknowledged": event.acked,
                "by": event.by,
                "comment": event.comment,
            }
        )

    async def timeline(request: Request) -> Response:
        auth.require(request, READ)
        return JSONResponse(await service.timeline(request.path_params["fingerprint"]))

    async def history(request: Request) -> Response:
        auth.require(request, READ)
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        page, cursor = await service.history(parse_history(params))
        return JSONResponse({"events": page, "next": cursor})

    async def audit(request: Request) -> Response:
        auth.require(request, READ)
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        page, cursor = await service.audit(parse_audit(params))
        return JSONResponse({"entries": page, "next": cursor})

    async def webhook_proxy(request: Request) -> Response:
        who = auth.require(request, WRITE)
        payload = await read_json(request)
        received, inserted = await service.proxy_webhook(payload, who.name)
        return JSONResponse({"received": received, "inserted": inserted})

    # ---------------------------------------------------------------- errors

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def on_control(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, ConflictError) else 400
        return _error(status, str(exc))

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(503, str(exc))

    async def on_postgres(request: Request, exc: Exception) -> Response:
        # bad user input PostgreSQL caught (e.g. a regex its engine refuses) is the caller's; the rest is ours
        if isinstance(exc, asyncpg.DataError | asyncpg.exceptions.InvalidRegularExpressionError):
            return _error(400, f"refused by PostgreSQL: {str(exc)[:300]}")
        log.warning("%s %s: PostgreSQL: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        if isinstance(exc, asyncpg.PostgresError) and not isinstance(
            exc, asyncpg.exceptions.PostgresConnectionError | asyncpg.exceptions.CannotConnectNowError
        ):
            return _error(500, "the query failed (a bug of ours: the log has the reason)")
        return _error(503, "PostgreSQL is not available; retry later")

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/v2/status", am_status),
        Route("/api/v2/receivers", am_receivers),
        Route("/api/v2/silences", list_silences, methods=["GET"]),
        Route("/api/v2/silences", post_silence, methods=["POST"]),
        Route("/api/v2/silence/{silence_id}", get_silence, methods=["GET"]),
        Route("/api/v2/silence/{silence_id}", delete_silence, methods=["DELETE"]),
        Route("/api/v2/alerts", am_alerts, methods=["GET"]),
        Route("/api/v1/alerts", current, methods=["GET"]),
        Route("/api/v1/alerts/{fingerprint}/ack", ack, methods=["POST", "DELETE"]),
        Route("/api/v1/alerts/{fingerprint}/timeline", timeline, methods=["GET"]),
        Route("/api/v1/history", history, methods=["GET"]),
        Route("/api/v1/audit", audit, methods=["GET"]),
        Route("/webhook/proxy", webhook_proxy, methods=["POST"]),
        *extra_routes,
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for start in on_startup:
            await start()
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            for stop in on_shutdown:
                await stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: on_http,
            ControlError: on_control,
            UnavailableError: on_unavailable,
            StoreError: on_unavailable,
            asyncpg.PostgresError: on_postgres,
            asyncpg.InterfaceError: on_postgres,
            OSError: on_postgres,
        },
    )
    app.add_middleware(RequestMetrics, requests=service.metrics.requests, latency=service.metrics.latency)
    return app
