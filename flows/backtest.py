"""Backtest: what would these rules have done over recorded data?

    python -m flows.backtest --rules PATH --input FILE.jsonl|FILE.avro --output FILE.jsonl
    python -m flows.backtest --rules PATH --topic PATTERN --from -7d [--to now] [--full-scan] [--compare PATH]
    python -m flows.backtest --promtool TESTS.yml      (the same as python -m rules.check TESTS.yml)

Runs the alerting job's own evaluation sub-flow (flows.common.evaluate) over recorded metric
messages on event time only: no wall clock, no notifications, no writes anywhere but the
files asked for. State carries across the whole range in one flow run (no chunking), so
`for` and `keep_firing_for` behave as they would have live. With `--compare` a second rule
set is evaluated by a second sub-flow fed by the same input stream: one pass over the data.
The transition log is one JSON line per transition, sorted by time.

On Kafka the control topic (CONTROL_TOPIC, default gds.control; `--no-control` to skip it) is
read first and its silences applied by event time, as the live job applies them: a backtest
over a past range shows the suppressions the live job made (`--control-topic`).

A window that held nothing while the input had data is never reported as "nothing fired":
the CLI says how many messages fell outside, their event times (or, on Kafka, the topic's
record times when the offset search found nothing) and what to pass instead, in the text,
the `--summary` JSON and the `--html` report, and exits 3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.testing import TestingSink, run_main

from connectors.errors import ConnectorError
from connectors.kafka.replay import (
    OUT_OF_RANGE,
    EventWindow,
    FileSource,
    KafkaRangeSource,
    Observed,
    Progress,
    parse_time,
    plan_ranges,
    windowed_decoder,
)
from connectors.kafka.replay_span import TopicSpan, topic_span
from connectors.kafka.serde import Decoder, make_decoder
from connectors.kafka.source import resolve_topics
from connectors.ops.runtime import tune_gc
from flows.common import Poison, evaluate, evaluate_groups
from rules.backtest import report
from rules.backtest.chart import InstanceChart
from rules.check import main as check_main
from rules.control.events import EMPTY, ControlEvent, ControlState, fold
from rules.duration import parse_duration
from rules.loader import RuleFileError, load_rules, prometheus_files
from rules.metric import iso
from rules.model import AlertEvent, AlertState, RuleSet
from rules.promql.rulefile import RuleGroup, load_prometheus_rules

NOTIFIED_STATES = (AlertState.FIRING, AlertState.RESOLVED)
SIDES = ("A", "B")
# One worker evaluates every shard, so the count only cuts source batches into smaller
# `on_batch` calls and never changes a result. One shard routes nothing (`evaluate`'s
# `route_all`) and hands the engine whole source batches: 1M messages from a topic, 5
# interleaved runs each, median 6.3 s against 7.8 s with 64 (the live job keeps 64: its
# shards are what spreads the work over workers and names the recovery state).
DEFAULT_SHARDS = 1
EXIT_EMPTY_WINDOW = 3  # the window held nothing while the input had data (see WindowCheck)


# --------------------------------------------------------------------------- flow


def build_replay_flow(
    source: Source[Any],
    sides: Mapping[str, tuple[RuleSet, Decoder]],
    events: Mapping[str, list[AlertEvent]],
    poison: list[Poison],
    *,
    shards: int = 64,
    control: ControlState | None = None,
    groups: Mapping[str, tuple[Sequence[RuleGroup], Decoder]] | None = None,
    windows: Mapping[str, EventWindow] | None = None,
) -> Dataflow:
    """One input, one `evaluate` sub-flow per rule set (step ids prefixed by the side name).

    Poison is taken from the first side only (every side decodes the same messages), minus
    the messages the event-time window skipped. `control` (the control topic, folded) gives
    every side the same silences, its Prometheus rule groups' alerts included. `groups`: a
    side's Prometheus rule groups and their decoder, evaluated on event time beside its seed
    rules (`flows.common.evaluate_groups`); a side with groups and no seed rule runs no engine.
    `windows`: a side's event-time window, applied to each batch its engine decoded (its
    decoder then windows nothing itself).
    """
    flow = Dataflow("backtest")
    raw = op.input("metrics", flow, source)
    for i, (side, (ruleset, decode)) in enumerate(sides.items()):
        sid = side.lower()
        prom = (groups or {}).get(side)
        streams = []
        bad: Any = None
        if ruleset.rules or not prom:
            ev, bad = evaluate(
                f"rules-{sid}",
                raw,
                ruleset,
                decode,
                shards=shards,
                wall=None,
                flush_on_eof=True,
                name=f"backtest-{sid}",  # not counted as the live job in /metrics
                preload=control,
                snapshots=False,  # a backtest never resumes
                window=None if windows is None or side not in windows else windows[side].keep,
            )
            streams.append(ev)
        if prom:
            g_ev, _, g_bad = evaluate_groups(
                f"promql-{sid}",
                raw,
                prom[0],
                prom[1],
                lateness_s=ruleset.allowed_lateness_s,
                wall=None,
                flush_on_eof=True,
                name=f"backtest-{sid}",
                ruleset=ruleset,
                preload=control,
            )
            streams.append(g_ev)
            bad = bad if bad is not None else g_bad
        ev = streams[0] if len(streams) == 1 else op.merge(f"events-{sid}-both", *streams)
        op.output(f"events-{side.lower()}", ev, TestingSink(events[side]))
        if i == 0:
            kept = op.filter("in-range", bad, lambda p: p.error != OUT_OF_RANGE)
            op.output("poison", kept, TestingSink(poison))
    return flow


def build_flow(
    ruleset: RuleSet,
    inputs: Sequence[Path],
    events: list[AlertEvent],
    poison: list[Poison],
    *,
    shards: int = 64,
) -> Dataflow:
    """The single-rule-set flow over files (kept for callers of the first version)."""
    decode = make_decoder("json", max_future_s=math.inf)
    return build_replay_flow(
        FileSource(list(inputs)), {"A": (ruleset, decode)}, {"A": events}, poison, shards=shards
    )


def transitions(events: Sequence[AlertEvent], all_states: bool = False) -> list[dict[str, object]]:
    """Records sorted by (time, rule, labels): the same whatever the worker count."""
    keep = [
        e
        for e in events
        if all_states
        or (
            e.state in NOTIFIED_STATES
            and e.notify is not None
            and e.notify.value not in ("repeat_elapsed", "unsuppressed")
        )
    ]
    keep.sort(key=lambda e: (e.at, e.alert_name, e.labels, e.state.value))
    return [e.to_record() for e in keep]


# --------------------------------------------------------------------------- inputs and runs


@dataclass(frozen=True)
class ReplayInput:
    """A bounded input and how to read it; `start`/`end` is the event-time window [start, end)."""

    source: Source[Any]
    progress: Progress
    decode: Decoder
    start: float = -math.inf
    end: float = math.inf
    describe: str = ""
    kafka: bool = False
    full_scan: bool = False
    slack_s: float = 0.0
    available: TopicSpan | None = None  # Kafka, when the offset search found no record


def _decoder(fmt: str, registry: str | None) -> Decoder:
    # no future check: a recording's timestamps are in the past of any "now" that matters
    return make_decoder(fmt, registry, max_future_s=math.inf)


def file_input(
    paths: Sequence[Path],
    *,
    fmt: str = "json",
    registry: str | None = None,
    start: float = -math.inf,
    end: float = math.inf,
    progress_s: float = 2.0,
    batch_size: int = 1000,
) -> ReplayInput:
    progress = Progress(sum(p.stat().st_size for p in paths if p.is_file()), interval_s=progress_s)
    source = FileSource(list(paths), batch_size=batch_size, progress=progress)
    return ReplayInput(source, progress, _decoder(fmt, registry), start, end, ", ".join(map(str, paths)))


def kafka_input(
    brokers: Sequence[str],
    topics: Sequence[str],
    start: float,
    end: float,
    *,
    slack_s: float = 300.0,
    add_config: Mapping[str, Any] | None = None,
    fmt: str = "json",
    registry: str | None = None,
    progress_s: float = 2.0,
    batch_size: int = 1000,
    max_skew_s: float = 5.0,
    full_scan: bool = False,
) -> ReplayInput:
    """Topics (names or `^patterns`) between two event times; offsets are planned now.

    `slack_s` widens the offset search on both sides: record timestamps only approximate
    event times (collector batching, clock skew); the exact window is applied after decoding.
    `full_scan` reads every record instead (data produced long after its event times).
    `max_skew_s` keeps partitions aligned in record time (see `connectors.kafka.replay.Aligner`).
    """
    names: list[str] = []
    for t in topics:
        names.extend(n for n in resolve_topics(brokers, t, add_config=add_config) if n not in names)
    lo, hi = (-math.inf, math.inf) if full_scan else (start - slack_s, end + slack_s)
    ranges = plan_ranges(brokers, names, lo, hi, add_config=add_config)
    available = None
    if not any(r.size for r in ranges) and not full_scan:
        # found nothing by record time: say what the topics do hold (WindowCheck)
        available = topic_span(brokers, names, add_config=add_config)
    progress = Progress(sum(r.size for r in ranges), interval_s=progress_s)
    source = KafkaRangeSource(
        brokers,
        ranges,
        add_config=add_config,
        batch_size=batch_size,
        progress=progress,
        max_skew_s=max_skew_s,
    )
    text = f"{', '.join(names)}: {len(ranges)} partition(s), {sum(r.size for r in ranges):,} record(s)"
    text += " (full scan)" if full_scan else ""
    return ReplayInput(
        source,
        progress,
        _decoder(fmt, registry),
        start,
        end,
        text,
        kafka=True,
        full_scan=full_scan,
        slack_s=slack_s,
        available=available,
    )


def fold_control(events: Sequence[ControlEvent]) -> ControlState:
    """The control topic's events, folded as every live reader folds them."""
    state = EMPTY
    for e in events:
        state = fold(state, e)
    return state


def control_in_window(state: ControlState, start: float, end: float) -> int:
    """Silences that can mute something in the event-time window [start, end)."""
    return sum(1 for s in state.silences.values() if s.starts_at < end and s.ends_at > start)


def read_control(
    brokers: Sequence[str], topic: str, add_config: Mapping[str, Any] | None = None
) -> ControlState:
    """The whole control topic, folded (`connectors.control.reader.read_all`)."""
    from connectors.control.reader import read_all

    try:
        events = read_all(brokers, topic, add_config)
    except ConnectorError as exc:
        raise ConnectorError(f"{exc} (or pass --no-control)") from exc
    return fold_control(events)


@dataclass(frozen=True)
class ReplayResult:
    records: Mapping[str, list[dict[str, object]]]  # per side ("A", "B"), sorted transitions
    poison: list[Poison]
    messages: int  # read from the input
    skipped: int  # outside the event-time window
    first_ts: float | None  # event-time span of the messages evaluated
    last_ts: float | None
    seconds: float
    seen_first: float | None = None  # event-time span of every message decoded, in the window or not
    seen_last: float | None = None
    control_silences: int = 0  # control-topic silences applied (overlapping the window)
    control_read: bool = False  # the control topic was read
    timeline: Mapping[str, list[dict[str, object]]] = field(default_factory=dict)  # every transition
    kept: KeptSamples | None = None  # the samples the rules read (`keep_samples`)

    def window(self, inp: ReplayInput) -> report.WindowCheck:
        span = inp.available
        return report.WindowCheck(
            start=inp.start,
            end=inp.end,
            messages=self.messages,
            outside=self.skipped,
            bad=len(self.poison),
            kept_first=self.first_ts,
            kept_last=self.last_ts,
            seen_first=self.seen_first,
            seen_last=self.seen_last,
            kafka=inp.kafka,
            full_scan=inp.full_scan,
            slack_s=inp.slack_s,
            available=span.records if span is not None else None,
            record_first=span.first if span is not None else None,
            record_last=span.last if span is not None else None,
        )


MAX_KEPT_SAMPLES = 4_000_000  # for the report's charts: ~16 bytes each; past it, later samples are not drawn


@dataclass
class KeptSamples:
    """The samples of the series the rules read, kept for the HTML report's value charts."""

    series: dict[report.SeriesKey, tuple[array[float], array[float]]] = field(default_factory=dict)
    kept: int = 0
    dropped: int = 0
    cut_at: float | None = None  # event time of the first sample not kept (the cap was reached)

    def sorted(self) -> report.SeriesSamples:
        out: dict[report.SeriesKey, tuple[Sequence[float], Sequence[float]]] = {}
        for key, (ts, vs) in self.series.items():
            if any(ts[i] > ts[i + 1] for i in range(len(ts) - 1)):  # partitions interleave
                pairs = sorted(zip(ts, vs, strict=True))
                out[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
            else:
                out[key] = (ts, vs)
        return out


def keeping(decode: Decoder, metrics: set[str], kept: KeptSamples, cap: int = MAX_KEPT_SAMPLES) -> Decoder:
    """`decode`, also keeping the samples of `metrics` (only when an HTML report is asked for:
    this costs a tuple and two appends per message)."""
    series = kept.series

    def keep(raw: bytes, now: float) -> Any:
        m = decode(raw, now)
        if m.metric_name in metrics:
            if kept.kept >= cap:
                kept.dropped += 1
                if kept.cut_at is None or m.ts < kept.cut_at:
                    kept.cut_at = m.ts
                return m
            key = (m.metric_name, m.instance_id, m.database_type, tuple(sorted(m.tags.items())))
            got = series.get(key)
            if got is None:
                got = series[key] = (array("d"), array("d"))
            got[0].append(m.ts)
            got[1].append(m.value)
            kept.kept += 1
        return m

    return keep


def replay(
    rulesets: Sequence[tuple[str, RuleSet]],
    inp: ReplayInput,
    *,
    groups: Mapping[str, Sequence[RuleGroup]] | None = None,
    shards: int = DEFAULT_SHARDS,
    all_states: bool = False,
    control: ControlState | None = None,
    keep_samples: bool = False,
) -> ReplayResult:
    """Run every rule set over `inp` in one flow; blocks until the input is exhausted.

    `control`: the control plane's silences, applied by event time (`read_control`).
    `keep_samples`: keep the samples the rules read, for the HTML report's charts."""
    events: dict[str, list[AlertEvent]] = {side: [] for side, _ in rulesets}
    poison: list[Poison] = []
    sides: dict[str, tuple[RuleSet, Decoder]] = {}
    prom: dict[str, tuple[Sequence[RuleGroup], Decoder]] = {}
    seen: list[Callable[[], Observed]] = []
    windows: dict[str, EventWindow] = {}
    kept = KeptSamples()
    for side, ruleset in rulesets:
        keeps = keep_samples and not seen  # one side sees every message the others see
        if ruleset.rules and not keeps:
            # the engine windows each decoded batch: no Python call per message for it
            decode, window = inp.decode, EventWindow(inp.start, inp.end)
            windows[side], observed = window, window.observed
        else:
            decode, observed = windowed_decoder(inp.decode, inp.start, inp.end)
        if keeps:
            decode = keeping(decode, {r.metric for _, rs in rulesets for r in rs.rules}, kept)
        sides[side] = (ruleset, decode)
        if groups and groups.get(side):  # beside an engine: a decoder of their own (counts once)
            own = windowed_decoder(inp.decode, inp.start, inp.end)[0] if ruleset.rules else decode
            prom[side] = (groups[side], own)
        seen.append(observed)
    flow = build_replay_flow(
        inp.source, sides, events, poison, shards=shards, control=control, groups=prom, windows=windows
    )
    started = time.perf_counter()
    run_main(flow)
    seconds = time.perf_counter() - started
    first = seen[0]()
    seen_first, seen_last = first.seen_first, first.seen_last
    return ReplayResult(
        records={side: transitions(evs, all_states) for side, evs in events.items()},
        poison=poison,
        messages=inp.progress.messages,
        skipped=first.skipped,
        first_ts=first.first,
        last_ts=first.last,
        seconds=seconds,
        seen_first=seen_first,
        seen_last=seen_last,
        control_silences=control_in_window(control, inp.start, inp.end) if control is not None else 0,
        control_read=control is not None,
        timeline={side: transitions(evs, all_states=True) for side, evs in events.items()},
        kept=kept,
    )


def backtest_groups(paths: Sequence[Path]) -> list[RuleGroup]:
    """The Prometheus rule groups among `paths` (`RuleFileError` with every problem)."""
    files = prometheus_files(paths)
    return load_prometheus_rules(files) if files else []


def run(
    ruleset: RuleSet, inputs: Sequence[Path], *, all_states: bool = False
) -> tuple[list[dict[str, object]], list[Poison]]:
    """Transitions of `ruleset` over JSONL/Avro files (tests and scripts)."""
    result = replay([("A", ruleset)], file_input(inputs, progress_s=0), all_states=all_states)
    return result.records["A"], result.poison


# --------------------------------------------------------------------------- promtool


def promtool_main(paths: Sequence[Path]) -> int:
    """`--promtool`: the test files run by `rules.check`, the one runner (Prometheus rule files
    load through `rules.promql.rulefile` and run through the group evaluator, as in the live job);
    its output and exit codes."""
    return check_main([str(p) for p in paths])


# --------------------------------------------------------------------------- CLI


def _kafka_config(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--kafka-config: {item!r} is not key=value")
        out[k.strip()] = v.strip()
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m flows.backtest",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="TIME: ISO 8601 with a zone (2025-01-15T10:00:00Z), a date, now, or relative (-7d, -36h).",
    )
    ap.add_argument("--rules", action="append", help="rule file or directory (repeatable): rule set A")
    ctl = ap.add_argument_group("control plane (Kafka input only)")
    ctl.add_argument(
        "--control-topic",
        default=os.environ.get("CONTROL_TOPIC", "gds.control"),
        help="apply this topic's silences by event time, as the live job did (default: $CONTROL_TOPIC "
        "or gds.control; off: none)",
    )
    ctl.add_argument("--no-control", action="store_true", help="ignore the control topic's silences")
    ap.add_argument("--compare", action="append", metavar="RULES", help="rule set B, run over the same data")
    src = ap.add_argument_group("input: files, or Kafka by time range")
    src.add_argument(
        "--input",
        action="append",
        type=Path,
        help="JSONL or .avro container file (repeatable, read in order)",
    )
    src.add_argument("--topic", action="append", help="topic name or ^regex (repeatable)")
    src.add_argument("--from", dest="start", metavar="TIME", help="first event time (inclusive)")
    src.add_argument(
        "--to", dest="end", metavar="TIME", help="last event time (exclusive); Kafka default: now"
    )
    src.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    src.add_argument(
        "--kafka-config",
        default=os.environ.get("KAFKA_EXTRA_CONFIG", ""),
        help="extra librdkafka settings k=v;k=v (default: $KAFKA_EXTRA_CONFIG)",
    )
    src.add_argument("--slack", default="5m", help="widen the Kafka offset search by this (default 5m)")
    src.add_argument(
        "--full-scan",
        action="store_true",
        help="Kafka: read every record of the topics and keep the window's event times, instead of "
        "finding offsets by record (produce) time; for data produced long after it happened",
    )
    src.add_argument(
        "--format",
        choices=("json", "avro", "auto"),
        help="message format (default: json, auto with a registry)",
    )
    src.add_argument(
        "--schema-registry",
        default=os.environ.get("SCHEMA_REGISTRY_URL") or None,
        help="for Confluent-framed Avro (default: $SCHEMA_REGISTRY_URL)",
    )
    out = ap.add_argument_group("output")
    out.add_argument("--output", type=Path, help="transition log to write (JSONL)")
    out.add_argument("--summary", type=Path, help="per-rule summary as JSON")
    out.add_argument("--diff", type=Path, help="A/B diff as JSON (needs --compare)")
    out.add_argument("--html", type=Path, help="self-contained HTML report: timeline, charts per alert")
    out.add_argument("--all-states", action="store_true", help="also log pending/inactive and repeats")
    out.add_argument("--progress", type=float, default=2.0, help="seconds between progress lines; 0: none")
    ap.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help=argparse.SUPPRESS)
    ap.add_argument(
        "--promtool",
        action="append",
        type=Path,
        help="run a promtool test file, as `python -m rules.check FILE` (repeatable)",
    )
    return ap


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _glue_relative_times(argv: Sequence[str]) -> list[str]:
    """`--from -7d` -> `--from=-7d`: argparse would take `-7d` for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--from", "--to") and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(_glue_relative_times(sys.argv[1:] if argv is None else argv))
    if args.promtool:
        return promtool_main(args.promtool)
    if not args.rules:
        ap.error("--rules is required (or --promtool)")
    if bool(args.input) == bool(args.topic):
        ap.error("give either --input FILE or --topic PATTERN --from TIME")
    if args.diff and not args.compare:
        ap.error("--diff needs --compare")
    if args.full_scan and not args.topic:
        ap.error("--full-scan is for --topic (files are always read whole)")
    now = time.time()
    try:
        start = parse_time(args.start, now) if args.start else -math.inf
        end = parse_time(args.end, now) if args.end else (now if args.topic else math.inf)
        slack = parse_duration(args.slack)
        kafka_config = _kafka_config(args.kafka_config)
    except ValueError as exc:
        ap.error(str(exc))
    if args.topic and start == -math.inf:
        ap.error("--topic needs --from TIME")
    if not start < end:
        ap.error("--from must be before --to")
    try:
        rulesets = [("A", load_rules(args.rules))]
        groups = {"A": backtest_groups(args.rules)}
        if args.compare:
            rulesets.append(("B", load_rules(args.compare)))
            groups["B"] = backtest_groups(args.compare)
    except RuleFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    fmt = args.format or ("auto" if args.schema_registry else "json")
    control: ControlState | None = None
    try:
        if args.topic:
            if not args.bootstrap:
                ap.error("--topic needs --bootstrap or $KAFKA_BOOTSTRAP_SERVERS")
            brokers = [b.strip() for b in args.bootstrap.split(",") if b.strip()]
            topic = "" if args.no_control else args.control_topic.strip()
            if topic and topic.lower() not in ("off", "none"):
                control = read_control(brokers, topic, kafka_config)
            inp = kafka_input(
                brokers,
                args.topic,
                start,
                end,
                slack_s=slack,
                add_config=kafka_config,
                fmt=fmt,
                registry=args.schema_registry,
                progress_s=args.progress,
                full_scan=args.full_scan,
            )
        else:
            inp = file_input(
                args.input,
                fmt=fmt,
                registry=args.schema_registry,
                start=start,
                end=end,
                progress_s=args.progress,
            )
        tune_gc()  # set-up is over (connectors/ops/runtime.py): the replay is the job's hot path
        result = replay(
            rulesets,
            inp,
            groups=groups,
            shards=args.shards,
            all_states=args.all_states,
            control=control,
            keep_samples=args.html is not None,
        )
    except ConnectorError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # bytewax wraps errors; show the cause, not a Rust backtrace
        print(f"backtest failed: {exc}", file=sys.stderr)
        return 1
    window = result.window(inp)
    _report(args, rulesets, inp, result, window)
    return EXIT_EMPTY_WINDOW if window.empty else 0


def _charts(
    rulesets: Sequence[tuple[str, RuleSet]], result: ReplayResult, lo: float, hi: float
) -> tuple[list[InstanceChart], int]:
    """The report's per-instance charts, side by side (A then B), sharing the chart budget."""
    samples = result.kept.sorted() if result.kept is not None else {}
    charts: list[InstanceChart] = []
    left_off = 0
    for side, ruleset in rulesets:
        got, more = report.instance_charts(
            result.timeline.get(side, result.records[side]),
            ruleset.rules,
            samples,
            lo,
            hi,
            interval_s=ruleset.eval_interval_s,
            side=side,
            limit=report.MAX_CHARTS // len(rulesets),
        )
        charts.extend(got)
        left_off += more
    return charts, left_off


def _report(
    args: argparse.Namespace,
    rulesets: Sequence[tuple[str, RuleSet]],
    inp: ReplayInput,
    result: ReplayResult,
    window: report.WindowCheck,
) -> None:
    comparing = len(rulesets) > 1
    a = result.records["A"]
    b = result.records.get("B")
    if args.output:
        with args.output.open("w", encoding="utf-8") as f:
            if comparing:
                rows = [{**r, "side": side} for side in SIDES[: len(rulesets)] for r in result.records[side]]
                rows.sort(key=lambda r: (str(r["at"]), str(r["side"])))
            else:
                rows = a
            for rec in rows:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
    # the report covers the data evaluated: from --from (or the first event) to the last event
    lo = inp.start if math.isfinite(inp.start) else result.first_ts
    hi = result.last_ts if result.last_ts is not None else (inp.end if math.isfinite(inp.end) else None)
    lo = lo if lo is not None else (hi if hi is not None else 0.0)
    hi = hi if hi is not None and hi > lo else lo
    names = {side: [r.name for r in rs.rules] for side, rs in rulesets}
    summaries = {side: report.summarize(result.records[side], hi, names[side]) for side, _ in rulesets}
    print(f"backtest {iso(lo)} .. {iso(hi)}: {inp.describe}")
    if result.control_read:
        n, topic = result.control_silences, args.control_topic
        print(f"control: {n} silence(s) from {topic} applied (active in the window)")
    if comparing:
        print(f"A = {', '.join(args.rules)}; B = {', '.join(args.compare)}")
        print(report.compare_table(summaries["A"], summaries["B"]))
        assert b is not None
        d = report.diff(a, b, hi)
        print()
        print(report.diff_text(d))
        if args.diff:
            _write_json(args.diff, {"from": iso(lo), "to": iso(hi), **d.as_dict()})
    else:
        print(report.summary_table(summaries["A"]))
    if args.summary:
        data: dict[str, Any] = {
            "from": iso(lo),
            "to": iso(hi),
            "messages": result.messages,
            "rules": list(args.rules),
            "summary": [s.as_dict() for s in summaries["A"]],
            "window": window.as_dict(),
            "control_silences": result.control_silences,
        }
        if comparing:
            data["compare"] = {"rules": list(args.compare), "summary": [s.as_dict() for s in summaries["B"]]}
        _write_json(args.summary, data)
    if args.html:
        charts, left_off = _charts(rulesets, result, lo, hi)
        kept = result.kept or KeptSamples()
        args.html.write_text(
            report.html_report(
                title="Backtest" + (" A/B" if comparing else ""),
                start=lo,
                end=hi,
                a=a,
                b=b,
                rules_a=names["A"],
                rules_b=names.get("B", ()),
                facts={
                    "input": inp.describe,
                    "rules A": ", ".join(args.rules),
                    **({"rules B": ", ".join(args.compare)} if comparing else {}),
                    "messages": result.messages,
                    "bad messages": len(result.poison),
                    "outside the window": result.skipped,
                    "control silences applied": result.control_silences,
                    "samples kept for the charts": kept.kept,
                    **(
                        {"samples not kept (cap)": f"{kept.dropped:,}: no values from {iso(kept.cut_at)}"}
                        if kept.cut_at is not None
                        else {}
                    ),
                },
                window=window,
                charts=charts,
                charts_left_off=left_off,
            ),
            encoding="utf-8",
        )
    for p in result.poison[:20]:
        print(f"skipped {p.msg.topic}@{p.msg.offset}: {p.error}", file=sys.stderr)
    for text in window.findings():
        print(f"backtest: {'WARNING' if window.empty else 'note'}: {text}", file=sys.stderr)
    print(
        json.dumps(
            {
                "transitions": len(a),
                **({"transitions_b": len(b)} if b is not None else {}),
                "bad_messages": len(result.poison),
                "skipped_out_of_range": result.skipped,
                "control_silences": result.control_silences,
                "messages": result.messages,
                "window_empty": window.empty,
                "seconds": round(result.seconds, 3),
                "messages_per_s": round(result.messages / result.seconds) if result.seconds else None,
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
