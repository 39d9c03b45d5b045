"""alertmanager.yml -> RoutingConfig: the `route:` tree and `receivers:`, with every problem listed.

A team pastes the routing part of the alertmanager.yml it runs today; what Alertmanager 0.25
accepts we accept, and what `amtool check-config` rejects we reject too (the integration test
checks both against Debian's amtool). Sections:

* `route:` (required): receiver, group_by (`...` = every label), matchers (`matchers:` strings
  `a="b"`, `c=~"x.*"`, and the older `match:` / `match_re:` maps), continue, group_wait (30s),
  group_interval (5m), repeat_interval (4h), routes, mute_time_intervals, active_time_intervals.
  Children inherit receiver, group_by and the three timers; time intervals are per route, as in
  Alertmanager. Our extension `escalate_after: <duration>` + `escalate_to: <receiver>` (both or
  neither, inherited together like the timers; see docs/escalation.md) is not Alertmanager's:
  a file that uses it no longer passes `amtool check-config`.
* `receivers:` (required): webhook, slack, pagerduty and email configs (Alertmanager's fields),
  plus our kinds `notification_service_configs: [{url}]` (the seeds' `POST {url}/alerts`) and
  `alertmanager_configs: [{url}]` (push to an Alertmanager's API v2), and our per-receiver
  extensions `retry:`, `max_in_flight:`, `rate_limit:`, `fallback:` (these four and our two kinds
  are not Alertmanager's: a file that uses them no longer passes `amtool check-config`).
  Alertmanager's other kinds (opsgenie, victorops, ...) are refused: we could not deliver them.
* `global:` kept for the receivers' defaults (smtp_*, slack_api_url, pagerduty_url, resolve_timeout).
* `time_intervals:` / `mute_time_intervals:` (named time intervals; see `TimeInterval.contains`).
* `templates:` and `inhibit_rules:` are accepted and ignored; `RoutingConfig.notes` says so
  (inhibition happens before delivery, in the rule files' `inhibit_rules:`; payloads are ours).

Durations use Alertmanager's grammar (`30s`, `1h30m`; no fractions, no bare numbers), read by
`rules.duration`. Problems carry `file:line:col` (`rules.loader.Problem`).

    cfg = load_routing_file(Path("alertmanager.yml"))   # raises RoutingConfigError
    cfg = load_routing(text, source="inline")
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from rules.duration import parse_duration
from rules.loader import Problem, item_position, load_yaml, position_of
from rules.model import Matcher, RulesError

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
GROUP_BY_ALL = "..."

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_AM_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m(?!s))?(\d+s)?(\d+ms)?$")


class RoutingConfigError(RulesError):
    """Raised with every problem found, so the file is fixed in one pass."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the routing configuration:\n{lines}")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    """`global:`: defaults the receivers' configs fall back to (Alertmanager's names)."""

    resolve_timeout: float = 300.0
    smtp_from: str | None = None
    smtp_smarthost: str | None = None  # host:port
    smtp_hello: str = "localhost"
    smtp_auth_username: str | None = None
    smtp_auth_password: str | None = None
    smtp_auth_identity: str | None = None
    smtp_auth_secret: str | None = None
    smtp_require_tls: bool = True
    slack_api_url: str | None = None
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL
    http_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    send_resolved: bool = True
    max_alerts: int = 0  # 0 = all
    http_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SlackConfig:
    api_url: str  # incoming-webhook URL (or global slack_api_url)
    channel: str | None = None
    username: str | None = None
    title: str | None = None
    title_link: str | None = None
    pretext: str | None = None
    text: str | None = None
    color: str | None = None
    footer: str | None = None
    fallback: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None
    send_resolved: bool = False
    http_config: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # other Alertmanager slack fields, as written


@dataclass(frozen=True, slots=True)
class PagerDutyConfig:
    url: str  # Events API v2 endpoint (or global pagerduty_url)
    routing_key: str | None = None  # Events API v2
    service_key: str | None = None  # Events API v1 (integration key)
    severity: str | None = None  # None: Alertmanager's default ("error", or the alerts' severity label)
    description: str | None = None
    client: str | None = None
    client_url: str | None = None
    source: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = None  # `class:` in YAML
    details: Mapping[str, str] = field(default_factory=dict)
    send_resolved: bool = True
    http_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EmailConfig:
    to: str
    from_: str  # `from:` (or global smtp_from)
    smarthost: str  # host:port (or global smtp_smarthost)
    hello: str = "localhost"
    auth_username: str | None = None
    auth_password: str | None = None
    auth_identity: str | None = None
    auth_secret: str | None = None
    require_tls: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    html: str | None = None  # None: our default HTML body
    text: str | None = None  # None: our default plain-text body
    send_resolved: bool = False
    tls_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NotificationServiceConfig:
    """Ours: the seeds' notification service, `POST {url}/alerts` with an Idempotency-Key."""

    url: str
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class AlertmanagerPushConfig:
    """Ours: push alerts to an Alertmanager's `POST {url}/api/v2/alerts`, re-sent while firing."""

    url: str
    send_resolved: bool = True  # endsAt is how Alertmanager learns of a resolve: keep it on


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Ours (`retry:` on a receiver): how long a send is retried; None = the delivery default."""

    max_attempts: int | None = None
    initial_backoff: float | None = None  # seconds
    max_backoff: float | None = None
    deadline: float | None = None  # from the first attempt


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Ours (`rate_limit: 10/1m` or `{count: 10, per: 1m}`): at most `count` sends per `per` seconds."""

    count: int
    per: float


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    name: str
    webhook_configs: tuple[WebhookConfig, ...] = ()
    slack_configs: tuple[SlackConfig, ...] = ()
    pagerduty_configs: tuple[PagerDutyConfig, ...] = ()
    email_configs: tuple[EmailConfig, ...] = ()
    notification_service_configs: tuple[NotificationServiceConfig, ...] = ()
    alertmanager_configs: tuple[AlertmanagerPushConfig, ...] = ()
    retry: RetryConfig = RetryConfig()
    max_in_flight: int | None = None
    rate_limit: RateLimit | None = None
    fallback: str | None = None  # receiver used while this one is unavailable

    @property
    def integrations(self) -> tuple[object, ...]:
        """Every config of every kind (a receiver with none is Alertmanager's "null" receiver)."""
        return (*self.webhook_configs, *self.slack_configs, *self.pagerduty_configs, *self.email_configs,
                *self.notification_service_configs, *self.alertmanager_configs)  # fmt: skip

    @property
    def send_resolved(self) -> bool:
        """True when any of its configs wants resolved notifications (grouping's `Timers.send_resolved`)."""
        return any(getattr(c, "send_resolved", True) for c in self.integrations)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """`times:` entry: minutes since midnight, [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class IntervalSpec:
    """One entry of a named time interval; every field given must match (empty = any)."""

    times: tuple[TimeRange, ...] = ()
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = Sunday, inclusive ranges
    days_of_month: tuple[tuple[int, int], ...] = ()  # negative counts from the month's end
    months: tuple[tuple[int, int], ...] = ()  # 1..12
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    def contains(self, t: float) -> bool:
        dt = datetime.fromtimestamp(t, ZoneInfo(self.location))
        if self.times and not any(r.start <= dt.hour * 60 + dt.minute < r.end for r in self.times):
            return False
        weekday = (dt.weekday() + 1) % 7  # Python: Monday = 0; Alertmanager: Sunday = 0
        if self.weekdays and not any(lo <= weekday <= hi for lo, hi in self.weekdays):
            return False
        if self.days_of_month:
            last = calendar.monthrange(dt.year, dt.month)[1]

            def day(d: int) -> int:
                return d if d > 0 else last + d + 1

            if not any(day(lo) <= dt.day <= day(hi) for lo, hi in self.days_of_month):
                return False
        if self.months and not any(lo <= dt.month <= hi for lo, hi in self.months):
            return False
        return not self.years or any(lo <= dt.year <= hi for lo, hi in self.years)


@dataclass(frozen=True, slots=True)
class TimeInterval:
    name: str
    specs: tuple[IntervalSpec, ...]

    def contains(self, t: float) -> bool:
        """True when Unix time `t` falls in any of the interval's entries."""
        return any(s.contains(t) for s in self.specs)


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the route tree as written; `None` = inherit from the parent (see route.match)."""

    receiver: str | None = None
    group_by: tuple[str, ...] | None = None  # ("...",) = every label
    matchers: tuple[Matcher, ...] = ()  # sorted as Alertmanager sorts them (route ids depend on it)
    continue_: bool = False
    group_wait: float | None = None
    group_interval: float | None = None
    repeat_interval: float | None = None
    routes: tuple[Route, ...] = ()
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    escalate_after: float | None = None  # ours: with escalate_to, or neither (None: inherit)
    escalate_to: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    route: Route
    receivers: Mapping[str, ReceiverConfig]
    global_: GlobalConfig = GlobalConfig()
    time_intervals: Mapping[str, TimeInterval] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what was read and ignored (templates, inhibit_rules)
    source: str = ""


# --------------------------------------------------------------------------- matchers


def matcher_string(m: Matcher) -> str:
    """Alertmanager's form, `name="value"` / `name=~"regex"` (route ids are built from it)."""
    op = {(False, False): "=", (False, True): "!=", (True, False): "=~", (True, True): "!~"}[
        (m.regex, m.negate)
    ]
    value = m.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{m.name}{op}"{value}"'


def _matcher(name: str, op: str, value: str) -> Matcher:
    regex, negate = "~" in op, op.startswith("!")
    if not _LABEL_NAME.match(name):
        raise ValueError(f"invalid label name {name!r}")
    pattern = None
    if regex:
        try:
            pattern = re.compile(value)
        except re.error as e:
            raise ValueError(f"bad regular expression {value!r}: {e}") from None
    return Matcher(name, value, regex, negate, pattern)


_ONE_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)?\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*(?:,|$)'
)


def parse_matchers(text: str) -> list[Matcher]:
    """`a="b"`, `c=~"x.*", d!=e`, `{a="b"}`: one or more matchers as `matchers:` entries hold them."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out: list[Matcher] = []
    pos = 0
    while pos < len(body):
        m = _ONE_MATCHER.match(body, pos)
        if m is None or m.end() == pos:
            raise ValueError(f'bad matcher {text!r}: use name="value", name!="v", name=~"re" or name!~"re"')
        name, op, raw = m.groups()
        if not name:
            raise ValueError(f"bad matcher {text!r}: missing label name before {op!r}")
        if raw.startswith('"'):
            try:
                value = yaml.safe_load(raw)  # a YAML double-quoted scalar: Go's escapes
            except yaml.YAMLError:
                raise ValueError(f"bad matcher {text!r}: bad quoted value {raw}") from None
        else:
            value = raw
        out.append(_matcher(name, op, str(value)))
        pos = m.end()
    if not out:
        raise ValueError(f"bad matcher {text!r}: empty")
    return out


# --------------------------------------------------------------------------- loading


def _words(text: str) -> list[str]:
    return text.split()


_TOP_KEYS = {
    "global",
    "route",
    "receivers",
    "templates",
    "inhibit_rules",
    "time_intervals",
    "mute_time_intervals",
}
_GLOBAL_KEYS = set(
    _words(
        """resolve_timeout smtp_from smtp_smarthost smtp_hello smtp_auth_username smtp_auth_password
    smtp_auth_password_file smtp_auth_identity smtp_auth_secret smtp_require_tls slack_api_url
    slack_api_url_file pagerduty_url http_config opsgenie_api_key
    opsgenie_api_key_file opsgenie_api_url victorops_api_key
    victorops_api_key_file victorops_api_url wechat_api_url wechat_api_secret wechat_api_corp_id
    telegram_api_url webex_api_url"""
    )
)
_ROUTE_KEYS = set(
    _words(
        """receiver group_by continue matchers match match_re group_wait group_interval repeat_interval routes
    mute_time_intervals active_time_intervals escalate_after escalate_to"""
    )
)
_OUR_KINDS = {"notification_service_configs", "alertmanager_configs"}
_KINDS = {"webhook_configs", "slack_configs", "pagerduty_configs", "email_configs", *_OUR_KINDS}
_UNSUPPORTED_KINDS = set(
    _words(
        """opsgenie_configs pushover_configs sns_configs victorops_configs wechat_configs telegram_configs
    webex_configs discord_configs msteams_configs"""
    )
)
_RECEIVER_KEYS = {"name", *_KINDS, *_UNSUPPORTED_KINDS, "retry", "max_in_flight", "rate_limit", "fallback"}
_KIND_KEYS: dict[str, set[str]] = {
    "webhook_configs": {"url", "url_file", "send_resolved", "max_alerts", "http_config"},
    "slack_configs": set(
        _words(
            """api_url api_url_file channel username title title_link pretext text color footer fallback
        icon_emoji icon_url send_resolved http_config fields short_fields callback_id image_url thumb_url
        link_names
        mrkdwn_in actions"""
        )
    ),
    "pagerduty_configs": set(
        _words(
            """url routing_key routing_key_file service_key service_key_file severity description client
        client_url source component group class details images links send_resolved http_config"""
        )
    ),
    "email_configs": set(
        _words(
            """to from smarthost hello auth_username auth_password auth_password_file auth_identity
        auth_secret
        require_tls tls_config headers html text send_resolved"""
        )
    ),
    "notification_service_configs": {"url", "send_resolved"},
    "alertmanager_configs": {"url", "send_resolved"},
}
_SLACK_TYPED = {"api_url", "channel", "username", "title", "title_link", "pretext", "text", "color", "footer",
                "fallback", "icon_emoji", "icon_url", "send_resolved", "http_config"}  # fmt: skip
_RETRY_KEYS = {"max_attempts", "initial_backoff", "max_backoff", "deadline"}
_INTERVAL_KEYS = {"times", "weekdays", "days_of_month", "months", "years", "location"}
_WEEKDAYS = {d.lower(): (i + 1) % 7 for i, d in enumerate(calendar.day_name)}  # sunday = 0
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}


def load_routing_file(path: Path) -> RoutingConfig:
    """Read an alertmanager.yml-style file; raises RoutingConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RoutingConfigError([Problem(str(path), "", "", f"cannot read: {e.strerror or e}")]) from None
    return load_routing(text, source=str(path))


def load_routing(text: str, source: str = "<routing>") -> RoutingConfig:
    """Parse alertmanager.yml-style YAML text; raises RoutingConfigError listing every problem."""
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise RoutingConfigError([Problem(source, "", "", f"not valid YAML: {e}", line, col)]) from None
    return _Reader(source).read(doc)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.receiver_nodes: dict[str, Mapping[str, Any]] = {}  # to locate fallback problems

    # ---- helpers

    def problem(self, node: object, path: str, key: str, message: str) -> None:
        """`node` is the mapping holding `key` (or None); `path` is the dotted path shown to the user."""
        pos = position_of(node, key) if key else getattr(node, "pos", None)
        line, col = pos if pos else (None, None)
        self.problems.append(Problem(self.source, "", path, message, line, col))

    def unknown_keys(self, node: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in node:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(
                    node, where, key, f"unknown key {key!r} (allowed here: {', '.join(sorted(allowed))})"
                )

    def mapping(
        self, node: object, path: str, parent: object = None, key: str = ""
    ) -> Mapping[str, Any] | None:
        if isinstance(node, Mapping):
            return node
        self.problem(parent, path, key, f"must be a mapping, got {type(node).__name__}")
        return None

    def seq(self, node: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = node.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.problem(node, path, key, f"must be a list, got {type(value).__name__}")
        return []

    def string(self, node: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        value = node.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        self.problem(node, path, key, f"must be a string, got {value!r}")
        return default

    def boolean(self, node: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = node.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.problem(node, path, key, f"must be true or false, got {value!r}")
        return default

    def duration(self, node: Mapping[str, Any], key: str, path: str) -> float | None:
        value = node.get(key)
        if value is None:
            return None
        # Alertmanager's grammar (no fractions, no bare numbers), so the file stays valid for amtool
        if not isinstance(value, str) or not value or _AM_DURATION.match(value) is None:
            self.problem(node, path, key, f"not a valid duration: {value!r} (use e.g. 30s, 5m, 1h30m)")
            return None
        return parse_duration(value) if value != "0" else 0.0

    def positive_int(
        self, node: Mapping[str, Any], key: str, path: str, *, zero_ok: bool = False
    ) -> int | None:
        value = node.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
            self.problem(node, path, key, f"must be an integer >= {0 if zero_ok else 1}, got {value!r}")
            return None
        return value

    # ---- sections

    def read(self, doc: object) -> RoutingConfig:
        if doc is None:
            doc = {}
        top = self.mapping(doc, "(file)")
        if top is None:
            raise RoutingConfigError(self.problems)
        self.unknown_keys(top, "", _TOP_KEYS)
        notes: list[str] = []
        if top.get("templates"):
            notes.append("templates: ignored (receivers' payloads are built by the delivery code)")
        if top.get("inhibit_rules"):
            notes.append(
                "inhibit_rules: ignored here (inhibition happens before delivery: rule files' inhibit_rules)"
            )
        glob = self.read_global(top.get("global"), top)
        intervals = self.read_intervals(top)
        receivers = self.read_receivers(top, glob)
        route: Route = Route()
        if top.get("route") is None:
            self.problem(top, "route", "", "no route: add `route:` with at least `receiver:` (the default)")
        else:
            node = self.mapping(top["route"], "route", top, "route")
            if node is not None:
                route = self.read_route(node, "route", root=True)
                self.check_references(route, node, "route", receivers, intervals)
        self.check_fallbacks(receivers)
        if self.problems:
            raise RoutingConfigError(sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0)))
        return RoutingConfig(route, receivers, glob, intervals, tuple(notes), self.source)

    def read_global(self, node: object, top: Mapping[str, Any]) -> GlobalConfig:
        if node is None:
            return GlobalConfig()
        g = self.mapping(node, "global", top, "global")
        if g is None:
            return GlobalConfig()
        self.unknown_keys(g, "global", _GLOBAL_KEYS)
        resolve = self.duration(g, "resolve_timeout", "global.resolve_timeout")
        http = g.get("http_config")
        return GlobalConfig(
            resolve_timeout=300.0 if resolve is None else resolve,
            smtp_from=self.string(g, "smtp_from", "global.smtp_from"),
            smtp_smarthost=self.string(g, "smtp_smarthost", "global.smtp_smarthost"),
            smtp_hello=self.string(g, "smtp_hello", "global.smtp_hello") or "localhost",
            smtp_auth_username=self.string(g, "smtp_auth_username", "global.smtp_auth_username"),
            smtp_auth_password=self.string(g, "smtp_auth_password", "global.smtp_auth_password"),
            smtp_auth_identity=self.string(g, "smtp_auth_identity", "global.smtp_auth_identity"),
            smtp_auth_secret=self.string(g, "smtp_auth_secret", "global.smtp_auth_secret"),
            smtp_require_tls=self.boolean(g, "smtp_require_tls", "global.smtp_require_tls", True),
            slack_api_url=self.string(g, "slack_api_url", "global.slack_api_url"),
            pagerduty_url=self.string(g, "pagerduty_url", "global.pagerduty_url") or DEFAULT_PAGERDUTY_URL,
            http_config=dict(http) if isinstance(http, Mapping) else None,
        )

    # ---- receivers

    def read_receivers(self, top: Mapping[str, Any], glob: GlobalConfig) -> dict[str, ReceiverConfig]:
        out: dict[str, ReceiverConfig] = {}
        items = self.seq(top, "receivers", "receivers")
        for i, item in enumerate(items):
            path = f"receivers[{i}]"
            node = self.mapping(item, path, top, f"receivers[{i}]")
            if node is None:
                continue
            name = self.string(node, "name", f"{path}.name")
            if not name:
                self.problem(node, f"{path}.name", "", "missing name in receiver")
                continue
            path = f"receivers[{i}] ({name})"
            self.unknown_keys(node, path, _RECEIVER_KEYS)
            if name in out:
                self.problem(node, f"{path}.name", "name", f"receiver name {name!r} is not unique")
                continue
            self.receiver_nodes[name] = node
            out[name] = self.read_receiver(node, name, path, glob)
        return out

    def read_receiver(
        self, node: Mapping[str, Any], name: str, path: str, glob: GlobalConfig
    ) -> ReceiverConfig:
        for kind in sorted(_UNSUPPORTED_KINDS & set(node)):
            self.problem(node, f"{path}.{kind}", kind,
                         f"{kind} is not supported: use webhook_configs, slack_configs, pagerduty_configs, "
                         "email_configs, notification_service_configs or alertmanager_configs")  # fmt: skip
        configs: dict[str, list[object]] = {k: [] for k in _KINDS}
        for kind in sorted(_KINDS & set(node)):
            for j, raw in enumerate(self.seq(node, kind, f"{path}.{kind}")):
                kpath = f"{path}.{kind}[{j}]"
                c = self.mapping(raw, kpath, node, kind)
                if c is None:
                    continue
                self.unknown_keys(c, kpath, _KIND_KEYS[kind])
                built = self.read_kind(kind, c, kpath, glob)
                if built is not None:
                    configs[kind].append(built)
        retry = RetryConfig()
        if node.get("retry") is not None:
            r = self.mapping(node["retry"], f"{path}.retry", node, "retry")
            if r is not None:
                self.unknown_keys(r, f"{path}.retry", _RETRY_KEYS)
                retry = RetryConfig(
                    max_attempts=self.positive_int(r, "max_attempts", f"{path}.retry.max_attempts"),
                    initial_backoff=self.duration(r, "initial_backoff", f"{path}.retry.initial_backoff"),
                    max_backoff=self.duration(r, "max_backoff", f"{path}.retry.max_backoff"),
                    deadline=self.duration(r, "deadline", f"{path}.retry.deadline"),
                )
        return ReceiverConfig(
            name=name,
            webhook_configs=tuple(configs["webhook_configs"]),  # type: ignore[arg-type]
            slack_configs=tuple(configs["slack_configs"]),  # type: ignore[arg-type]
            pagerduty_configs=tuple(configs["pagerduty_configs"]),  # type: ignore[arg-type]
            email_configs=tuple(configs["email_configs"]),  # type: ignore[arg-type]
            notification_service_configs=tuple(configs["notification_service_configs"]),  # type: ignore[arg-type]
            alertmanager_configs=tuple(configs["alertmanager_configs"]),  # type: ignore[arg-type]
            retry=retry,
            max_in_flight=self.positive_int(node, "max_in_flight", f"{path}.max_in_flight"),
            rate_limit=self.read_rate_limit(node, f"{path}.rate_limit"),
            fallback=self.string(node, "fallback", f"{path}.fallback"),
        )

    def read_rate_limit(self, node: Mapping[str, Any], path: str) -> RateLimit | None:
        value = node.get("rate_limit")
        if value is None:
            return None
        hint = "use `rate_limit: 10/1m` or `rate_limit: {count: 10, per: 1m}`"
        if isinstance(value, str) and "/" in value:
            count_s, per_s = value.split("/", 1)
            value = {"count": int(count_s) if count_s.strip().isdigit() else count_s, "per": per_s.strip()}
        if not isinstance(value, Mapping) or set(value) != {"count", "per"}:
            self.problem(node, path, "rate_limit", f"bad rate limit {node.get('rate_limit')!r}: {hint}")
            return None
        count, per_raw = value["count"], value["per"]
        try:
            per = parse_duration(per_raw)
        except ValueError:
            per = 0.0
        if isinstance(count, bool) or not isinstance(count, int) or count < 1 or per <= 0:
            self.problem(node, path, "rate_limit", f"bad rate limit {node.get('rate_limit')!r}: {hint}")
            return None
        return RateLimit(count, per)

    def read_kind(self, kind: str, c: Mapping[str, Any], path: str, glob: GlobalConfig) -> object | None:
        def s(key: str, default: str | None = None) -> str | None:
            return self.string(c, key, f"{path}.{key}", default)

        def b(key: str, default: bool) -> bool:
            return self.boolean(c, key, f"{path}.{key}", default)

        http = dict(c["http_config"]) if isinstance(c.get("http_config"), Mapping) else None
        if kind in ("webhook_configs", "notification_service_configs", "alertmanager_configs"):
            url = s("url")
            if not url:
                what = "url_file is not supported: write url" if c.get("url_file") else "url is required"
                self.problem(c, f"{path}.url", "", what)
                return None
            if kind == "webhook_configs":
                max_alerts = self.positive_int(c, "max_alerts", f"{path}.max_alerts", zero_ok=True)
                return WebhookConfig(url, b("send_resolved", True), max_alerts or 0, http)
            if kind == "notification_service_configs":
                return NotificationServiceConfig(url, b("send_resolved", True))
            return AlertmanagerPushConfig(url, b("send_resolved", True))
        if kind == "slack_configs":
            api_url = s("api_url") or glob.slack_api_url
            if not api_url:
                self.problem(
                    c, f"{path}.api_url", "", "no Slack API URL: set api_url here or global.slack_api_url"
                )
                return None
            return SlackConfig(
                api_url=api_url, channel=s("channel"), username=s("username"), title=s("title"),
                title_link=s("title_link"), pretext=s("pretext"), text=s("text"), color=s("color"),
                footer=s("footer"), fallback=s("fallback"), icon_emoji=s("icon_emoji"),
                icon_url=s("icon_url"), send_resolved=b("send_resolved", False), http_config=http,
                extra={k: v for k, v in c.items() if k not in _SLACK_TYPED},
            )  # fmt: skip
        if kind == "pagerduty_configs":
            routing_key, service_key = s("routing_key"), s("service_key")
            if not routing_key and not service_key:
                self.problem(
                    c, f"{path}.routing_key", "", "missing service or routing key in PagerDuty config"
                )
                return None
            details = c.get("details") or {}
            if not isinstance(details, Mapping):
                self.problem(c, f"{path}.details", "details", "must be a mapping of strings")
                details = {}
            return PagerDutyConfig(
                url=s("url") or glob.pagerduty_url, routing_key=routing_key, service_key=service_key,
                severity=s("severity"), description=s("description"), client=s("client"),
                client_url=s("client_url"), source=s("source"), component=s("component"), group=s("group"),
                class_=s("class"), details={str(k): str(v) for k, v in details.items()},
                send_resolved=b("send_resolved", True), http_config=http,
            )  # fmt: skip
        # email_configs
        to, from_, smarthost = s("to"), s("from") or glob.smtp_from, s("smarthost") or glob.smtp_smarthost
        ok = True
        if not to:
            self.problem(c, f"{path}.to", "", "missing to address in email config")
            ok = False
        if not smarthost:
            self.problem(
                c, f"{path}.smarthost", "", "no SMTP smarthost: set smarthost here or global.smtp_smarthost"
            )
            ok = False
        if not from_:
            self.problem(c, f"{path}.from", "", "no SMTP from address: set from here or global.smtp_from")
            ok = False
        headers = c.get("headers") or {}
        if not isinstance(headers, Mapping):
            self.problem(c, f"{path}.headers", "headers", "must be a mapping of strings")
            headers = {}
        if not ok:
            return None
        assert to and from_ and smarthost  # for mypy: checked just above
        return EmailConfig(
            to=to, from_=from_, smarthost=smarthost, hello=s("hello") or glob.smtp_hello,
            auth_username=s("auth_username") or glob.smtp_auth_username,
            auth_password=s("auth_password") or glob.smtp_auth_password,
            auth_identity=s("auth_identity") or glob.smtp_auth_identity,
            auth_secret=s("auth_secret") or glob.smtp_auth_secret,
            require_tls=b("require_tls", glob.smtp_require_tls),
            headers={str(k): str(v) for k, v in headers.items()}, html=s("html"), text=s("text"),
            send_resolved=b("send_resolved", False),
            tls_config=dict(c["tls_config"]) if isinstance(c.get("tls_config"), Mapping) else None,
        )  # fmt: skip

    # ---- route tree

    def read_route(self, node: Mapping[str, Any], path: str, *, root: bool = False) -> Route:
        self.unknown_keys(node, path, _ROUTE_KEYS)
        receiver = self.string(node, "receiver", f"{path}.receiver")
        if root and not receiver:
            self.problem(node, f"{path}.receiver", "", "root route must specify a default receiver")
        matchers = self.read_route_matchers(node, path)
        if root and matchers:
            self.problem(node, f"{path}.matchers", "", "root route must not have any matchers")
        cont = self.boolean(node, "continue", f"{path}.continue", False)
        if root and cont:
            self.problem(node, f"{path}.continue", "continue", "cannot have continue in root route")
        group_by = self.read_group_by(node, path)
        timers = {
            k: self.duration(node, k, f"{path}.{k}")
            for k in ("group_wait", "group_interval", "repeat_interval")
        }
        for k in ("group_interval", "repeat_interval"):
            if timers[k] == 0:
                self.problem(node, f"{path}.{k}", k, f"{k} cannot be zero")
        mute = tuple(str(x) for x in self.seq(node, "mute_time_intervals", f"{path}.mute_time_intervals"))
        active = tuple(
            str(x) for x in self.seq(node, "active_time_intervals", f"{path}.active_time_intervals")
        )
        if root and (mute or active):
            self.problem(node, f"{path}.mute_time_intervals", "", "root route must not have time intervals")
        escalate_after, escalate_to = self.read_escalation(node, path)
        children: list[Route] = []
        items = self.seq(node, "routes", f"{path}.routes")
        for i, item in enumerate(items):
            cpath = f"{path}.routes[{i}]"
            child = self.mapping(item, cpath, node, f"routes[{i}]")
            if child is not None:
                children.append(self.read_route(child, cpath))
        return Route(
            receiver=receiver, group_by=group_by, matchers=tuple(matchers), continue_=cont,
            group_wait=timers["group_wait"], group_interval=timers["group_interval"],
            repeat_interval=timers["repeat_interval"], routes=tuple(children),
            mute_time_intervals=mute, active_time_intervals=active,
            escalate_after=escalate_after, escalate_to=escalate_to,
        )  # fmt: skip

    def read_escalation(self, node: Mapping[str, Any], path: str) -> tuple[float | None, str | None]:
        """Ours: `escalate_after` (a positive duration) and `escalate_to` (a receiver), together."""
        after = self.duration(node, "escalate_after", f"{path}.escalate_after")
        to = self.string(node, "escalate_to", f"{path}.escalate_to")
        if after is not None and after <= 0:
            self.problem(node, f"{path}.escalate_after", "escalate_after",
                         "escalate_after must be a positive duration (e.g. 15m)")  # fmt: skip
            after = None
        if node.get("escalate_to") is not None and not to:
            self.problem(node, f"{path}.escalate_to", "escalate_to", "escalate_to must name a receiver")
        if (node.get("escalate_after") is None) != (node.get("escalate_to") is None):
            have, missing = ("escalate_after", "escalate_to")[:: 1 if "escalate_after" in node else -1]
            why = f"{have} needs {missing} on the same route (escalation is both or neither)"
            self.problem(node, f"{path}.{have}", have, why)
            return None, None
        return after, to or None

    def read_route_matchers(self, node: Mapping[str, Any], path: str) -> list[Matcher]:
        out: list[Matcher] = []
        items = self.seq(node, "matchers", f"{path}.matchers")
        for i, text in enumerate(items):
            try:
                out.extend(parse_matchers(str(text)))
            except ValueError as e:
                pos = item_position(node["matchers"], i)
                self.problems.append(
                    Problem(self.source, "", f"{path}.matchers[{i}]", str(e), *(pos or (None, None)))
                )
        for key, op in (("match", "="), ("match_re", "=~")):
            if node.get(key) is None:
                continue
            m = self.mapping(node[key], f"{path}.{key}", node, key)
            for name, value in (m or {}).items():
                try:
                    out.append(_matcher(str(name), op, str(value)))
                except ValueError as e:
                    self.problem(m, f"{path}.{key}.{name}", str(name), str(e))
        # Alertmanager sorts a route's matchers (by name, then value); the route id is built from them
        out.sort(key=lambda m: (m.name, m.value, m.regex, m.negate))
        return out

    def read_group_by(self, node: Mapping[str, Any], path: str) -> tuple[str, ...] | None:
        if node.get("group_by") is None:
            return None
        labels = [str(x) for x in self.seq(node, "group_by", f"{path}.group_by")]
        if GROUP_BY_ALL in labels:
            if len(labels) > 1:
                self.problem(
                    node,
                    f"{path}.group_by",
                    "group_by",
                    "cannot have wildcard group_by (`...`) and other labels at the same time",
                )
            return (GROUP_BY_ALL,)
        seen: set[str] = set()
        for ln in labels:
            if not _LABEL_NAME.match(ln):
                self.problem(node, f"{path}.group_by", "group_by", f"invalid label name {ln!r} in group_by")
            if ln in seen:
                self.problem(node, f"{path}.group_by", "group_by", f"duplicated label {ln!r} in group_by")
            seen.add(ln)
        return tuple(labels)

    def check_references(
        self,
        route: Route,
        node: Mapping[str, Any],
        path: str,
        receivers: Mapping[str, ReceiverConfig],
        intervals: Mapping[str, TimeInterval],
    ) -> None:
        if route.receiver and route.receiver not in receivers:
            known = ", ".join(sorted(receivers)) or "none defined"
            self.problem(
                node,
                f"{path}.receiver",
                "receiver",
                f"undefined receiver {route.receiver!r} used in route (receivers: {known})",
            )
        if route.escalate_to and route.escalate_to not in receivers:
            known = ", ".join(sorted(receivers)) or "none defined"
            self.problem(
                node,
                f"{path}.escalate_to",
                "escalate_to",
                f"undefined receiver {route.escalate_to!r} in escalate_to (receivers: {known})",
            )
        for key, names in (("mute_time_intervals", route.mute_time_intervals),
                           ("active_time_intervals", route.active_time_intervals)):  # fmt: skip
            for name in names:
                if name not in intervals:
                    self.problem(
                        node, f"{path}.{key}", key, f"undefined time interval {name!r} used in route"
                    )
        raw_children: list[Any] = node["routes"] if isinstance(node.get("routes"), list) else []
        for i, (child, raw) in enumerate(zip(route.routes, raw_children, strict=False)):
            if isinstance(raw, Mapping):
                self.check_references(child, raw, f"{path}.routes[{i}]", receivers, intervals)

    def check_fallbacks(self, receivers: Mapping[str, ReceiverConfig]) -> None:
        for name, rc in receivers.items():
            if rc.fallback is None:
                continue
            if rc.fallback not in receivers:
                self.problem(self.receiver_nodes.get(name), f"receivers ({name}).fallback", "fallback",
                             f"fallback receiver {rc.fallback!r} is not defined")  # fmt: skip
                continue
            chain: list[str] = [name]
            cur: str | None = rc.fallback
            while cur is not None and cur in receivers:
                if cur in chain:
                    loop = " -> ".join([*chain[chain.index(cur) :], cur])
                    # reported at each member of the loop (not at receivers that only lead into it)
                    if chain[0] == cur:
                        self.problem(
                            self.receiver_nodes.get(name),
                            f"receivers ({name}).fallback",
                            "fallback",
                            f"fallback loop: {loop}; end the chain at a receiver without fallback",
                        )
                    break
                chain.append(cur)
                cur = receivers[cur].fallback

    # ---- time intervals

    def read_intervals(self, top: Mapping[str, Any]) -> dict[str, TimeInterval]:
        out: dict[str, TimeInterval] = {}
        for section in ("time_intervals", "mute_time_intervals"):
            for i, item in enumerate(self.seq(top, section, section)):
                path = f"{section}[{i}]"
                node = self.mapping(item, path, top, section)
                if node is None:
                    continue
                self.unknown_keys(node, path, {"name", "time_intervals"})
                name = self.string(node, "name", f"{path}.name")
                if not name:
                    self.problem(node, f"{path}.name", "", "missing name in time interval")
                    continue
                if name in out:
                    self.problem(node, f"{path}.name", "name", f"time interval name {name!r} is not unique")
                    continue
                specs = []
                for j, raw in enumerate(self.seq(node, "time_intervals", f"{path}.time_intervals")):
                    spec = self.read_spec(raw, f"{path}.time_intervals[{j}]", node)
                    if spec is not None:
                        specs.append(spec)
                out[name] = TimeInterval(name, tuple(specs))
        return out

    def read_spec(self, raw: object, path: str, parent: Mapping[str, Any]) -> IntervalSpec | None:
        node = self.mapping(raw, path, parent, "time_intervals")
        if node is None:
            return None
        self.unknown_keys(node, path, _INTERVAL_KEYS)
        n_before = len(self.problems)
        times: list[TimeRange] = []
        for t in self.seq(node, "times", f"{path}.times"):
            m = t if isinstance(t, Mapping) else {}
            start, end = _clock(m.get("start_time")), _clock(m.get("end_time"))
            if start is None or end is None or start >= end:
                self.problem(
                    node,
                    f"{path}.times",
                    "times",
                    f"bad time range {t!r}: use start_time/end_time as HH:MM, start < end",
                )
            else:
                times.append(TimeRange(start, end))

        def ranges(
            key: str, lo: int, hi: int, names: Mapping[str, int] | None = None
        ) -> tuple[tuple[int, int], ...]:
            out: list[tuple[int, int]] = []
            for item in self.seq(node, key, f"{path}.{key}"):
                parts = str(item).lower().split(":")
                try:
                    vals = [names[p] if names and p in names else int(p) for p in parts]
                except ValueError:
                    vals = []
                if len(vals) == 1:
                    vals *= 2
                if len(vals) != 2 or not all(lo <= v <= hi and (v != 0 or lo == 0) for v in vals):
                    self.problem(node, f"{path}.{key}", key, f"bad {key} entry {item!r}")
                    continue
                out.append((vals[0], vals[1]))
            return tuple(out)

        weekdays = ranges("weekdays", 0, 6, _WEEKDAYS)
        days = ranges("days_of_month", -31, 31)
        months = ranges("months", 1, 12, _MONTHS)
        years = ranges("years", 1, 9999)
        location = self.string(node, "location", f"{path}.location", "UTC") or "UTC"
        try:
            ZoneInfo("UTC" if location == "Local" else location)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(node, f"{path}.location", "location", f"unknown time zone {location!r}")
        if len(self.problems) > n_before:
            return None
        return IntervalSpec(
            tuple(times), weekdays, days, months, years, "UTC" if location == "Local" else location
        )


def _clock(value: object) -> int | None:
    """`HH:MM` -> minutes since midnight (24:00 allowed as an end)."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value)) if value is not None else None
    if m is None:
        return None
    h, mm = int(m.group(1)), int(m.group(2))
    if mm > 59 or h > 24 or (h == 24 and mm):
        return None
    return h * 60 + mm
