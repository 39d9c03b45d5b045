"""Property-based fuzzing of the message path (issue 10, item 15).

Random and hostile messages go through decode -> alerting engine -> storage rows (PostgreSQL
staging rows, Redis latest values, alert records) -> rollup shard -> ClickHouse rows and
`metrics-aggregated` records. The properties: nothing raises, and every input is either
processed (a Metric) or poison with a reason, whose dead letter can be built and read back.
The example count is bounded so the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import PoisonMessage
from connectors.kafka.dlq import MAX_ERROR_CHARS, dead_letter_from, parse_dead_letter
from connectors.kafka.serde import MAX_ABS_VALUE, decode_json
from connectors.storage.clickhouse import rollup_row
from connectors.storage.latest import newest_per_key
from connectors.storage.timescale import STAGE_METRIC_COLUMNS, SeriesRows, decode_alert_record
from flows.common import decode_batch
from rules.engine import ShardEngine
from rules.loader import BUNDLED, load_rules
from rules.metric import Metric
from rules.model import AlertEvent, RuleSet
from rules.rollup.windows import Rollup, RollupConfig, RollupShard

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z
NOW = T0 + 86_400.0

# A few rules beyond the bundled ones, so every aggregation family meets the fuzzed values.
EXTRA_RULES = """
alert_rules:
  - name: FuzzSum
    metric: fuzz_metric
    condition: {operator: ">", threshold: 1.0e+299, duration: 0s, aggregation: sum}
    window: 1m
    severity: warning
    annotations: {summary: "sum {{ $value }} on {{ $labels.instance_id }} ({{ $labels.q }})"}
  - name: FuzzRate
    metric: fuzz_metric
    condition: {operator: "<", threshold: -1, duration: 0s, aggregation: rate}
    window: 2m
    severity: critical
    annotations: {summary: "rate {{ $value | printf \\"%.3f\\" }}"}
  - name: FuzzP99
    metric: cpu_usage_percent
    condition: {operator: ">=", threshold: 0, duration: 1m, aggregation: p99}
    window: 1m
    severity: info
"""


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path: Path = tmp_path_factory.mktemp("rules") / "fuzz.yml"
    path.write_text(EXTRA_RULES, encoding="utf-8")
    return load_rules([BUNDLED, path])


# --------------------------------------------------------------------------- strategies

# every code point, surrogates and NUL included: producers are not bound to valid Unicode
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
names = st.one_of(
    st.sampled_from(["db-1", "db-2", "prod-db-01"]),
    any_text,
    st.sampled_from(["x" * 3000, "é" * 257]),
)
metric_names = st.one_of(
    st.sampled_from(
        ["cpu_usage_percent", "memory_usage_percent", "replication_lag_seconds", "fuzz_metric", "up"]
    ),
    any_text,
)
huge = st.sampled_from([1e300, -1e300, 1e301, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.0])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    huge,
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    any_text,
    st.lists(st.integers(), max_size=2),
)
tag_values = st.one_of(
    any_text,
    st.sampled_from(["q" * 3000, "v" * 10_000, "w" * 16_385]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
tags = st.one_of(
    st.dictionaries(any_text, tag_values, max_size=6),
    st.just({"q": "x" * 3000, "region": "eu", "environment": "prod"}),
    st.just({f"k{i}": "v" for i in range(10_000)}),
    st.none(),
    any_text,
    st.lists(st.integers(), max_size=3),
)
timestamps = st.one_of(
    st.floats(min_value=T0, max_value=T0 + 3600),  # the interesting range: windows close
    st.integers(min_value=int(T0 * 1000), max_value=int((T0 + 3600) * 1000)),  # milliseconds
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["2025-01-15T10:30:00Z", "2025-01-15T10:30:00", "2150-01-01T00:00:00Z", "yesterday"]),
    any_text,
)


@st.composite
def seed_messages(draw: st.DrawFn) -> bytes:
    """The seed schema with hostile fields; some fields dropped, extra ones added."""
    body: dict[str, Any] = {
        "timestamp": draw(timestamps),
        "database_type": draw(st.sampled_from(["postgresql", "mysql", ""])),
        "instance_id": draw(names),
        "metric_name": draw(metric_names),
        "value": draw(values),
        "tags": draw(tags),
    }
    for k in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        del body[k]
    if draw(st.booleans()):
        body["metadata"] = draw(st.recursive(st.none() | st.integers(), lambda c: st.lists(c, max_size=3)))
    # non-finite floats are written as NaN/Infinity (what a Python producer would send)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


hostile_raw = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b"{",
        b'{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"value": NaN, "tags": ' + b"{" * 3000 + b"}" * 3000 + b"}",
        b"\x00\x00\x00\x00\x01",
        b"\xff\xfe",
        b'{"timestamp": 1e400, "value": 1}',
        b" " * 300_000,
    ]
)
raw_messages = st.one_of(
    seed_messages(), seed_messages(), seed_messages(), st.binary(max_size=64), hostile_raw
)
batches = st.lists(st.one_of(raw_messages, st.none()), min_size=1, max_size=12)


# --------------------------------------------------------------------------- the property


def kafka(raws: list[bytes | None]) -> list[KafkaSourceMessage]:
    return [
        KafkaSourceMessage(b"k", raw, topic="gds.metrics.fuzz", partition=0, offset=i)
        for i, raw in enumerate(raws)
    ]


def check_metric(m: Metric) -> None:
    """What every sink relies on for a decoded sample."""
    assert type(m.value) is float and -MAX_ABS_VALUE <= m.value <= MAX_ABS_VALUE
    assert T0 - 86_400 * 365 * 30 < m.ts < 4102444800.0
    for s in (m.instance_id, m.metric_name, m.database_type, *m.tags, *m.tags.values()):
        assert type(s) is str
        s.encode("utf-8")  # no lone surrogate reaches a sink


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batches=st.lists(batches, min_size=1, max_size=3))
def test_every_message_is_processed_or_dead_lettered_and_nothing_raises(
    ruleset: RuleSet, batches: list[list[bytes | None]]
) -> None:
    engine = ShardEngine(ruleset)
    shard = RollupShard(RollupConfig(lateness_s=30.0))
    rows = SeriesRows()
    offset = 0
    events: list[AlertEvent] = []
    rollups: list[Rollup] = []
    for raws in batches:
        msgs = kafka(raws)
        metrics, poison = decode_batch(msgs, decode_json, NOW)
        offset += len(msgs)
        # every input is accounted for, exactly once
        assert len(metrics) + len(poison) == len(msgs)
        for p in poison:
            assert p.error
            letter = dead_letter_from(p.msg, p.error, p.stage, NOW)
            back = parse_dead_letter(letter.value, letter.key)
            assert back.error == p.error[:MAX_ERROR_CHARS] and back.offset == p.msg.offset
            assert len(letter.value) < 1_000_000  # the broker's default message size limit
        for m in metrics:
            check_metric(m)

        events += engine.ingest(metrics, NOW)
        staged = rows.rows(metrics)
        assert len(staged) == len(metrics)
        for r in staged:
            assert len(r) == len(STAGE_METRIC_COLUMNS)
            assert r[1].bytes and len(r[1].bytes) == 16  # series_id: fixed size whatever the tags
            json.loads(r[5])  # labels
        for key, (ts, value) in newest_per_key(metrics).items():
            key.encode("utf-8")
            orjson.loads(f'{{"ts":{ts!r},"value":{value!r}}}')  # the Redis value is strict JSON
        rollups += shard.ingest(metrics, NOW)

    events += engine.flush()
    rollups += shard.flush()
    engine.restore(engine.snapshot())  # the state survives whatever it holds

    for e in events:
        raw = json.dumps(e.to_record()).encode()
        # the storage job's view of the alerts topic: a row, or poison (a non-finite value)
        with contextlib.suppress(PoisonMessage):
            decode_alert_record(raw)
    for w in rollups:
        row = rollup_row(w)
        # finite aggregates: the metrics-aggregated topic and chdb get strict JSON
        json.dumps(w.to_record(), allow_nan=False)
        assert all(math.isfinite(row[c]) for c in ("sum", "min", "max", "avg", "p50", "p95", "p99"))


def test_the_hostile_fixed_cases_alone() -> None:
    """The hand-picked hostile inputs, without relying on hypothesis drawing them."""
    raws: list[bytes | None] = [
        b'{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"value": NaN, "tags": ' + b"{" * 3000 + b"}" * 3000 + b"}",
        None,
        json.dumps(
            {
                "timestamp": T0,
                "database_type": "pg",
                "instance_id": "db-1",
                "metric_name": "fuzz_metric",
                "value": 1e300,
                "tags": {"q": "x" * 3000},
            }
        ).encode(),
    ]
    metrics, poison = decode_batch(kafka(raws), decode_json, NOW)
    assert len(metrics) == 1 and len(poison) == 3
    assert sys.getrecursionlimit() > 0  # still a working interpreter after the deep inputs
