"""History and audit queries: request parameters -> checked filters -> parameterised SQL.

Pure. User input only ever reaches PostgreSQL as asyncpg parameters (`$n`); identifiers in the
SQL are the configured schema (quoted) and fixed column names.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from connectors.api.amv2 import parse_filters
from rules.control.events import ControlError, parse_time
from rules.model import Matcher

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
STATES: Final = ("pending", "firing", "resolved", "inactive")
MAX_TEXT: Final = 1024


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    alertname: str | None = None
    instance: str | None = None
    matchers: tuple[Matcher, ...] = ()
    states: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    fingerprint: str | None = None
    cursor: tuple[datetime, str] | None = None  # (at, message_id) of the last row seen
    limit: int = DEFAULT_LIMIT


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key) or []
    if len(values) > 1:
        raise ControlError(f"{key}: give it once")
    if not values:
        return None
    if len(values[0]) > MAX_TEXT:
        raise ControlError(f"{key}: at most {MAX_TEXT} characters")
    return values[0]


def _when(params: Mapping[str, Sequence[str]], key: str) -> datetime | None:
    raw = _one(params, key)
    return None if raw is None else datetime.fromtimestamp(parse_time(raw, key), UTC)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ControlError(f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def encode_cursor(at: datetime, key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), key]).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[datetime, Any]:
    """The `next` value of a previous page; anything else is a 400."""
    try:
        at, key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error):
        raise ControlError("cursor: not a cursor of this API (use the `next` of the previous page)") from None
    if when.tzinfo is None or not isinstance(key, str | int):
        raise ControlError("cursor: not a cursor of this API (use the `next` of the previous page)")
    return when, key


def parse_history(params: Mapping[str, Sequence[str]]) -> HistoryFilter:
    """`alertname`, `instance`, `filter` (repeatable, `name="v"`), `state` (repeatable or comma
    list), `since`/`until` (RFC 3339), `fingerprint`, `cursor`, `limit`."""
    states: list[str] = []
    for raw in params.get("state") or []:
        states += [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in states if s not in STATES]
    if bad:
        raise ControlError(f"state: {bad[0][:64]!r} is not one of {', '.join(STATES)}")
    cursor = None
    raw_cursor = _one(params, "cursor")
    if raw_cursor is not None:
        at, key = decode_cursor(raw_cursor)
        cursor = (at, str(key))
    since, until = _when(params, "since"), _when(params, "until")
    if since and until and until <= since:
        raise ControlError("until: must be after since")
    return HistoryFilter(
        alertname=_one(params, "alertname"),
        instance=_one(params, "instance"),
        matchers=parse_filters(list(params.get("filter") or [])),
        states=tuple(dict.fromkeys(states)),
        since=since,
        until=until,
        fingerprint=_one(params, "fingerprint"),
        cursor=cursor,
        limit=parse_limit(_one(params, "limit")),
    )


def _matcher_sql(m: Matcher, arg: str, name_arg: str | None) -> str:
    # alertname is a column; other labels are in the labels jsonb (absent reads as "", as in PromQL)
    value = f"coalesce(labels->>{name_arg}, '')" if name_arg is not None else "alert_name"
    if m.regex:
        return f"{'NOT ' if m.negate else ''}({value} ~ {arg})"
    return f"{value} {'<>' if m.negate else '='} {arg}"


HISTORY_COLUMNS: Final = (
    "message_id, fingerprint, alert_name, state, at, active_at, value, threshold, labels, annotations,"
    " severity, fire_count, suppressed"
)


class _Query:
    """WHERE clauses whose values are all `$n` parameters (nothing built from input as SQL text),
    newest first and keyset paged on (at, `key`)."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def page(
        self,
        columns: str,
        table: str,
        key: str,
        since: datetime | None,
        until: datetime | None,
        cursor: tuple[datetime, Any] | None,
        limit: int,
    ) -> tuple[str, list[Any]]:
        """The SELECT with the time range and the page after `cursor`; limit + 1 rows are fetched
        to know if there is more."""
        if since is not None:
            self.where.append(f"at >= {self.arg(since)}")
        if until is not None:
            self.where.append(f"at < {self.arg(until)}")
        if cursor is not None:
            at_arg = self.arg(cursor[0])
            self.where.append(f"(at, {key}) < ({at_arg}, {self.arg(cursor[1])})")
        sql = f"SELECT {columns} FROM {table}"
        if self.where:
            sql += " WHERE " + " AND ".join(self.where)
        sql += f" ORDER BY at DESC, {key} DESC LIMIT {self.arg(limit + 1)}"
        return sql, self.args


def history_sql(schema_ident: str, f: HistoryFilter) -> tuple[str, list[Any]]:
    """Newest first, keyset paged on (at, message_id)."""
    q = _Query()
    where, arg = q.where, q.arg
    if f.alertname is not None:
        where.append(f"alert_name = {arg(f.alertname)}")
    if f.instance is not None:
        a = arg(f.instance)
        where.append(f"(labels->>'instance_id' = {a} OR labels->>'instance' = {a})")
    if f.fingerprint is not None:
        where.append(f"fingerprint = {arg(f.fingerprint)}")
    for m in f.matchers:
        value = f"^(?:{m.value})$" if m.regex else m.value  # anchored as Alertmanager's regexes
        where.append(_matcher_sql(m, arg(value), None if m.name == "alertname" else arg(m.name)))
    if f.states:
        where.append(f"state = ANY({arg(list(f.states))}::text[])")
    table = f"{schema_ident}.alert_events"
    return q.page(HISTORY_COLUMNS, table, "message_id", f.since, f.until, f.cursor, f.limit)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # a prefix: `silence` matches silence.create, silence.expire, ...
    fingerprint: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: tuple[datetime, int] | None = None
    limit: int = DEFAULT_LIMIT


def parse_audit(params: Mapping[str, Sequence[str]]) -> AuditFilter:
    cursor = None
    raw_cursor = _one(params, "cursor")
    if raw_cursor is not None:
        at, key = decode_cursor(raw_cursor)
        if not isinstance(key, int):
            raise ControlError("cursor: not a cursor of the audit (use the `next` of the previous page)")
        cursor = (at, key)
    return AuditFilter(
        actor=_one(params, "actor"),
        action=_one(params, "action"),
        fingerprint=_one(params, "fingerprint"),
        since=_when(params, "since"),
        until=_when(params, "until"),
        cursor=cursor,
        limit=parse_limit(_one(params, "limit")),
    )


AUDIT_COLUMNS: Final = "id, at, actor, action, target, fingerprint, detail, source"


def audit_sql(schema_ident: str, f: AuditFilter) -> tuple[str, list[Any]]:
    """Newest first, keyset paged on (at, id)."""
    q = _Query()
    if f.actor is not None:
        q.where.append(f"actor = {q.arg(f.actor)}")
    if f.action is not None:
        a = q.arg(f.action)
        q.where.append(f"(action = {a} OR starts_with(action, {a} || '.'))")
    if f.fingerprint is not None:
        q.where.append(f"fingerprint = {q.arg(f.fingerprint)}")
    table = f"{schema_ident}.control_audit"
    return q.page(AUDIT_COLUMNS, table, "id", f.since, f.until, f.cursor, f.limit)
