"""`evaluate` with one shard routes nothing (`route_all`: the source batch is the shard's chunk,
progress markers behind its messages): the same transitions as with several shards, markers and
stale instances included."""

from __future__ import annotations

import json
import math
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.kafka.message import source_message
from connectors.kafka.serde import make_decoder
from connectors.kafka.source import SourceProgress
from flows.common import evaluate
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent

RULES = load_rules([BUNDLED])
DECODE = make_decoder("json", max_future_s=math.inf)
T0 = 1_736_935_200.0
WALL = T0 + 1800.0


def items() -> list[Any]:
    """Breaching CPU samples of 6 instances for 20 minutes, a progress marker every 5 minutes
    of samples; the last one says the input was caught up long after (every instance silent)."""
    out: list[Any] = []
    for step in range(80):
        ts = T0 + step * 15
        for k in range(6):
            row = {
                "timestamp": ts,
                "database_type": "postgresql",
                "instance_id": f"db{k}",
                "metric_name": "cpu_usage_percent",
                "value": 97.0 if k % 2 == 0 else 20.0,
                "tags": {"region": "eu"},
            }
            out.append(source_message(f"db{k}".encode(), json.dumps(row).encode(), "metrics", 0, len(out)))
        if step % 20 == 19:
            out.append(SourceProgress("0-metrics", ts + 1.0, 1))
    out.append(SourceProgress("0-metrics", WALL + 3600, 1))
    return out


def transitions(shards: int) -> list[tuple[str, str, float, bool]]:
    flow = Dataflow("one-shard")
    raw = op.input("in", flow, TestingSource(items(), batch_size=50))
    events, poison = evaluate("eval", raw, RULES, DECODE, shards=shards, wall=lambda: WALL, flush_on_eof=True)
    got: list[AlertEvent] = []
    bad: list[Any] = []
    op.output("events", events, TestingSink(got))
    op.output("dlq", poison, TestingSink(bad))
    run_main(flow)
    assert bad == []  # a marker is never decoded as a message
    return sorted((e.instance_id, e.state.value, e.at, e.stale) for e in got)


def test_one_shard_gives_what_several_give() -> None:
    one = transitions(1)
    assert {s for _, s, _, _ in one} >= {"pending", "firing"}
    assert any(stale for *_, stale in one)  # the last marker aged every instance
    assert one == transitions(8)
