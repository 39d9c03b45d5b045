"""PostgreSQL for the API: `alert_events` (read; webhook rows written) and `control_audit`.

An asyncpg pool on the server's event loop. Every value goes in as a parameter; the only text
pasted into SQL is the configured schema, quoted (`qident`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from connectors.api.query import AuditFilter, HistoryFilter, audit_sql, history_sql
from connectors.errors import ConnectorError
from connectors.storage.timescale import AlertRow, _sql, qident
from rules.control.events import AckEvent, ControlEvent, SilenceEvent, encode, to_json

MAX_CURRENT: Final = 5000  # firing alerts listed at most (GET /api/v2/alerts)
MAX_TIMELINE: Final = 1000


class StoreError(ConnectorError):
    """PostgreSQL failed or refused; the message says what the API was doing."""


def event_key(event: ControlEvent) -> str:
    """The audit's idempotency key of a control event: the hash of its wire value, the same in
    the replica that wrote it and in every one that reads it back."""
    return hashlib.sha256(encode(event)[1]).hexdigest()


def describe(event: ControlEvent) -> tuple[str, str, str | None, str]:
    """(action, target, fingerprint, actor as the event names it) of a control event."""
    if isinstance(event, SilenceEvent):
        action = "silence.expire" if event.ends_at <= event.updated_at else "silence.set"
        return action, event.id, None, event.created_by
    if isinstance(event, AckEvent):
        return ("ack" if event.acked else "unack"), event.fingerprint, event.fingerprint, event.by
    return f"ruleset.{event.status}", f"{event.job}@{event.host}", None, event.job


def event_time(event: ControlEvent) -> float:
    if isinstance(event, SilenceEvent):
        return event.updated_at
    return event.at


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def _init(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Store:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.s = qident(schema)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Connect and create the tables (idempotent; the storage flow creates alert_events too)."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=4, init=_init, command_timeout=30, timeout=10
            )
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.schema}.gds api")
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.s}")
                await conn.execute(_sql("alert_events", self.schema))
                await conn.execute(_sql("control_audit", self.schema))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"PostgreSQL (PG_DSN): {type(exc).__name__}: {exc}") from exc

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # ------------------------------------------------------------------ audit

    async def record_event(
        self, event: ControlEvent, *, source: str, actor: str | None = None, action: str | None = None
    ) -> None:
        """One control event in the audit, once. The API's own write names the token (actor) and
        wins over the row its reader may have inserted first."""
        ev_action, target, fp, ev_actor = describe(event)
        detail = to_json(event)
        sql = (
            f"INSERT INTO {self.s}.control_audit"
            " (event_key, at, actor, action, target, fingerprint, detail, source)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_key) DO "
        )
        sql += (
            "UPDATE SET actor = EXCLUDED.actor, action = EXCLUDED.action, source = EXCLUDED.source"
            if source == "api"
            else "NOTHING"
        )
        await self.pool.execute(
            sql,
            event_key(event),
            _utc(event_time(event)),
            actor or ev_actor,
            action or ev_action,
            target,
            fp,
            detail,
            source,
        )

    async def record_write(
        self, *, at: float, actor: str, action: str, target: str, detail: Mapping[str, Any]
    ) -> None:
        """A write that is not a control event (webhook proxy)."""
        await self.pool.execute(
            f"INSERT INTO {self.s}.control_audit (at, actor, action, target, detail, source)"
            " VALUES ($1, $2, $3, $4, $5, 'api')",
            _utc(at),
            actor,
            action,
            target,
            dict(detail),
        )

    async def audit(self, f: AuditFilter) -> list[Mapping[str, Any]]:
        sql, args = audit_sql(self.s, f)
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    # ------------------------------------------------------------------ alerts

    async def current(self, limit: int = MAX_CURRENT) -> list[Mapping[str, Any]]:
        """The newest event of each alert, where that event is `firing`."""
        rows = await self.pool.fetch(
            "SELECT * FROM (SELECT DISTINCT ON (fingerprint) fingerprint, alert_name, state, at, active_at,"
            f" value, labels, annotations, severity, suppressed FROM {self.s}.alert_events"
            " ORDER BY fingerprint, at DESC, recorded_at DESC) newest"
            " WHERE state = 'firing' ORDER BY at DESC, fingerprint LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def newest(self, fingerprint: str) -> Mapping[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT fingerprint, alert_name, state, at, active_at, labels, severity"
            f" FROM {self.s}.alert_events WHERE fingerprint = $1 ORDER BY at DESC, recorded_at DESC LIMIT 1",
            fingerprint,
        )
        return dict(row) if row else None

    async def history(self, f: HistoryFilter) -> list[Mapping[str, Any]]:
        sql, args = history_sql(self.s, f)
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    async def timeline(self, fingerprint: str) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """(alert events, audit rows) of one alert, oldest first."""
        events = await self.pool.fetch(
            "SELECT message_id, state, at, active_at, value, labels, annotations, severity, suppressed"
            f" FROM {self.s}.alert_events WHERE fingerprint = $1 ORDER BY at DESC, recorded_at DESC LIMIT $2",
            fingerprint,
            MAX_TIMELINE,
        )
        audit = await self.pool.fetch(
            "SELECT id, at, actor, action, target, detail, source"
            f" FROM {self.s}.control_audit WHERE fingerprint = $1 ORDER BY at DESC, id DESC LIMIT $2",
            fingerprint,
            MAX_TIMELINE,
        )
        return [dict(r) for r in reversed(events)], [dict(r) for r in reversed(audit)]

    async def insert_webhook(self, rows: Sequence[AlertRow]) -> int:
        """The rows not stored yet (by message_id); how many were new."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = 0
            for row in rows:
                status = await conn.execute(
                    f"INSERT INTO {self.s}.alert_events (message_id, fingerprint, alert_name, state, at,"
                    " active_at, value, threshold, labels, annotations, severity, fire_count, suppressed)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb,"
                    " $11, $12, $13)"
                    " ON CONFLICT (message_id) DO NOTHING",
                    *row.as_tuple(),
                )
                inserted += int(status.rsplit(" ", 1)[-1])
        return inserted
