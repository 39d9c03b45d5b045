"""The main job: `python -m bytewax.run flows.alerting`.

Without KAFKA_BOOTSTRAP_SERVERS it replays the bundled sample through the bundled rules,
prints what it would notify and exits. With it, it tails the metric topics, produces every
transition to the `alerts` topic, posts notifications and dead-letters bad messages.
A tailing job also reads the control plane (CONTROL_TOPIC: silences, applied live) and
reloads RULES_PATH when its files change or on SIGHUP (every RULES_RELOAD_S), without a restart.
Wiring only: the logic is in rules/, the I/O in connectors/.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.config import ConfigError, MonitoringSettings, Settings
from connectors.kafka.replay import FileSource
from connectors.ops.heartbeat import HeartbeatSource, heartbeat_message
from connectors.ops.metrics import InstrumentedSink
from connectors.ops.placement import check_store
from connectors.ops.recovery import given_directory
from flows.common import (
    Decoder,
    Poison,
    WallClock,
    alert_message,
    evaluate,
    evaluate_groups,
    lazy_flow,
    poison_line,
    poison_to_dlq,
    print_notification,
    recorded_message,
    settings_decoder,
    settings_source,
    wall_clock,
)
from flows.notify import (
    acks_at_start,
    deliver,
    load_routes,
    notification_sink,
    print_group,
    route_and_group,
    routed_sink,
)
from rules.control.events import AckEvent
from rules.loader import RuleFileError, load_rules, prometheus_files
from rules.metric import Metric, iso
from rules.model import AlertEvent, RuleSet
from rules.payload import notification_payload
from rules.promql.rulefile import RuleGroup, load_prometheus_rules
from rules.routing.config import RoutingConfig
from rules.routing.types import GroupNotification

MIN_LIVE_LATENESS_S = 1.0
"""Below this, samples still on their way through Kafka could be counted late (see from_settings)."""


@dataclass(frozen=True)
class Outputs:
    """Where the three streams go; each `*_fn` shapes an item for its sink."""

    alerts: Sink[Any]
    notify: Sink[Any] | None  # None: delivery runs apart (`flows.notify`, NOTIFY_DELIVERY=separate)
    dlq: Sink[Any]
    alerts_fn: Callable[[AlertEvent], Any]
    notify_fn: Callable[[AlertEvent], Any]
    dlq_fn: Callable[[Poison], Any]
    # the notify sink parks FIRINGs muted by maintenance: heartbeats tick it to look again
    notify_ticks: bool = False
    # NOTIFY_ROUTES: notifications are routed and grouped; `notify` gets GroupNotifications
    routing: RoutingConfig | None = None
    group_fn: Callable[[GroupNotification], Any] = lambda n: n
    # routed inline delivery: the acks on the control topic at start (the routes' escalation)
    acks_at_start: Mapping[str, AckEvent] | None = None
    # recording rules' output of Prometheus rule groups (RECORDED_TOPIC); None: dropped
    recorded: Sink[Any] | None = None
    recorded_fn: Callable[[Metric], Any] = lambda m: m


def build_flow(
    ruleset: RuleSet,
    source: Source[Any],  # raw messages (`connectors.kafka.message.Message`)
    outputs: Outputs,
    decode: Decoder,
    *,
    shards: int = 64,
    wall: WallClock | None = wall_clock,
    flush_on_eof: bool = False,
    name: str = "alerting",
    heartbeat: Source[Any] | None = None,
    control_source: Source[Any] | None = None,
    rules_watch: Source[Any] | None = None,
    rules_version: str = "",
    groups: Sequence[RuleGroup] = (),
    skip_topics: Collection[str] = (),
    snapshots: bool = True,
    legacy_shards: bool = False,
) -> Dataflow:
    """`control_source` (`connectors.control.source`: silences; the engine holds its ticks until
    it caught up) and `rules_watch` (`connectors.control.watch`: rule sets loaded while running,
    `rules_version` being the start-up set's content hash) are the control plane's inputs.

    `groups` (Prometheus rule groups, `flows.common.evaluate_groups`) run beside the seed rules
    on the same input; their alert events join the engine's (alerts topic, delivery), their
    recording rules' samples go to `outputs.recorded`. With groups and no seed rule, the engine
    is left out and the groups' decoder dead-letters bad messages. `skip_topics` (the recorded
    topic) are not fed back to the groups. The groups follow the control plane as the engine
    does: the rule files' silences and inhibit rules, live silences, reloads (a group added,
    changed or removed), ticks held until the control topic caught up.

    `legacy_shards`: the evaluation's shards keep the names of recovery stores written before
    they were balanced over workers (ALERT_SHARD_NAMES, `connectors.ops.placement`)."""
    flow = Dataflow(name)
    raw = op.input("metrics", flow, source)
    engine = bool(ruleset.rules) or not groups
    # the control plane as one stream: what the evaluation broadcasts to its shards (and what
    # inline delivery's routing will read too: acknowledgements)
    control = op.input("control", flow, control_source) if control_source is not None else None
    engine_control: Stream[Any] | None = control
    if rules_watch is not None:
        reloads = op.input("rules-watch", flow, rules_watch)
        engine_control = reloads if control is None else op.merge("control-and-rules", control, reloads)
    streams: list[Stream[AlertEvent]] = []
    poison: Stream[Poison] | None = None
    if engine:
        events, poison = evaluate(
            "rules",
            raw,
            ruleset,
            decode,
            shards=shards,
            wall=wall,
            flush_on_eof=flush_on_eof,
            name=name,
            control=engine_control,
            await_control=control is not None,
            rules_version=rules_version,
            snapshots=snapshots,
            legacy_shards=legacy_shards,
        )
        streams.append(events)
    if groups:
        g_events, recorded, g_poison = evaluate_groups(
            "promql",
            raw,
            groups,
            decode,
            lateness_s=ruleset.allowed_lateness_s,
            wall=wall,
            flush_on_eof=flush_on_eof,
            name=name,
            skip_topics=skip_topics,
            count_input=not engine,
            ruleset=ruleset,
            control=engine_control,
            await_control=control is not None,
            rules_version=rules_version,
        )
        streams.append(g_events)
        poison = poison if poison is not None else g_poison
        if outputs.recorded is not None:
            op.output("recorded", op.map("recorded-record", recorded, outputs.recorded_fn), outputs.recorded)
    events = streams[0] if len(streams) == 1 else op.merge("seed-and-promql-events", *streams)
    records = op.map("alert-record", events, outputs.alerts_fn)
    ticks = None
    if heartbeat is not None:  # a live pipeline says so on the alerts topic even when all is quiet
        ticks = op.input("heartbeat", flow, heartbeat)
        beats = op.map("heartbeat-record", ticks, heartbeat_message)
        records = op.merge("alerts-and-heartbeats", records, beats)
    op.output("alerts-topic", records, outputs.alerts)
    if outputs.notify is not None and outputs.routing is not None:
        notes = route_and_group(
            "route", events, outputs.routing, wall, control=control, acks_at_start=outputs.acks_at_start
        )
        op.output("notify", op.map("notify-group", notes, outputs.group_fn), outputs.notify)
    elif outputs.notify is not None:  # inline delivery: the same sub-flow as flows.notify's
        deliver("notify", events, outputs.notify, outputs.notify_fn, ticks if outputs.notify_ticks else None)
    assert poison is not None  # the engine or the groups decode: one of them always runs
    op.output("dlq", op.map("dlq-record", poison, outputs.dlq_fn), outputs.dlq)
    return flow


def embedded_outputs(routing: RoutingConfig | None = None) -> Outputs:
    """Print instead of producing: the newcomer's first run needs no services. With a routing
    configuration, what each receiver would be sent, grouped."""

    return Outputs(
        alerts=StdOutSink(),
        notify=StdOutSink(),
        dlq=StdOutSink(),
        alerts_fn=lambda e: f"ALERT {e.to_record()['at']} {e.alert_name} {e.state.value} {e.instance_id}",
        notify_fn=lambda e: print_notification(notification_payload(e)),
        dlq_fn=poison_line,
        routing=routing,
        group_fn=print_group,
        recorded=StdOutSink(),
        recorded_fn=lambda m: (
            f"RECORDED {iso(m.ts)} {m.metric_name} {m.instance_id} {dict(m.tags)} {m.value:g}"
        ),
    )


def kafka_outputs(settings: Settings) -> Outputs:
    from connectors.kafka.sink import kafka_sink

    brokers = list(settings.bootstrap)
    extra = dict(settings.kafka_extra)
    notify: Sink[Any] | None
    notify_fn: Callable[[AlertEvent], Any] = lambda e: e  # noqa: E731
    ticks = False
    routing = load_routes(settings)
    if settings.notify_delivery == "separate":
        notify = None  # flows.notify delivers from ALERTS_TOPIC
    elif routing is not None:
        notify = routed_sink(settings, routing, "alerting")
    elif settings.notify_url:
        notify, ticks = notification_sink(settings, "alerting")
    else:
        notify = InstrumentedSink(StdOutSink(), "alerting", "notify")
        notify_fn = lambda e: print_notification(notification_payload(e))  # noqa: E731
    return Outputs(
        alerts=InstrumentedSink(kafka_sink(brokers, settings.alerts_topic, extra), "alerting", "alerts"),
        notify=notify,
        dlq=InstrumentedSink(kafka_sink(brokers, settings.dlq_topic, extra), "alerting", "dlq"),
        alerts_fn=alert_message,
        notify_fn=notify_fn,
        dlq_fn=poison_to_dlq,
        notify_ticks=ticks,
        routing=routing if notify is not None else None,
        # known before any escalation deadline is looked at (see flows.notify.acks_at_start)
        acks_at_start=acks_at_start(settings)
        if notify is not None and routing is not None and settings.control_topic and settings.kafka_tail
        else None,
        recorded=InstrumentedSink(
            kafka_sink(brokers, settings.recorded_topic, extra), "alerting", "recorded"
        ),
        recorded_fn=recorded_message,
    )


def control_inputs(settings: Settings, ruleset: RuleSet) -> tuple[Source[Any] | None, Source[Any] | None]:
    """A tailing job's control plane: CONTROL_TOPIC (unless off) and the rule watcher, whose
    reload attempts are published there (once per process) and counted in /metrics."""
    from connectors.control.publish import ControlPublisher
    from connectors.control.source import control_source
    from connectors.control.watch import RuleLoader, RuleWatch, install_sighup

    brokers, extra = list(settings.bootstrap), dict(settings.kafka_extra)
    control = None
    publish = None
    if settings.control_topic:
        control = control_source(brokers, settings.control_topic, extra, tail=True)
        publisher: list[ControlPublisher] = []  # built on first use, in the publishing thread

        def publish(event: Any) -> None:
            if not publisher:
                publisher.append(ControlPublisher(brokers, settings.control_topic, extra))
            publisher[0].publish(event)

    install_sighup()
    prometheus = bool(prometheus_files(settings.rules_paths))  # the groups' sub-flow is wired
    loader = RuleLoader(settings.rules_paths, ruleset, job="alerting", publish=publish, prometheus=prometheus)
    return control, RuleWatch(loader, ruleset_version(settings), settings.rules_reload_s)


def ruleset_version(settings: Settings) -> str:
    from connectors.control.watch import content_version

    return content_version(settings.rules_paths)[0]


def from_settings(settings: Settings, monitoring: MonitoringSettings | None = None) -> Dataflow:
    version = ruleset_version(settings)  # before the load: a change in between is reloaded
    ruleset = load_rules(settings.rules_paths)
    groups = load_groups(settings)
    decode = settings_decoder(settings)
    if settings.embedded:
        return build_flow(
            ruleset,
            FileSource([settings.sample_path]),
            embedded_outputs(load_routes(settings)),
            decode,
            shards=settings.shards,
            wall=None,
            flush_on_eof=True,
            groups=groups,
        )
    if settings.kafka_tail and ruleset.allowed_lateness_s < MIN_LIVE_LATENESS_S:
        raise ConfigError([
            f"allowed_lateness {ruleset.allowed_lateness_s:g}s cannot be honoured by a live job: a sample"
            f" takes up to about {MIN_LIVE_LATENESS_S:g}s from its producer to evaluation (producer linger,"
            " the consumer's fetch wait, idle back-off), so samples would be dropped as late that a"
            f" backtest keeps; set `settings: allowed_lateness:` to {MIN_LIVE_LATENESS_S:g}s or more"
        ])  # fmt: skip
    # progress markers: wall time ages a silent instance only while the input is caught up
    source = settings_source(settings, progress=True)
    # a bounded run (KAFKA_TAIL=false) ends like a backtest: every window is evaluated;
    # only a tailing job has heartbeats (a heartbeat source never ends)
    beat = None
    if settings.kafka_tail and monitoring is not None:
        beat = HeartbeatSource("alerting", monitoring.heartbeat_interval_s)
    control, watch = control_inputs(settings, ruleset) if settings.kafka_tail else (None, None)
    recovery = given_directory(sys.argv, os.environ)
    if recovery is not None:  # the engine's keyed step: `build_flow`'s name, `evaluate`'s step id
        check_store(recovery, "alerting.rules-evaluate", settings.shards, settings.shard_names)
    return build_flow(
        ruleset,
        source,
        kafka_outputs(settings),
        decode,
        shards=settings.shards,
        flush_on_eof=not settings.kafka_tail,
        heartbeat=beat,
        control_source=control,
        rules_watch=watch,
        rules_version=version,
        groups=groups,
        skip_topics=(settings.recorded_topic,),
        # the engine's state is pickled at every epoch only if a recovery store keeps it
        snapshots=recovery is not None,
        legacy_shards=settings.shard_names == "legacy",
    )


def load_groups(settings: Settings) -> list[RuleGroup]:
    """The Prometheus rule groups in RULES_PATH (`RuleFileError` with every problem)."""
    files = prometheus_files(settings.rules_paths)
    return load_prometheus_rules(files) if files else []


def _default_flow() -> Dataflow:
    from connectors.config import rules_paths
    from connectors.errors import ConnectorError
    from connectors.ops.recovery import ensure_recovery
    from flows.common import configure_logging, exit_with, load_settings, start_live

    configure_logging()
    settings, monitoring, problems = load_settings()
    # the rules' problems are listed with the environment's, not after it is fixed
    paths = settings.rules_paths if settings is not None else rules_paths(os.environ)
    if any(p.exists() for p in paths):
        existing = [p for p in paths if p.exists()]
        try:
            load_rules(existing)
        except RuleFileError as exc:
            problems += [str(p) for p in exc.problems]
        try:
            prometheus = prometheus_files(existing)
            if prometheus:
                load_prometheus_rules(prometheus)
        except RuleFileError as exc:
            problems += [str(p) for p in exc.problems]
    if problems or settings is None or monitoring is None:
        exit_with("alerting", problems)
    try:  # before anything binds a port: this may re-execute the job with recovery flags
        ensure_recovery("alerting", settings)
    except ConfigError as exc:
        exit_with("alerting", exc.problems)
    if not settings.embedded:
        # what it writes, by name: a missing one would only fail at the first write, as a panic
        topics = {"ALERTS_TOPIC": settings.alerts_topic, "DLQ_TOPIC": settings.dlq_topic}
        if settings.notify_url:
            topics["ALERTS_DLQ_TOPIC"] = settings.alerts_dlq_topic
        if settings.kafka_tail and settings.control_topic:  # read for silences, written on reloads
            topics["CONTROL_TOPIC"] = settings.control_topic
        if prometheus_files(settings.rules_paths):  # recording rules' output
            topics["RECORDED_TOPIC"] = settings.recorded_topic
        start_live("alerting", settings, monitoring, topics)  # /metrics, /healthz, /readyz for pods
    try:
        flow = from_settings(settings, monitoring)
    except ConfigError as exc:
        exit_with("alerting", exc.problems)
    except RuleFileError as exc:  # changed since the check above
        exit_with("alerting", [str(p) for p in exc.problems])
    except ConnectorError as exc:  # e.g. METRIC_TOPICS matches no topic
        exit_with("alerting", [str(exc)])
    if settings.embedded:
        mode = f"replaying bundled sample {settings.sample_path}"
    else:
        mode = f"tailing {settings.metric_topics} on {','.join(settings.bootstrap)}"
    print(json.dumps({"job": "alerting", "mode": mode}), file=sys.stderr)
    return flow


__getattr__ = lazy_flow(globals(), _default_flow)
