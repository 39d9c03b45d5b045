"""The delivery job: `python -m bytewax.run flows.notify`, and `python -m flows.notify --redrive`.

It reads the `alerts` topic (every transition the evaluation produced) and delivers what is
meant for delivery, with its own recovery state: evaluation never waits on a receiver, and a
receiver that is down leaves a backlog in Kafka, not a loss. With the default
`NOTIFY_DEAD_LETTER_TRANSIENT=false` a notification is retried until its receiver takes it,
in order per alert (the topic is keyed by fingerprint); only permanent rejections go to
`gds.alerts.dlq`, and `--redrive` delivers those again (once the receiver or the payload is
fixed) with their original `message_id`: receivers deduplicate.

`flows.alerting` delivers inline by default (`NOTIFY_DELIVERY=inline`, one command end to
end); with `NOTIFY_DELIVERY=separate` it only writes the topic and this job delivers, on its
own pods and scale. Wiring only: decoding is `AlertEvent.from_record`, delivery is
`connectors/notify/`.

With routes and CONTROL_TOPIC set, the control topic is a second input: acknowledgements
(`AckEvent`s) are routed by the alert's labels to the alert's groups, where a route's
`escalate_after` + `escalate_to` escalates what nobody acknowledged in time
(rules/routing/escalation.py, docs/escalation.md). The acks on the topic at start-up are read
before the flow starts, so a restart never escalates an alert acknowledged meanwhile.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, Sink

from connectors.config import ConfigError, MonitoringSettings, Settings
from connectors.kafka.message import Message
from connectors.ops.metrics import InstrumentedPartitionedSink, InstrumentedSink
from flows.common import Poison, lazy_flow, poison_to_dlq
from rules.control.events import AckEvent
from rules.metric import iso, utc
from rules.model import AlertEvent, RulesError
from rules.routing.config import RoutingConfig
from rules.routing.escalation import Escalation, EscalationState, escalate, next_escalation, take_acks
from rules.routing.group import GroupState, Timers, is_muted, next_flush
from rules.routing.group import step as group_step
from rules.routing.route import MatchedRoute, group_key, match, muted
from rules.routing.types import GroupNotification

JOB = "notify"
ALERTMANAGER_RESEND_S = 60.0
"""How often firing alerts are pushed again to an Alertmanager (Prometheus' resend delay): its
alerts end at the push time + resolve_timeout (5 m) unless refreshed."""
log = logging.getLogger(__name__)


def is_heartbeat(msg: Message) -> bool:
    """Heartbeats share the topic; they carry a `type` header (and a `type` key in the JSON)."""
    return any(k == "type" for k, _ in msg.headers or ())


def decode_records(batch: list[Message]) -> list[AlertEvent | Poison]:
    """Alert records of one batch; heartbeats skipped, anything else unreadable is poison."""
    out: list[AlertEvent | Poison] = []
    for msg in batch:
        if msg.value is None or is_heartbeat(msg):
            continue
        try:
            record = json.loads(msg.value)
            if not isinstance(record, dict):
                raise RulesError("not a JSON object")
            if record.get("type") is not None:  # a heartbeat without its header
                continue
            out.append(AlertEvent.from_record(record))
        except (ValueError, RulesError) as exc:
            out.append(Poison(msg, f"alert record: {exc}", stage="notify-decode"))
    return out


def to_deliver(event: AlertEvent) -> bool:
    return event.notify is not None and event.suppressed is None


def deliver(
    step_id: str,
    events: Stream[AlertEvent],
    notify: Sink[Any],
    notify_fn: Callable[[AlertEvent], Any] = lambda e: e,
    ticks: Stream[Any] | None = None,
) -> None:
    """The delivery sub-flow: the events meant for delivery to the notification sink.

    Shared by this job (events from the topic) and the alerting job (events as evaluated).
    `ticks` (heartbeats) let the sink look again at notifications it parked for maintenance.
    """
    items = op.map(f"{step_id}-item", op.filter(f"{step_id}-to-send", events, to_deliver), notify_fn)
    if ticks is not None:
        from connectors.notify.sink import Recheck  # the HTTP client only where delivery happens

        rechecks = op.map(f"{step_id}-recheck", ticks, lambda _: Recheck())
        items = op.merge(f"{step_id}-and-rechecks", items, rechecks)
    if isinstance(notify, FixedPartitionedSink):  # the pipelined sink: one partition for all
        items = op.map(f"{step_id}-to-partition", items, _to_partition)
    op.output(step_id, items, notify)


def _to_partition(item: Any) -> tuple[str, Any]:
    # PipelinedNotifySink.PART (its module, with the HTTP client, is imported where it delivers)
    return ("notify", item)


@dataclass(frozen=True, slots=True)
class Routed:
    """An event (or an alert's acknowledgement) on its way to one group: the matched route's
    receiver, labels, timers and escalation."""

    group_key: str
    receiver: str
    group_labels: tuple[tuple[str, str], ...]
    timers: Timers
    event: AlertEvent | AckEvent
    escalation: Escalation | None = None


def _routed(
    config: RoutingConfig, m: MatchedRoute, labels: Mapping[str, str], e: AlertEvent | AckEvent
) -> Routed:
    key, group_labels = group_key(m, labels)
    rc = config.receivers[m.receiver]
    timers = replace(m.timers, send_resolved=rc.send_resolved)
    if rc.alertmanager_configs:  # pushed alerts expire unless re-sent, as Prometheus does
        timers = replace(
            timers,
            group_interval=min(timers.group_interval, ALERTMANAGER_RESEND_S),
            repeat_interval=min(timers.repeat_interval, ALERTMANAGER_RESEND_S),
        )
    return Routed(key, m.receiver, group_labels, timers, e, m.escalation)


def router(config: RoutingConfig) -> Callable[[list[AlertEvent]], list[tuple[str, Routed]]]:
    """Events -> (group key, Routed) for every route that takes them (`continue` fans out);
    a route muted by its time intervals at the event's time takes nothing."""

    def route_batch(events: list[AlertEvent]) -> list[tuple[str, Routed]]:
        out: list[tuple[str, Routed]] = []
        for e in events:
            labels = dict(e.labels)
            for m in match(config.route, labels):
                if muted(m, config.time_intervals, e.at):
                    continue
                r = _routed(config, m, labels, e)
                out.append((r.group_key, r))
        return out

    return route_batch


def ack_router(config: RoutingConfig) -> Callable[[list[Any]], list[tuple[str, Routed]]]:
    """Control items -> (group key, Routed) for each AckEvent: to every group its alert's labels
    lead to (the same keys as the alert's events). Other control items are not delivery's."""

    def route_batch(items: list[Any]) -> list[tuple[str, Routed]]:
        out: list[tuple[str, Routed]] = []
        for ack in items:
            if not isinstance(ack, AckEvent):
                continue  # silences apply in evaluation; caught-up markers: see acks_at_start
            labels = dict(ack.labels)
            for m in match(config.route, labels):  # muted routes too: an ack is no notification
                r = _routed(config, m, labels, ack)
                out.append((r.group_key, r))
        return out

    return route_batch


GroupSnapshot = tuple[GroupState, Timers, EscalationState, Escalation | None]
"""What a group keeps in recovery; snapshots of before escalation are (GroupState, Timers)."""


class GroupLogic(StatefulBatchLogic[Routed, GroupNotification, GroupSnapshot]):
    """One alert group in Bytewax state (keyed by group key: spread over workers, snapshotted).

    `clock` gives "now": wall time live; a replay passes None and uses the newest event time it
    saw, then flushes what is left at the end of its input. `acks_at_start` (by fingerprint):
    the acknowledgements on the control topic when the job started (rules/routing/escalation.py).
    """

    def __init__(
        self,
        resume: GroupSnapshot | tuple[GroupState, Timers] | None,
        clock: Callable[[], float] | None,
        acks_at_start: Mapping[str, AckEvent] | None = None,
    ) -> None:
        self.state: GroupState | None = None
        self.timers: Timers | None = None
        self.escalation = EscalationState()
        self.policy: Escalation | None = None
        if resume is not None:
            self.state, self.timers = resume[0], resume[1]
            if len(resume) == 4:
                self.escalation, self.policy = resume[2], resume[3]
        self.clock = clock
        self.acks_at_start: Mapping[str, AckEvent] = acks_at_start or {}
        self.event_now = -math.inf

    def _now(self) -> float:
        return self.clock() if self.clock is not None else self.event_now

    def _step(self, items: list[AlertEvent | AckEvent]) -> tuple[list[GroupNotification], bool]:
        if self.state is None or self.timers is None:
            return [], StatefulBatchLogic.DISCARD
        events = [e for e in items if isinstance(e, AlertEvent)]
        acks = [e for e in items if isinstance(e, AckEvent)]
        if acks:
            self.escalation = take_acks(self.escalation, acks)
        now = self._now()
        key, labels = self.state.group_key, self.state.group_labels
        self.state, notes = group_step(self.state, events, now, self.timers)
        self.escalation, more = escalate(
            self.escalation, self.state, events, now, self.policy, self.acks_at_start,
            group_key=key, group_labels=labels,
        )  # fmt: skip
        return notes + more, self.state is None

    def _open(self, v: Routed) -> None:
        """A group starts (again, after it emptied) with its first event."""
        if self.state is None:
            self.state = GroupState.new(v.group_key, v.receiver, v.group_labels)

    def on_batch(self, values: list[Routed]) -> tuple[list[GroupNotification], bool]:
        self.timers = values[-1].timers  # a reloaded configuration takes effect here
        self.policy = values[-1].escalation
        if self.clock is not None:
            self._open(values[0])
            return self._step([v.event for v in values])
        # a replay: time is the events' own, so each one is taken in at its time
        out: list[GroupNotification] = []
        discard = False
        for v in sorted(values, key=lambda v: v.event.at):
            out += self._escalate_before(v.event.at)
            self._open(v)
            self.event_now = max(self.event_now, v.event.at)
            notes, discard = self._step([v.event])
            out += notes
        return out, discard

    def _escalate_before(self, t: float) -> list[GroupNotification]:
        """A replay: escalation deadlines that passed before `t` are taken at their own time
        (live, the wake-up does it), so an ack or a resolve arriving after one is too late."""
        out: list[GroupNotification] = []
        while self.state is not None and self.timers is not None:
            wake = next_escalation(self.escalation, self.state, self.policy, self.acks_at_start)
            if wake is None or wake > t:
                break
            self.event_now = max(self.event_now, wake)
            notes, _ = self._step([])
            out += notes
        return out

    def on_notify(self) -> tuple[list[GroupNotification], bool]:
        return self._step([])

    def on_eof(self) -> tuple[list[GroupNotification], bool]:
        if self.clock is not None:
            return [], StatefulBatchLogic.RETAIN
        # a replay ends: the ticks still due go out (the first flush, then resolves), not repeats
        out: list[GroupNotification] = []
        for _ in range(8):
            wake = None if self.state is None or self.timers is None else next_flush(self.state, self.timers)
            if wake is None:
                break
            self.event_now = max(self.event_now, wake)
            notes, _ = self._step([])
            if not notes or all(n.repeat for n in notes):
                break
            out += notes
        return out, self.state is None

    def notify_at(self) -> datetime | None:
        if self.clock is None or self.state is None or self.timers is None:
            return None
        wakes = [
            w
            for w in (
                next_flush(self.state, self.timers),
                next_escalation(self.escalation, self.state, self.policy, self.acks_at_start),
            )
            if w is not None
        ]
        return utc(min(wakes)) if wakes else None

    def snapshot(self) -> GroupSnapshot:
        assert self.state is not None and self.timers is not None  # discarded otherwise
        return (self.state, self.timers, self.escalation, self.policy)


def route_and_group(
    step_id: str,
    events: Stream[AlertEvent],
    config: RoutingConfig,
    clock: Callable[[], float] | None,
    *,
    control: Stream[Any] | None = None,
    acks_at_start: Mapping[str, AckEvent] | None = None,
) -> Stream[GroupNotification]:
    """Alertmanager's routing tree and dispatcher as a sub-flow: what each receiver is sent.

    `control`: the control input's items (`connectors.control.source`); its AckEvents reach the
    alert's groups, for the routes' escalation. `acks_at_start`: the acks on the control topic
    when the job started (by fingerprint), known before any escalation deadline is looked at.
    """
    # muted records too: a silence that began while an alert fired takes it out of its groups
    wanted = op.filter(f"{step_id}-to-send", events, lambda e: to_deliver(e) or is_muted(e))
    keyed = op.flat_map_batch(f"{step_id}-route", wanted, router(config))
    if control is not None:
        acks = op.flat_map_batch(f"{step_id}-route-acks", control, ack_router(config))
        keyed = op.merge(f"{step_id}-with-acks", keyed, acks)
    grouped = op.stateful_batch(
        f"{step_id}-group", keyed, lambda resume: GroupLogic(resume, clock, acks_at_start)
    )
    return op.map(f"{step_id}-unkey", grouped, lambda kv: kv[1])


def acks_at_start(settings: Settings) -> dict[str, AckEvent]:
    """The acknowledgements on CONTROL_TOPIC now (newest per alert): read to its end once."""
    from connectors.control.reader import read_all
    from rules.control.events import EMPTY, fold

    state = EMPTY
    for event in read_all(list(settings.bootstrap), settings.control_topic, dict(settings.kafka_extra)):
        state = fold(state, event)
    return dict(state.acks)


def load_routes(settings: Settings) -> RoutingConfig | None:
    """NOTIFY_ROUTES, validated: every problem of the file, located, as configuration problems."""
    if not settings.notify_routes:
        return None
    from rules.routing.config import RoutingConfigError, load_routing_file

    try:
        config = load_routing_file(Path(settings.notify_routes))
    except RoutingConfigError as exc:
        raise ConfigError([f"NOTIFY_ROUTES: {p}" for p in exc.problems]) from None
    except OSError as exc:
        raise ConfigError([f"NOTIFY_ROUTES={settings.notify_routes!r}: {exc.strerror}"]) from None
    for note in config.notes:
        log.info("NOTIFY_ROUTES: %s", note)
    return config


def _dead_letters(settings: Settings) -> Any:
    """Where permanent rejections go: ALERTS_DLQ_TOPIC, written synchronously."""
    from connectors.kafka.sink import producer_config
    from connectors.notify.undelivered import UndeliveredToKafka

    producer = producer_config(list(settings.bootstrap), dict(settings.kafka_extra))
    return UndeliveredToKafka(producer, settings.alerts_dlq_topic)


def _maintenance(settings: Settings) -> Any:
    """The Redis `maintenance:{instance_id}` check, when REDIS_URL is set."""
    if not settings.redis_url:
        return None
    from connectors.notify.maintenance import redis_client, redis_maintenance_checker

    return redis_maintenance_checker(redis_client(settings.redis_url))


def routed_sink(settings: Settings, config: RoutingConfig, flow: str) -> Sink[Any]:
    """The receivers of `config`; permanent rejections to ALERTS_DLQ_TOPIC."""
    from connectors.notify.routed import RoutedSink

    sink = RoutedSink(config, _dead_letters(settings), is_muted=_maintenance(settings), flow=flow)
    return InstrumentedSink(sink, flow, "notify")


def print_group(n: GroupNotification) -> str:
    """What a receiver would be sent, as one readable block (embedded runs)."""
    head = f"ROUTE {n.receiver} [{n.status.value.upper()}] {dict(n.group_labels)}: {len(n.alerts)} alert(s)"
    lines = [f"  - {a.state.value} {a.alert_name} {a.instance_id} at {iso(a.at)}" for a in n.alerts]
    return "\n".join([head, *lines])


def notification_sink(settings: Settings, flow: str, *, pipelined: bool = True) -> tuple[Sink[Any], bool]:
    """The notification service sink of `settings`, and whether it wants heartbeat ticks.

    `pipelined`: posts overlap the flow and each epoch waits for its own (`PipelinedNotifySink`,
    the flows'); else every `write_batch` waits for its posts (`NotifySink`, for a one-off send)."""
    from connectors.notify.policy import NotifyConfig, RetryPolicy
    from connectors.notify.sink import NotifyDeps, NotifySink, PipelinedNotifySink

    is_muted = _maintenance(settings)
    if settings.notify_dead_letter_transient:
        retry = RetryPolicy(max_attempts=settings.notify_max_attempts, deadline_s=settings.notify_deadline_s)
    else:
        retry = RetryPolicy(max_attempts=None, deadline_s=None, until_delivered=True)
    config = NotifyConfig(
        settings.notify_url,
        timeout_s=settings.notify_timeout_s,
        max_in_flight=settings.notify_max_in_flight,
        retry=retry,
        cooldown_s=settings.notify_breaker_cooldown_s,
    )
    deps = NotifyDeps(on_undeliverable=_dead_letters(settings), is_muted=is_muted)
    ticks = is_muted is not None
    if pipelined:
        return InstrumentedPartitionedSink(PipelinedNotifySink(config, deps), flow, "notify"), ticks
    return InstrumentedSink(NotifySink(config, deps), flow, "notify"), ticks


def build_flow(
    source: Source[Any],
    notify: Sink[Any],
    dlq: Sink[Any],
    *,
    heartbeat: Source[Any] | None = None,
    routing: RoutingConfig | None = None,
    clock: Callable[[], float] | None = time.time,
    name: str = JOB,
    control: Source[Any] | None = None,
    acks_at_start: Mapping[str, AckEvent] | None = None,
) -> Dataflow:
    """Alert records in; notifications and dead letters (unreadable records) out. With `routing`,
    notifications are grouped per route and `notify` gets `GroupNotification`s; with `control`
    too (the control topic's items), acknowledgements reach the groups, for escalation."""
    flow = Dataflow(name)
    raw = op.input("alerts", flow, source)
    decoded = op.flat_map_batch("decode", raw, decode_records)
    split = op.branch("split", decoded, lambda x: isinstance(x, AlertEvent))
    if routing is not None:
        ctl = op.input("control", flow, control) if control is not None else None
        alerts: Stream[AlertEvent] = split.trues  # type: ignore[assignment]
        notes = route_and_group("route", alerts, routing, clock, control=ctl, acks_at_start=acks_at_start)
        op.output("notify", notes, notify)
    else:
        ticks = op.input("heartbeat", flow, heartbeat) if heartbeat is not None else None
        deliver("notify", split.trues, notify, ticks=ticks)  # type: ignore[arg-type]
    op.output("dlq", op.map("dlq-record", split.falses, poison_to_dlq), dlq)  # type: ignore[arg-type]
    return flow


def from_settings(settings: Settings, monitoring: MonitoringSettings | None = None) -> Dataflow:
    from connectors.kafka.sink import kafka_sink
    from connectors.ops.heartbeat import HeartbeatSource
    from flows.common import settings_source

    routes = load_routes(settings)
    if routes is None and not settings.notify_url:
        raise ConfigError(["NOTIFY_URL or NOTIFY_ROUTES: flows.notify needs somewhere to deliver to"])
    source = settings_source(
        settings, settings.alerts_topic, exclude=(), starting_offset=settings.notify_start
    )
    dlq = InstrumentedSink(
        kafka_sink(list(settings.bootstrap), settings.dlq_topic, dict(settings.kafka_extra)), JOB, "dlq"
    )
    if routes is not None:
        control, acks = None, None
        if settings.control_topic:
            from connectors.control.source import control_source

            acks = acks_at_start(settings)  # before the flow: known before any escalation deadline
            control = control_source(
                list(settings.bootstrap), settings.control_topic, dict(settings.kafka_extra)
            )
        sink = routed_sink(settings, routes, JOB)
        return build_flow(source, sink, dlq, routing=routes, control=control, acks_at_start=acks)
    notify, wants_ticks = notification_sink(settings, JOB)
    beat = None
    if settings.kafka_tail and monitoring is not None and wants_ticks:
        beat = HeartbeatSource(JOB, monitoring.heartbeat_interval_s)
    return build_flow(source, notify, dlq, heartbeat=beat)


def _default_flow() -> Dataflow:
    from connectors.ops.recovery import ensure_recovery
    from flows.common import configure_logging, exit_with, load_settings, start_live

    configure_logging()
    settings, monitoring, problems = load_settings()
    if problems or settings is None or monitoring is None:
        exit_with(JOB, problems)
    if settings.embedded:
        exit_with(JOB, ["KAFKA_BOOTSTRAP_SERVERS: flows.notify reads the alerts topic: set the brokers"])
    try:
        ensure_recovery(JOB, settings)  # may re-execute the job with recovery flags
    except ConfigError as exc:
        exit_with(JOB, exc.problems)
    topics = {
        "ALERTS_TOPIC": settings.alerts_topic,
        "ALERTS_DLQ_TOPIC": settings.alerts_dlq_topic,
        "DLQ_TOPIC": settings.dlq_topic,
    }
    if settings.notify_routes and settings.control_topic:  # acks for the routes' escalation
        topics["CONTROL_TOPIC"] = settings.control_topic
    start_live(JOB, settings, monitoring, topics)
    try:
        flow = from_settings(settings, monitoring)
    except ConfigError as exc:
        exit_with(JOB, exc.problems)
    print(
        json.dumps({"job": JOB, "mode": f"delivering {settings.alerts_topic} to {settings.notify_url}"}),
        file=sys.stderr,
    )
    return flow


__getattr__ = lazy_flow(globals(), _default_flow)


# -- redrive ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m flows.notify --redrive [--since T] [--match LABEL=VALUE]...`"""
    ap = argparse.ArgumentParser(prog="python -m flows.notify", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--redrive",
        action="store_true",
        required=True,
        help="deliver dead-lettered notifications (ALERTS_DLQ_TOPIC) again",
    )
    ap.add_argument(
        "--since",
        help="only alerts that changed at or after this time (ISO 8601, a date, or relative: --since=-24h)",
    )
    ap.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="only alerts with this label value (repeatable: all must match)",
    )
    ap.add_argument("--dry-run", action="store_true", help="list what would be redriven, send nothing")
    args = ap.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"flows.notify: {exc}", file=sys.stderr)
        return 2
    if settings.embedded:
        print("flows.notify: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    import time

    from connectors.kafka.replay import parse_time
    from connectors.notify.redrive import RedriveFilter, dead_letters

    matches: dict[str, str] = {}
    for m in args.match:
        label, sep, value = m.partition("=")
        if not sep or not label:
            print(f"flows.notify: --match {m!r}: expected LABEL=VALUE", file=sys.stderr)
            return 2
        matches[label] = value
    try:
        since = parse_time(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"flows.notify: --since: {exc} (relative times: --since=-24h)", file=sys.stderr)
        return 2
    wanted = RedriveFilter(since=since, labels=matches)
    events = dead_letters(
        list(settings.bootstrap), settings.alerts_dlq_topic, wanted, dict(settings.kafka_extra)
    )
    for e in events:
        print(
            f"{'would redrive' if args.dry_run else 'redrive'} {e.message_id} {e.alert_name} "
            f"{e.state.value} {e.instance_id}",
            file=sys.stderr,
        )
    if events and not args.dry_run:
        # delivered as the delivery job would: retried until taken, permanent rejections back to the DLQ
        sink, _ = notification_sink(settings, JOB, pipelined=False)
        part = sink.build("redrive", 0, 1)  # type: ignore[attr-defined]
        try:
            part.write_batch(events)
        finally:
            part.close()
    print(json.dumps({"redriven": 0 if args.dry_run else len(events), "matched": len(events)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
