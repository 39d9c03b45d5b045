"""Backtest: `python -m flows.backtest --rules PATH --input FILE.jsonl --output FILE.jsonl`.

Runs the alerting job's own evaluation sub-flow (flows.common.evaluate) over recorded
metric messages on event time only: no wall clock, no notifications, no writes anywhere
but the output file. One JSON line per transition, sorted by time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.files import JsonlSource
from connectors.serde import make_decoder
from flows.common import Poison, evaluate
from rules.loader import RuleFileError, load_rules
from rules.model import AlertEvent, AlertState, RuleSet

NOTIFIED_STATES = (AlertState.FIRING, AlertState.RESOLVED)


def build_flow(
    ruleset: RuleSet,
    inputs: Sequence[Path],
    events: list[AlertEvent],
    poison: list[Poison],
    *,
    shards: int = 64,
) -> Dataflow:
    flow = Dataflow("backtest")
    raw = op.input("metrics", flow, JsonlSource(list(inputs)))
    # no future check: a recording's timestamps are in the past of any "now" that matters
    decode = make_decoder("json", max_future_s=float("inf"))
    ev, bad = evaluate("rules", raw, ruleset, decode, shards=shards, wall=None, flush_on_eof=True)
    op.output("events", ev, TestingSink(events))
    op.output("poison", bad, TestingSink(poison))
    return flow


def transitions(events: Sequence[AlertEvent], all_states: bool = False) -> list[dict[str, object]]:
    """Records sorted by (time, rule, labels): the same whatever the worker count."""
    keep = [
        e
        for e in events
        if all_states
        or (e.state in NOTIFIED_STATES and e.notify is not None and e.notify.value != "repeat_elapsed")
    ]
    keep.sort(key=lambda e: (e.at, e.alert_name, e.labels, e.state.value))
    return [e.to_record() for e in keep]


def run(
    ruleset: RuleSet, inputs: Sequence[Path], *, all_states: bool = False
) -> tuple[list[dict[str, object]], list[Poison]]:
    events: list[AlertEvent] = []
    poison: list[Poison] = []
    run_main(build_flow(ruleset, inputs, events, poison))
    return transitions(events, all_states), poison


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.backtest", description=__doc__.splitlines()[0])
    ap.add_argument("--rules", required=True, action="append", help="rule file or directory (repeatable)")
    ap.add_argument("--input", required=True, action="append", type=Path, help="JSONL of metric messages")
    ap.add_argument("--output", required=True, type=Path, help="transition log to write (JSONL)")
    ap.add_argument("--all-states", action="store_true", help="also log pending/inactive and repeats")
    args = ap.parse_args(argv)
    try:
        ruleset = load_rules(args.rules)
    except RuleFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        records, poison = run(ruleset, args.input, all_states=args.all_states)
    except Exception as exc:  # bytewax wraps errors; show the cause, not a Rust backtrace
        print(f"backtest failed: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    with args.output.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    for p in poison[:20]:
        print(f"skipped {p.msg.topic}@{p.msg.offset}: {p.error}", file=sys.stderr)
    lines = sum(1 for path in args.input for _ in path.open("rb"))
    print(
        json.dumps(
            {
                "transitions": len(records),
                "bad_messages": len(poison),
                "messages": lines,
                "seconds": round(elapsed, 3),
                "messages_per_s": round(lines / elapsed) if elapsed else None,
            }
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
