"""The web console: server-rendered pages over the same `ControlService` the API calls.

Pages: firing alerts (silence, acknowledge), silences (expire), history with filters, and a
per-alert timeline. No JavaScript: every action is a POST form, answered with a redirect.

Browser auth: the user pastes an API token once; it is kept in an HttpOnly, SameSite=Strict
cookie (Secure over https) and checked like a bearer token on every request (read pages need
read, actions need write). Every form carries a CSRF token, an HMAC keyed by the cookie's token,
so a page of another site can neither read nor forge it; a POST without it is refused (403).
Every action goes through the service, so it is audited exactly like an API write.

Everything user-controlled (labels, comments, matchers, annotations) reaches HTML through Jinja
with autoescape on; the Content-Security-Policy forbids scripts as a second line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import asyncpg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from connectors.api.amv2 import CurrentAlert
from connectors.api.auth import ANONYMOUS, Authenticator, Principal, Scope
from connectors.api.query import STATES, parse_history
from connectors.api.service import ConflictError, ControlService, NotFoundError, UnavailableError
from connectors.api.store import StoreError
from rules.control.events import ControlError, SilenceEvent, matcher_to_json
from rules.duration import parse_duration
from rules.metric import iso
from rules.model import Matcher

if TYPE_CHECKING:
    from connectors.api.app import Auth

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).parent
COOKIE: Final = "gds_console"
COOKIE_MAX_AGE_S: Final = 12 * 3600
MAX_FORM_BYTES: Final = 64 * 1024
MAX_MATCHERS: Final = 20
OPERATORS: Final = ("=", "!=", "=~", "!~")
OP_OF: Final = {(False, False): "=", (False, True): "!=", (True, False): "=~", (True, True): "!~"}
SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}
DEFAULT_SILENCE: Final = "2h"
MAX_SILENCE_S: Final = 366 * 86400.0
CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


# --------------------------------------------------------------------------- pure helpers


def csrf_token(secret: str) -> str:
    """The form token of a session: keyed by the session's API token, so only a page that
    was served to that session has it, every replica computes the same one, and it reveals
    nothing of the token."""
    key = hashlib.sha256(("gds-console:" + secret).encode("utf-8", "surrogatepass")).digest()
    return hmac.new(key, b"csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, sent: object) -> bool:
    return bool(secret) and isinstance(sent, str) and hmac.compare_digest(csrf_token(secret or ""), sent)


def matcher_text(m: Matcher) -> str:
    """amtool's spelling: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""
    return f'{m.name}{OP_OF[(m.regex, m.negate)]}"{m.value}"'


def fmt_value(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.6g}"


def safe_next(prefix: str, raw: str | None) -> str:
    """Only a console path: a sign-in link must not redirect to another site."""
    if raw and raw.startswith(prefix + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return prefix + "/alerts"


@dataclass(frozen=True, slots=True)
class Badge:
    text: str
    css: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class AlertView:
    fingerprint: str
    alert_name: str
    severity: str
    severity_css: str
    summary: str
    labels: tuple[tuple[str, str], ...]
    since: str
    value: str
    statuses: tuple[Badge, ...]
    acked: bool
    ack_comment: str
    css: str


def alert_view(a: CurrentAlert) -> AlertView:
    badges: list[Badge] = []
    muted = bool(a.silenced_by) or a.suppressed is not None
    if a.silenced_by:
        badges.append(Badge("silenced", "silenced", "by " + ", ".join(a.silenced_by)))
    if a.suppressed is not None:
        badges.append(Badge(a.suppressed, "silenced", "suppressed by the alerting job"))
    if not muted:
        badges.append(Badge("firing", "firing"))
    if a.acked_by is not None:
        when = iso(a.acked_at) if a.acked_at is not None else ""
        badges.append(Badge(f"acknowledged by {a.acked_by}", "acked", when))
    css = "muted" if muted else "acked" if a.acked_by is not None else "firing"
    sev = a.severity.lower()
    return AlertView(
        fingerprint=a.fingerprint,
        alert_name=a.alert_name,
        severity=a.severity,
        severity_css=sev if sev in ("critical", "warning", "info") else "other",
        summary=str(a.annotations.get("summary", "")),
        labels=tuple(sorted((k, v) for k, v in a.labels.items() if k != "alertname")),
        since=iso(a.active_at),
        value=fmt_value(a.value),
        statuses=tuple(badges),
        acked=a.acked_by is not None,
        ack_comment=a.ack_comment,
        css=css,
    )


@dataclass(frozen=True, slots=True)
class SilenceView:
    id: str
    matchers: tuple[str, ...]
    starts: str
    ends: str
    created_by: str
    comment: str
    maintenance: bool


def silence_groups(silences: Sequence[SilenceEvent], now: float) -> list[tuple[str, list[SilenceView]]]:
    """Active, pending, expired (in that order), each in Alertmanager's order."""
    groups: dict[str, list[SilenceView]] = {"active": [], "pending": [], "expired": []}
    order = {"active": 0, "pending": 1, "expired": 2}

    def key(s: SilenceEvent) -> tuple[int, float, str]:
        state = s.state(now)
        t = s.ends_at if state == "active" else s.starts_at if state == "pending" else -s.ends_at
        return order[state], t, s.id

    for s in sorted(silences, key=key):
        groups[s.state(now)].append(
            SilenceView(
                id=s.id,
                matchers=tuple(matcher_text(m) for m in s.matchers),
                starts=iso(s.starts_at),
                ends=iso(s.ends_at),
                created_by=s.created_by,
                comment=s.comment,
                maintenance=s.maintenance,
            )
        )
    return list(groups.items())


@dataclass(frozen=True, slots=True)
class MatcherRow:
    name: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class SilenceForm:
    matchers: tuple[MatcherRow, ...]
    duration: str
    comment: str


def prefilled(labels: Mapping[str, str]) -> SilenceForm:
    """Equality matchers on every label of the alert, plus two empty rows to add more."""
    rows = [MatcherRow(k, "=", v) for k, v in sorted(labels.items())]
    return SilenceForm(tuple(rows + [MatcherRow("", "=", "")] * 2), DEFAULT_SILENCE, "")


def silence_request(form: Mapping[str, str], *, author: str, now: float) -> dict[str, Any]:
    """The form as an API v2 PostableSilence (the service checks it further); `ControlError`
    says what to fix. Starts now, ends after the duration; the author is the signed-in token."""
    matchers: list[dict[str, Any]] = []
    for i in range(MAX_MATCHERS):
        name = form.get(f"m{i}_name", "").strip()
        if not name:
            continue
        op = form.get(f"m{i}_op", "=")
        if op not in OPERATORS:
            raise ControlError(f"matcher {name}: operator must be one of {' '.join(OPERATORS)}")
        m = Matcher(name, form.get(f"m{i}_value", ""), "~" in op, op.startswith("!"))
        matchers.append(matcher_to_json(m))
    if not matchers:
        raise ControlError("matchers: give at least one label name and value")
    try:
        duration = parse_duration(form.get("duration", "").strip())
    except ValueError as exc:
        raise ControlError(f"duration: {exc}") from None
    if not 0 < duration <= MAX_SILENCE_S:
        raise ControlError("duration: more than 0 and at most 366d")
    comment = form.get("comment", "").strip()
    if not comment:
        raise ControlError("comment: say why (it is shown to everyone the silence mutes)")
    return {
        "matchers": matchers,
        "startsAt": iso(now),
        "endsAt": iso(now + duration),
        "createdBy": author,
        "comment": comment,
    }


def form_back(form: SilenceForm, raw: Mapping[str, str]) -> SilenceForm:
    """The submitted form again (after an error), keeping what the user typed."""
    rows = []
    for i in range(MAX_MATCHERS):
        if f"m{i}_name" in raw:
            rows.append(
                MatcherRow(raw.get(f"m{i}_name", ""), raw.get(f"m{i}_op", "="), raw.get(f"m{i}_value", ""))
            )
    return SilenceForm(
        tuple(rows) or form.matchers, raw.get("duration", form.duration), raw.get("comment", "")
    )


@dataclass(frozen=True, slots=True)
class EventView:
    fingerprint: str
    alert_name: str
    state: str
    state_css: str
    at: str
    severity: str
    severity_css: str
    labels: tuple[tuple[str, str], ...]
    value: str
    threshold: str
    note: str


def _sev_css(severity: object) -> str:
    sev = str(severity or "").lower()
    return sev if sev in ("critical", "warning", "info") else "other"


def event_view(e: Mapping[str, Any]) -> EventView:
    """A history row (the service's event JSON)."""
    labels = e.get("labels") or {}
    note = f"suppressed: {e['suppressed']}" if e.get("suppressed") else ""
    return EventView(
        fingerprint=str(e.get("fingerprint", "")),
        alert_name=str(e.get("alertname", "")),
        state=str(e.get("state", "")),
        state_css=str(e.get("state", "")),
        at=str(e.get("at", "")),
        severity=str(e.get("severity") or ""),
        severity_css=_sev_css(e.get("severity")),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items() if k != "alertname")),
        value=fmt_value(e.get("value")),
        threshold=fmt_value(e.get("threshold")),
        note=note,
    )


@dataclass(frozen=True, slots=True)
class EntryView:
    at: str
    kind: str
    what: str
    who: str
    detail: str
    css: str


_ACTIONS: Final = {"ack": ("acknowledged", "acked"), "unack": ("acknowledgement withdrawn", "audit")}


def entry_view(e: Mapping[str, Any]) -> EntryView:
    """One entry of the service's timeline: an alert event, an audited write, or a silence."""
    kind = str(e.get("kind", ""))
    at = str(e.get("at", ""))
    if kind == "event":
        state = str(e.get("state", ""))
        parts = [f"value {fmt_value(e.get('value'))}"]
        if e.get("suppressed"):
            parts.append(f"suppressed: {e['suppressed']}")
        return EntryView(at, "event", state, "", ", ".join(parts), state)
    if kind == "silenced":
        detail = f"silence {e.get('silence', '')} until {e.get('until', '')}"
        if e.get("comment"):
            detail += f": {e['comment']}"
        return EntryView(at, "silence", "silenced", str(e.get("by", "")), detail, "silenced")
    what, css = _ACTIONS.get(kind, (kind, "audit"))
    return EntryView(at, "audit", what, str(e.get("by", "")), str(e.get("comment", "")), css)


# --------------------------------------------------------------------------- the routes

NOTICES: Final = {
    "silenced": "Silence created.",
    "expired": "Silence expired.",
    "acked": "Alert acknowledged.",
    "unacked": "Acknowledgement withdrawn.",
    "signedout": "Signed out.",
}
ERRORS: Final = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ControlError, 400),
    (UnavailableError, 503),
    (StoreError, 503),
)

Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The pages and actions under `prefix`, over the API's service and authenticator."""

    def __init__(
        self,
        service: ControlService,
        authenticator: Authenticator,
        *,
        prefix: str = "/console",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service, self.authenticator, self.prefix, self.clock = service, authenticator, prefix, clock
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # ------------------------------------------------------------------ sessions

    def session(self, request: Request) -> tuple[Principal | None, str | None]:
        """The signed-in token's principal and secret (both None: not signed in)."""
        secret = request.cookies.get(COOKIE)
        if secret:
            principal = self.authenticator.principal(secret)
            if principal is not None:
                return principal, secret
        return None, None

    def render(
        self,
        request: Request,
        template: str,
        *,
        user: Principal | None,
        secret: str | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        notice = NOTICES.get(request.query_params.get("done", ""))
        html = self.env.get_template(f"console/{template}").render(
            prefix=self.prefix,
            user=_UserView.of(user),
            csrf=csrf_token(secret) if secret else "",
            now=iso(float(int(self.clock()))),
            notice=context.pop("notice", notice),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def problem(self, request: Request, status: int, reason: str, user: Principal | None = None,
                secret: str | None = None, back: str = "") -> HTMLResponse:  # fmt: skip
        return self.render(
            request, "error.html", user=user, secret=secret, status=status, reason=reason, back=back
        )

    def reader(self, page: Callable[[Request, Principal, str | None], Awaitable[Response]]) -> Handler:
        """A read page: signed in (any scope), or anonymous where API_ANONYMOUS_READ allows."""

        async def handle(request: Request) -> Response:
            user, secret = self.session(request)
            if user is None:
                if not self.authenticator.anonymous_read:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{self.prefix}/signin?{urlencode({'next': target})}", 303)
                user = ANONYMOUS
            try:
                return await page(request, user, secret)
            except Exception as exc:
                return self._failed(request, exc, user, secret)

        handle.__name__ = f"console_{page.__name__}"
        return handle

    def writer(self, action: Callable[[Request, Principal, FormData], Awaitable[Response]]) -> Handler:
        """An action: a POST form from a signed-in write token, with this session's CSRF token."""

        async def handle(request: Request) -> Response:
            user, secret = self.session(request)
            length = request.headers.get("content-length")
            if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
                return self.problem(request, 413, f"a form of at most {MAX_FORM_BYTES} bytes", user, secret)
            form = await request.form(max_files=0, max_fields=200)
            if user is None or secret is None:
                return self.problem(
                    request, 401, "Sign in first (your session ended or the token was removed)."
                )
            if not csrf_ok(secret, form.get("csrf")):
                return self.problem(
                    request, 403, "The form's CSRF token is missing or wrong: reload the page and try again.",
                    user, secret,
                )  # fmt: skip
            if not user.scope.allows(Scope.WRITE):
                return self.problem(
                    request, 403, f"Token {user.name!r} has scope read; this action needs a write token.",
                    user, secret,
                )  # fmt: skip
            try:
                return await action(request, user, form)
            except Exception as exc:
                return self._failed(request, exc, user, secret)
            finally:
                await form.close()

        handle.__name__ = f"console_{action.__name__}"
        return handle

    def _failed(
        self, request: Request, exc: Exception, user: Principal | None, secret: str | None
    ) -> Response:
        for kind, status in ERRORS:
            if isinstance(exc, kind):
                return self.problem(
                    request, status, str(exc), user, secret, request.headers.get("referer", "")
                )
        if isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
            log.warning("console: %s: %s", type(exc).__name__, exc)
            return self.problem(
                request, 503, f"PostgreSQL is not available ({type(exc).__name__}); retry.", user, secret
            )
        raise exc

    def done(self, path: str, what: str) -> RedirectResponse:
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{sep}done={what}", 303)

    # ------------------------------------------------------------------ sign-in

    async def signin_page(self, request: Request) -> Response:
        user, _ = self.session(request)
        nxt = safe_next(self.prefix, request.query_params.get("next"))
        if user is not None:
            return RedirectResponse(nxt, 303)
        return self.render(request, "signin.html", user=None, secret=None, next=nxt)

    async def signin(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
            return self.problem(request, 413, f"a form of at most {MAX_FORM_BYTES} bytes")
        async with request.form(max_files=0, max_fields=10) as form:
            token = str(form.get("token") or "").strip()
            nxt = safe_next(self.prefix, str(form.get("next") or ""))
        user = self.authenticator.principal(token) if token else None
        if user is None:
            return self.render(
                request, "signin.html", user=None, secret=None, status=401, next=nxt,
                error="Unknown token: paste a token from API_TOKENS or API_TOKENS_FILE.",
            )  # fmt: skip
        response = RedirectResponse(nxt, 303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_MAX_AGE_S,
            path=self.prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def signout(self, request: Request) -> Response:
        user, secret = self.session(request)
        async with request.form(max_files=0, max_fields=10) as form:
            sent = form.get("csrf")
        if user is not None and not csrf_ok(secret, sent):
            return self.problem(request, 403, "The form's CSRF token is missing or wrong.", user, secret)
        response = self.done(f"{self.prefix}/signin", "signedout")
        response.delete_cookie(COOKIE, path=self.prefix, httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------------ pages

    async def alerts(self, request: Request, user: Principal, secret: str | None) -> Response:
        alerts = await self.service.current_alerts()
        # most severe first, then the oldest: what has burned longest is read first
        alerts = sorted(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity.lower(), 3), a.active_at))
        views = [alert_view(a) for a in alerts]
        return self.render(request, "alerts.html", user=user, secret=secret, page="alerts", alerts=views)

    async def silences(self, request: Request, user: Principal, secret: str | None) -> Response:
        groups = silence_groups(self.service.list_silences(), self.clock())
        return self.render(request, "silences.html", user=user, secret=secret, page="silences", groups=groups)

    async def new_silence(self, request: Request, user: Principal, secret: str | None) -> Response:
        fingerprint = request.query_params.get("fingerprint", "")
        labels: dict[str, str] = {}
        if fingerprint:
            found = [a for a in await self.service.current_alerts() if a.fingerprint == fingerprint]
            if found:
                labels = dict(found[0].labels)
            else:
                labels = dict((await self.service.timeline(fingerprint))["labels"])
        return self.render(
            request, "silence_new.html", user=user, secret=secret, page="silences",
            form=prefilled(labels), operators=OPERATORS, back=f"{self.prefix}/alerts",
        )  # fmt: skip

    async def history(self, request: Request, user: Principal, secret: str | None) -> Response:
        params = {k: [v for v in request.query_params.getlist(k) if v.strip()] for k in request.query_params}
        params = {k: v for k, v in params.items() if v and k != "done"}
        q = {k: (v[0] if v else "") for k, v in params.items()}
        try:
            f = parse_history(params)
        except ControlError as exc:
            return self.render(
                request, "history.html", user=user, secret=secret, page="history", q=q, states=STATES,
                rows=[], next_url="", error=str(exc), status=400,
            )  # fmt: skip
        rows, cursor = await self.service.history(f)
        next_url = ""
        if cursor:
            keep = [(k, v) for k, vs in params.items() if k != "cursor" for v in vs]
            next_url = f"{self.prefix}/history?{urlencode([*keep, ('cursor', cursor)])}"
        return self.render(
            request, "history.html", user=user, secret=secret, page="history", q=q, states=STATES,
            rows=[event_view(r) for r in rows], next_url=next_url,
        )  # fmt: skip

    async def timeline(self, request: Request, user: Principal, secret: str | None) -> Response:
        fingerprint = request.path_params["fingerprint"]
        t = await self.service.timeline(fingerprint)
        labels: Mapping[str, str] = t.get("labels") or {}
        entries = list(t.get("entries") or [])
        annotations: Mapping[str, Any] = {}
        for e in entries:
            if e.get("kind") == "event" and e.get("annotations"):
                annotations = e["annotations"]
        now = self.clock()
        silences = [
            (s.state(now), view)
            for s in self.service.list_silences()
            if all(m.matches(labels) for m in s.matchers)
            for _, views in silence_groups([s], now)
            for view in views
        ]
        return self.render(
            request, "timeline.html", user=user, secret=secret, page="history",
            name=t.get("alertname", ""), fingerprint=fingerprint,
            alert_labels=tuple(sorted((k, v) for k, v in labels.items() if k != "alertname")),
            annotations=tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
            entries=[entry_view(e) for e in reversed(entries)], silences=silences,
        )  # fmt: skip

    # ------------------------------------------------------------------ actions

    async def create_silence(self, request: Request, user: Principal, form: FormData) -> Response:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            body = silence_request(fields, author=user.name, now=self.clock())
            await self.service.create_or_update_silence(body, user.name)
        except ControlError as exc:
            secret = request.cookies.get(COOKIE)
            return self.render(
                request, "silence_new.html", user=user, secret=secret, page="silences", status=400,
                form=form_back(prefilled({}), fields), operators=OPERATORS, back=f"{self.prefix}/alerts",
                error=str(exc),
            )  # fmt: skip
        return self.done(f"{self.prefix}/alerts", "silenced")

    async def expire(self, request: Request, user: Principal, form: FormData) -> Response:
        await self.service.expire_silence(request.path_params["silence_id"], user.name)
        return self.done(f"{self.prefix}/silences", "expired")

    async def ack(self, request: Request, user: Principal, form: FormData) -> Response:
        comment = str(form.get("comment") or "")
        await self.service.acknowledge(request.path_params["fingerprint"], user.name, comment)
        return self.done(f"{self.prefix}/alerts", "acked")

    async def unack(self, request: Request, user: Principal, form: FormData) -> Response:
        await self.service.unacknowledge(request.path_params["fingerprint"], user.name)
        return self.done(f"{self.prefix}/alerts", "unacked")

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{self.prefix}/alerts", 303)

    def routes(self) -> list[BaseRoute]:
        r, w = self.reader, self.writer
        return [
            Mount(
                self.prefix,
                routes=[
                    Route("/", self.home),
                    Route("/signin", self.signin_page, methods=["GET"]),
                    Route("/signin", self.signin, methods=["POST"]),
                    Route("/signout", self.signout, methods=["POST"]),
                    Route("/alerts", r(self.alerts), methods=["GET"]),
                    Route("/alerts/{fingerprint}", r(self.timeline), methods=["GET"]),
                    Route("/alerts/{fingerprint}/ack", w(self.ack), methods=["POST"]),
                    Route("/alerts/{fingerprint}/unack", w(self.unack), methods=["POST"]),
                    Route("/silences", r(self.silences), methods=["GET"]),
                    Route("/silences", w(self.create_silence), methods=["POST"]),
                    Route("/silences/new", r(self.new_silence), methods=["GET"]),
                    Route("/silences/{silence_id}/expire", w(self.expire), methods=["POST"]),
                    Route("/history", r(self.history), methods=["GET"]),
                    Mount("/static", StaticFiles(directory=HERE / "static"), name="console-static"),
                ],
            )
        ]


@dataclass(frozen=True, slots=True)
class _UserView:
    name: str
    can_write: bool

    @staticmethod
    def of(p: Principal | None) -> _UserView | None:
        return None if p is None else _UserView(p.name, p.scope.allows(Scope.WRITE))


def console_routes(service: ControlService, auth: Auth, *, prefix: str = "/console") -> list[BaseRoute]:
    """What `python -m connectors.api` mounts beside the API (`create_app(extra_routes=...)`)."""
    return Console(service, auth.authenticator, prefix=prefix).routes()
