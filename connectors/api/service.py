"""The control plane's logic behind the HTTP API and the console: one `ControlService`.

State: the control topic folded in memory (`ControlState`), by a `ControlReader` thread calling
`apply`. A write publishes its event (durable before it returns), folds it at once
(read-your-writes) and records it in the audit with the caller's name. Alerts, history and
timelines are read from PostgreSQL through `Store`.

Errors: `ControlError` (bad input, 400), `NotFoundError` (404), `ConflictError` (409), `UnavailableError`
(the control topic cannot be written, 503). Their messages are safe to show to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Protocol

import anyio.to_thread

from connectors.api.amv2 import CurrentAlert, matches, sort_silences
from connectors.api.metrics import ApiMetrics
from connectors.api.query import AuditFilter, HistoryFilter, encode_cursor
from connectors.api.store import Store, describe
from connectors.api.webhook import rows_from_payload
from connectors.errors import ConnectorError
from rules.control.events import (
    EMPTY,
    MAX_TEXT,
    AckEvent,
    ControlError,
    ControlEvent,
    ControlState,
    SilenceEvent,
    fold,
    is_acked,
    new_id,
    silence_from_json,
    stamp,
)
from rules.metric import iso
from rules.model import Matcher

log = logging.getLogger(__name__)

MAX_MATCHERS: Final = 64
MAX_AUDIT_BACKLOG: Final = 100_000


class NotFoundError(ControlError):
    """What the request names does not exist (404)."""


class ConflictError(ControlError):
    """The request does not fit the current state, e.g. acknowledging a resolved alert (409)."""


class UnavailableError(ConnectorError):
    """The control topic or PostgreSQL cannot be used now (503); retry later."""


class Publisher(Protocol):
    def publish(self, event: ControlEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class _AuditItem:
    event: ControlEvent
    source: str  # "api" (our write, actor = the token's name) or "topic" (read back / others')
    actor: str | None = None
    action: str | None = None


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class ControlService:
    def __init__(
        self,
        store: Store,
        publisher: Publisher | None,
        *,
        metrics: ApiMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.metrics = metrics or ApiMetrics()
        self.clock = clock
        self.started = clock()
        self._state: ControlState = EMPTY
        self._lock = threading.Lock()
        self._backlog: deque[_AuditItem] = deque(maxlen=MAX_AUDIT_BACKLOG)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ControlState:
        return self._state

    def _fold(self, event: ControlEvent) -> None:
        with self._lock:
            self._state = fold(self._state, event)
        self.metrics.events_applied.labels(type(event).__name__.removesuffix("Event").lower()).inc()

    def apply(self, event: ControlEvent) -> None:
        """From the reader thread: fold the event and queue it for the audit (idempotent there)."""
        self._fold(event)
        self._queue(_AuditItem(event, "topic"))

    def _queue(self, item: _AuditItem) -> None:
        self._backlog.append(item)
        self.metrics.audit_backlog.set(len(self._backlog))
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    async def start(self) -> None:
        """On the server's loop: start writing queued audit rows."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._audit_writer(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _audit_writer(self) -> None:
        assert self._wake is not None
        delay = 0.5
        while True:
            if not self._backlog:
                await self._wake.wait()
                self._wake.clear()
                continue
            item = self._backlog[0]
            try:
                await self.store.record_event(
                    item.event, source=item.source, actor=item.actor, action=item.action
                )
            except Exception as exc:  # PostgreSQL down: keep the row, retry (the state is already folded)
                self.metrics.audit_failures.inc()
                log.warning("audit insert failed (%s: %s); retry in %.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            self._backlog.popleft()
            self.metrics.audit_backlog.set(len(self._backlog))

    @property
    def audit_backlog(self) -> int:
        return len(self._backlog)

    async def _write(self, event: ControlEvent, actor: str, action: str) -> None:
        """Publish (durable), fold (read-your-writes), audit with the caller's name."""
        if self.publisher is None:
            raise UnavailableError("the control topic is off (CONTROL_TOPIC=off): writes are disabled")
        try:
            await anyio.to_thread.run_sync(self.publisher.publish, event)
        except ConnectorError as exc:
            raise UnavailableError(f"not saved, retry: {exc}") from exc
        self._fold(event)
        self.metrics.writes.labels(action).inc()
        try:
            await self.store.record_event(event, source="api", actor=actor, action=action)
        except Exception as exc:  # the write is durable; its audit row is retried in the background
            log.warning("audit of %s by %s deferred: %s: %s", action, actor, type(exc).__name__, exc)
            self._queue(_AuditItem(event, "api", actor, action))

    # ------------------------------------------------------------------ silences

    def list_silences(self, filters: Sequence[Matcher] = ()) -> list[SilenceEvent]:
        """Every silence (expired too, as Alertmanager lists them), in Alertmanager's order."""
        from connectors.api.amv2 import silence_matches_filter

        chosen = [s for s in self._state.silences.values() if silence_matches_filter(s, filters)]
        return sort_silences(chosen, self.clock())

    def get_silence(self, silence_id: str) -> SilenceEvent:
        found = self._state.silences.get(silence_id)
        if found is None:
            raise NotFoundError(f"silence {silence_id[:64]!r} not found")
        return found

    async def create_or_update_silence(self, obj: Mapping[str, Any], actor: str) -> SilenceEvent:
        """A PostableSilence; with `id`, an update. Alertmanager's rules: a start in the past is
        now (an active silence keeps its start), the end must be in the future, an expired
        silence is not revived (the update creates a new silence)."""
        if not isinstance(obj, Mapping):
            raise ControlError("expected a JSON object (a PostableSilence)")
        raw_matchers = obj.get("matchers")
        if isinstance(raw_matchers, list) and len(raw_matchers) > MAX_MATCHERS:
            raise ControlError(f"matchers: at most {MAX_MATCHERS}")
        now = stamp(self.clock())
        sid = obj.get("id") or None
        if sid is not None and (not isinstance(sid, str) or len(sid) > 64):
            raise ControlError("id: expected a silence id")
        existing = self.get_silence(sid) if sid is not None else None
        if existing is not None and existing.state(now) == "expired":
            existing, sid = None, None
        silence = silence_from_json(obj, id=sid or new_id(), updated_at=now)
        if silence.ends_at <= now:
            raise ControlError("endsAt: must be in the future (to end a silence, expire it)")
        starts = silence.starts_at
        if starts < now:
            starts = existing.starts_at if existing is not None and existing.state(now) == "active" else now
        silence = replace(silence, starts_at=stamp(starts), ends_at=stamp(silence.ends_at))
        await self._write(silence, actor, "silence.update" if existing is not None else "silence.create")
        return silence

    async def expire_silence(self, silence_id: str, actor: str) -> SilenceEvent:
        now = stamp(self.clock())
        silence = self.get_silence(silence_id)
        if silence.state(now) == "expired":
            raise ConflictError(f"silence {silence_id} is already expired")
        expired = silence.expired(now)
        await self._write(expired, actor, "silence.expire")
        return expired

    # ------------------------------------------------------------------ alerts

    def _current(self, row: Mapping[str, Any], now: float) -> CurrentAlert:
        labels = {"alertname": row["alert_name"], **(row.get("labels") or {})}
        active_at = _ts(row.get("active_at")) or _ts(row["at"]) or 0.0
        state = self._state
        silenced = tuple(sorted(s.id for s in state.silences.values() if s.mutes(labels, now)))
        ack = is_acked(state, row["fingerprint"], stamp(active_at))
        return CurrentAlert(
            fingerprint=row["fingerprint"],
            alert_name=row["alert_name"],
            labels=labels,
            annotations=row.get("annotations") or {},
            active_at=active_at,
            at=_ts(row["at"]) or 0.0,
            severity=row["severity"],
            value=row.get("value"),
            suppressed=row.get("suppressed"),
            silenced_by=silenced,
            acked_by=ack.by if ack else None,
            acked_at=ack.at if ack else None,
            ack_comment=ack.comment if ack else "",
        )

    async def current_alerts(self, matchers: Sequence[Matcher] = ()) -> list[CurrentAlert]:
        """Firing alerts (newest event per fingerprint is `firing`), with silences and acks now."""
        now = self.clock()
        rows = await self.store.current()
        alerts = [self._current(r, now) for r in rows]
        return [a for a in alerts if matches(matchers, a.labels)]

    async def _incident(self, fingerprint: str) -> Mapping[str, Any]:
        if not fingerprint or len(fingerprint) > 128:
            raise ControlError("fingerprint: expected an alert's fingerprint")
        row = await self.store.newest(fingerprint)
        if row is None:
            raise NotFoundError(f"no alert with fingerprint {fingerprint!r} in the history")
        return row

    async def acknowledge(self, fingerprint: str, actor: str, comment: str = "") -> AckEvent:
        """Acknowledge the alert's current incident (a new incident is not acknowledged)."""
        return await self._ack(fingerprint, actor, comment, acked=True)

    async def unacknowledge(self, fingerprint: str, actor: str, comment: str = "") -> AckEvent:
        return await self._ack(fingerprint, actor, comment, acked=False)

    async def _ack(self, fingerprint: str, actor: str, comment: str, *, acked: bool) -> AckEvent:
        if not isinstance(comment, str) or len(comment) > MAX_TEXT:
            raise ControlError(f"comment: a string of at most {MAX_TEXT} characters")
        row = await self._incident(fingerprint)
        if row["state"] != "firing":
            raise ConflictError(f"alert {fingerprint} is {row['state']}, not firing: nothing to acknowledge")
        active_at = stamp(_ts(row.get("active_at")) or _ts(row["at"]) or 0.0)
        current = is_acked(self._state, fingerprint, active_at)
        if not acked and current is None:
            raise ConflictError(f"alert {fingerprint} is not acknowledged")
        labels = {"alertname": row["alert_name"], **(row.get("labels") or {})}
        event = AckEvent(
            fingerprint=fingerprint,
            active_at=active_at,
            acked=acked,
            by=actor,
            at=stamp(self.clock()),
            comment=comment,
            labels=tuple(sorted(labels.items())),
            id=new_id(),
        )
        await self._write(event, actor, "ack" if acked else "unack")
        return event

    # ------------------------------------------------------------------ history

    async def history(self, f: HistoryFilter) -> tuple[list[dict[str, Any]], str | None]:
        """A page of alert events, newest first, and the cursor of the next page (None: last)."""
        rows = await self.store.history(f)
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        page = [_event_json(r) for r in rows]
        cursor = encode_cursor(rows[-1]["at"], rows[-1]["message_id"]) if more else None
        return page, cursor

    async def audit(self, f: AuditFilter) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the audit (writes and control events, rule-set reloads included)."""
        rows = await self.store.audit(f)
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        page = [
            {
                "id": r["id"],
                "at": iso(r["at"].timestamp()),
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "fingerprint": r["fingerprint"],
                "source": r["source"],
                "detail": r["detail"],
            }
            for r in rows
        ]
        cursor = encode_cursor(rows[-1]["at"], rows[-1]["id"]) if more else None
        return page, cursor

    async def timeline(self, fingerprint: str) -> dict[str, Any]:
        """One alert's story, oldest first: its events, acks and other audited writes naming it,
        and the silences that muted it; `status` of its current incident: open, acknowledged or
        resolved."""
        newest = await self._incident(fingerprint)
        events, audit = await self.store.timeline(fingerprint)
        labels = {"alertname": newest["alert_name"], **(newest.get("labels") or {})}
        entries: list[dict[str, Any]] = [
            {"at": iso(r["at"].timestamp()), "kind": "event", "state": r["state"], **_event_json(r)}
            for r in events
        ]
        for r in audit:
            detail = r["detail"] or {}
            entries.append(
                {
                    "at": iso(r["at"].timestamp()),
                    "kind": r["action"],
                    "by": r["actor"],
                    "comment": detail.get("comment", ""),
                    "source": r["source"],
                }
            )
        first = _ts(events[0]["at"]) if events else None
        last = self.clock() if newest["state"] == "firing" else _ts(newest["at"])
        silences = []
        for s in self._state.silences.values():
            if not all(m.matches(labels) for m in s.matchers):
                continue
            if first is not None and last is not None and (s.ends_at <= first or s.starts_at > last):
                continue
            silences.append(s)
            if s.ends_at <= self.clock():  # expired (or ended): the alert is released then
                entries.append({"at": iso(s.ends_at), "kind": "unsilenced", "silence": s.id})
            entries.append(
                {
                    "at": iso(s.starts_at),
                    "kind": "silenced",
                    "silence": s.id,
                    "until": iso(s.ends_at),
                    "by": s.created_by,
                    "comment": s.comment,
                }
            )
        entries.sort(key=lambda e: e["at"])
        active_at = stamp(_ts(newest.get("active_at")) or _ts(newest["at"]) or 0.0)
        ack = is_acked(self._state, fingerprint, active_at)
        status = (
            "resolved"
            if newest["state"] == "resolved"
            else "acknowledged"
            if ack is not None and newest["state"] == "firing"
            else "open"
            if newest["state"] == "firing"
            else newest["state"]
        )
        return {
            "fingerprint": fingerprint,
            "alertname": newest["alert_name"],
            "labels": labels,
            "status": status,
            "acknowledgement": (
                {"by": ack.by, "at": iso(ack.at), "comment": ack.comment} if ack is not None else None
            ),
            "silencedBy": sorted(s.id for s in silences if s.mutes(labels, self.clock())),
            "entries": entries,
        }

    # ------------------------------------------------------------------ webhook proxy

    async def proxy_webhook(self, payload: object, actor: str) -> tuple[int, int]:
        """An Alertmanager webhook payload into `alert_events`: (alerts received, rows new)."""
        rows = rows_from_payload(payload)
        inserted = await self.store.insert_webhook(rows)
        assert isinstance(payload, Mapping)  # rows_from_payload checked it
        receiver, group_key = payload.get("receiver", ""), payload.get("groupKey", "")
        self.metrics.writes.labels("webhook.proxy").inc()
        await self.store.record_write(
            at=self.clock(),
            actor=actor,
            action="webhook.proxy",
            target=str(receiver)[:256],
            detail={"alerts": len(rows), "inserted": inserted, "groupKey": str(group_key)[:1024]},
        )
        return len(rows), inserted


def _event_json(r: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messageId": r["message_id"],
        "state": r["state"],
        "at": iso(r["at"].timestamp()),
        "activeAt": iso(r["active_at"].timestamp()) if r.get("active_at") else None,
        "value": r.get("value"),
        "labels": r.get("labels") or {},
        "annotations": r.get("annotations") or {},
        "severity": r.get("severity"),
        "suppressed": r.get("suppressed"),
    }
    for k in ("fingerprint", "alert_name"):
        if k in r:
            out["alertname" if k == "alert_name" else k] = r[k]
    return out


__all__ = ["ConflictError", "ControlService", "NotFoundError", "UnavailableError", "describe"]
