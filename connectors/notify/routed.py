"""Delivery of grouped notifications to the receivers of a routing configuration.

`build_senders(config)` turns each `receivers:` entry of an alertmanager.yml-style file
(`rules.routing.config`) into its senders (one per `*_configs` item, `connectors.notify.receivers`),
wiring each receiver's `fallback:`. `RoutedSink` is the Bytewax sink of the delivery flow: for
each `GroupNotification` it sends to every config of its receiver and acts on the outcome:
delivered, dead-lettered when permanently rejected (each alert of the group, with the error, to
`gds.alerts.dlq`), or retried until delivered when the failure is transient: the worker waits,
so the backlog stays in Kafka and nothing is lost while a receiver is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.notify.policy import NotifyError, RetryPolicy
from connectors.notify.receivers import (
    EmailSender,
    OutcomeKind,
    Sender,
    SenderOptions,
    SmtpConfig,
    alertmanager_sender,
    notification_service_sender,
    pagerduty_sender,
    slack_sender,
    webhook_sender,
)
from connectors.ops.health import HEALTH
from rules.model import AlertEvent, AlertState
from rules.routing.config import ReceiverConfig, RoutingConfig
from rules.routing.types import GroupNotification

log = logging.getLogger(__name__)

Undeliverable = Callable[[AlertEvent, Mapping[str, Any] | None, str], None]
MuteCheck = Callable[[Sequence[AlertEvent]], Sequence[bool]]


@dataclass(frozen=True, slots=True)
class Part:
    """One `*_configs` item of a receiver: its sender and whether it wants resolved alerts."""

    sender: Sender
    send_resolved: bool


def _options(rc: ReceiverConfig, default: SenderOptions) -> SenderOptions:
    r = rc.retry
    retry = default.retry
    if r.max_attempts is not None or r.deadline is not None:
        retry = RetryPolicy(max_attempts=r.max_attempts, deadline_s=r.deadline)
    if r.initial_backoff is not None or r.max_backoff is not None:
        base = r.initial_backoff or retry.base_s
        retry = replace(retry, base_s=base, cap_s=max(base, r.max_backoff or retry.cap_s))
    opts = replace(default, retry=retry)
    if rc.max_in_flight is not None:
        opts = replace(opts, max_in_flight=rc.max_in_flight)
    if rc.rate_limit is not None:
        opts = replace(opts, rate_per_s=rc.rate_limit.count / rc.rate_limit.per, burst=rc.rate_limit.count)
    return opts


def _parts(rc: ReceiverConfig, opts: SenderOptions, fallback: Sender | None) -> list[Part]:
    name = rc.name
    parts: list[Part] = []
    for c in rc.notification_service_configs:
        parts.append(
            Part(notification_service_sender(name, c.url, options=opts, fallback=fallback), c.send_resolved)
        )
    for w in rc.webhook_configs:
        parts.append(
            Part(
                webhook_sender(name, w.url, max_alerts=w.max_alerts, options=opts, fallback=fallback),
                w.send_resolved,
            )
        )
    for a in rc.alertmanager_configs:
        parts.append(Part(alertmanager_sender(name, a.url, options=opts, fallback=fallback), a.send_resolved))
    for s in rc.slack_configs:
        sender = slack_sender(
            name,
            s.api_url,
            channel=s.channel or "",
            username=s.username or "",
            options=opts,
            fallback=fallback,
        )
        parts.append(Part(sender, s.send_resolved))
    for p in rc.pagerduty_configs:
        key = p.routing_key or p.service_key or ""
        parts.append(
            Part(pagerduty_sender(name, key, url=p.url, options=opts, fallback=fallback), p.send_resolved)
        )
    for e in rc.email_configs:
        host, _, port = e.smarthost.rpartition(":")
        smtp = SmtpConfig(
            host=host,
            port=int(port or 25),
            sender=e.from_,
            to=tuple(t.strip() for t in e.to.split(",")),
            require_tls=e.require_tls,
            username=e.auth_username or "",
            password=e.auth_password or "",
            hello=e.hello,
        )
        parts.append(Part(EmailSender(name, smtp, opts, fallback=fallback), e.send_resolved))
    return parts


def build_senders(config: RoutingConfig, default: SenderOptions | None = None) -> dict[str, list[Part]]:
    """Every receiver's parts; a receiver's `fallback:` is its fallback receiver's first part."""
    default = default or SenderOptions()
    built: dict[str, list[Part]] = {}

    def build(name: str, seen: tuple[str, ...] = ()) -> list[Part]:
        if name in built:
            return built[name]
        rc = config.receivers[name]
        fallback = None
        if rc.fallback and rc.fallback not in seen:  # loops are refused at load; be safe anyway
            fb = build(rc.fallback, (*seen, name))
            fallback = fb[0].sender if fb else None
        built[name] = _parts(rc, _options(rc, default), fallback)
        return built[name]

    for name in config.receivers:
        build(name)
    return built


def _for_part(n: GroupNotification, part: Part) -> GroupNotification | None:
    """What one config is sent: without resolved alerts unless it wants them; nothing left, nothing sent."""
    if part.send_resolved:
        return n
    firing = tuple(a for a in n.alerts if a.state is AlertState.FIRING)
    return replace(n, alerts=firing) if firing else None


@dataclass
class _Partition(StatelessSinkPartition[GroupNotification]):
    parts: Mapping[str, Sequence[Part]]
    on_rejected: Undeliverable
    is_muted: MuteCheck | None = None  # Redis maintenance keys (connectors.notify.maintenance)
    flow: str = "notify"  # whose health reports a receiver outage
    sleep: Callable[[float], None] = time.sleep
    pause_s: float = 1.0  # between rounds of a transient failure when the receiver gave no hint
    delivered: int = field(default=0)
    muted: int = field(default=0)
    waiting: bool = field(default=False)  # a receiver outage is reported to the flow's health

    def _unmuted(self, n: GroupNotification) -> GroupNotification | None:
        """The group without the alerts of instances in maintenance; a failed check mutes nothing."""
        if self.is_muted is None:
            return n
        try:
            flags = list(self.is_muted(n.alerts))
        except Exception as exc:  # maintenance unknown: deliver (fail open)
            log.warning("notify: maintenance check failed, delivering anyway: %s", exc)
            return n
        keep = tuple(a for a, muted in zip(n.alerts, flags, strict=True) if not muted)
        self.muted += len(n.alerts) - len(keep)
        return replace(n, alerts=keep) if keep else None

    def write_batch(self, items: list[GroupNotification]) -> None:
        for group in items:
            n = self._unmuted(group)
            if n is None:
                continue
            for part in self.parts.get(n.receiver, ()):
                wanted = _for_part(n, part)
                if wanted is not None:
                    self._send(part, wanted)

    def _send(self, part: Part, n: GroupNotification) -> None:
        while True:
            out = part.sender.send(n)
            if out.kind is OutcomeKind.DELIVERED:
                self.delivered += 1
                if self.waiting:  # only after an outage: no lock taken per delivery otherwise
                    HEALTH.block(self.flow, None)
                    self.waiting = False
                return
            if out.kind is OutcomeKind.REJECTED:
                log.warning("notify: %s rejected group %s: %s", n.receiver, n.group_key, out.error)
                for alert in n.alerts:
                    self.on_rejected(alert, None, f"receiver {n.receiver}: {out.error}")
                return
            # transient: the backlog waits here (and in Kafka behind it) until the receiver is back;
            # the pod says so (unready, still live: no restart loop through a long outage)
            HEALTH.block(self.flow, f"receiver {n.receiver} unavailable: {out.error}")
            self.waiting = True
            HEALTH.alive(self.flow)
            wait = max(out.retry_after_s or 0.0, self.pause_s)
            log.info(
                "notify: %s unavailable (%s), trying group %s again in %.1fs",
                n.receiver,
                out.error,
                n.group_key,
                wait,
            )
            self.sleep(wait)

    def close(self) -> None:
        for parts in self.parts.values():
            for p in parts:
                p.sender.close()


class RoutedSink(DynamicSink[GroupNotification]):
    """Each worker builds its own senders (their clients and breakers are per process)."""

    def __init__(
        self,
        config: RoutingConfig,
        on_rejected: Undeliverable,
        default: SenderOptions | None = None,
        is_muted: MuteCheck | None = None,
        flow: str = "notify",
    ):
        self.config = config
        self.on_rejected = on_rejected
        self.default = default
        self.is_muted = is_muted
        self.flow = flow
        if not config.receivers:
            raise NotifyError("routing configuration has no receivers")

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(
            build_senders(self.config, self.default), self.on_rejected, self.is_muted, self.flow
        )
