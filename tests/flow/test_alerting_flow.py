"""The alerting dataflow end to end in-process: TestingSource in, TestingSinks out."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.kafka.serde import make_decoder
from flows.alerting import Outputs, build_flow
from flows.common import Poison
from flows.sample.generate import rows
from rules.loader import BUNDLED, load_rules
from rules.model import AlertEvent, AlertState

RULES = load_rules([BUNDLED])
DECODE = make_decoder("json", max_future_s=float("inf"))


def messages(bad: bool = True) -> list[Any]:
    out: list[Any] = []
    for i, r in enumerate(rows()):
        raw = json.dumps(r).encode()
        out.append(
            KafkaSourceMessage(
                str(r["instance_id"]).encode(),
                raw,
                topic="gds.metrics.postgresql.production",
                partition=0,
                offset=i,
            )
        )
        if bad and i in (100, 2000):
            out.append(
                KafkaSourceMessage(
                    b"prod-db-01",
                    b'{"timestamp": "2025-01-15T10:00:00Z", "value": "NaN"',
                    topic="gds.metrics.postgresql.production",
                    partition=0,
                    offset=10_000 + i,
                )
            )
            out.append(
                KafkaSourceMessage(
                    None, None, topic="gds.metrics.postgresql.production", partition=0, offset=20_000 + i
                )
            )
    return out


class Collected:
    def __init__(self) -> None:
        self.alerts: list[AlertEvent] = []
        self.notify: list[AlertEvent] = []
        self.dlq: list[Poison] = []

    def outputs(self) -> Outputs:
        return Outputs(
            TestingSink(self.alerts),
            TestingSink(self.notify),
            TestingSink(self.dlq),
            lambda e: e,
            lambda e: e,
            lambda p: p,
        )


def run_flow(items: list[Any], workers: int = 1, snapshots: bool = True, **kw: Any) -> Collected:
    got = Collected()
    flow = build_flow(
        RULES,
        TestingSource(items),
        got.outputs(),
        DECODE,
        shards=16,
        wall=None,
        flush_on_eof=True,
        snapshots=snapshots,
    )
    if workers == 1:
        run_main(flow, **kw)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers, **kw)
    return got


def key(events: list[AlertEvent]) -> list[tuple[str, str, str, float]]:
    return sorted((e.message_id, e.alert_name, e.state.value, e.at) for e in events)


def test_sample_incident_notifies_fire_and_resolve_and_dead_letters_bad_input() -> None:
    got = run_flow(messages())
    assert [(e.alert_name, e.state) for e in sorted(got.notify, key=lambda e: e.at)] == [
        ("HighCPUUsage", AlertState.FIRING),
        ("HighCPUUsage", AlertState.RESOLVED),
    ]
    assert {e.state for e in got.alerts} == {AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED}
    assert len(got.dlq) == 4
    reasons = sorted(p.error for p in got.dlq)
    assert any("tombstone" in r for r in reasons) and any("JSON" in r or "json" in r for r in reasons)
    assert {p.msg.offset for p in got.dlq} == {10_100, 12_000, 20_100, 22_000}


def test_one_and_two_workers_give_identical_alerts() -> None:
    one = run_flow(messages(), workers=1)
    two = run_flow(messages(), workers=2)
    assert key(one.alerts) == key(two.alerts) and key(one.notify) == key(two.notify)
    assert len(two.dlq) == len(one.dlq) == 4


def test_resume_after_abort_sends_no_new_notification(tmp_path: Path) -> None:
    items = messages(bad=False)
    baseline = run_flow(items)
    init_db_dir(tmp_path, 1)
    cut = len(items) * 3 // 10  # mid-incident: pending since 10:11, firing at 10:16
    aborting = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    recovery = RecoveryConfig(str(tmp_path))
    first = run_flow(aborting, epoch_interval=timedelta(seconds=0), recovery_config=recovery)
    second = run_flow(aborting, epoch_interval=timedelta(seconds=0), recovery_config=recovery)
    # the state survived: the incident went pending before the abort and fired after it,
    # and the resumed run did not start the incident over
    assert [e.state for e in first.alerts] == [AlertState.PENDING]
    assert AlertState.PENDING not in {e.state for e in second.alerts}
    both = first.notify + second.notify
    # at-least-once for the last epoch: a repeat carries the same message_id, never a new one
    assert {e.message_id for e in both} == {e.message_id for e in baseline.notify}
    assert len({e.message_id for e in both}) == len(baseline.notify) == 2


def test_without_snapshots_a_resume_starts_over(tmp_path: Path) -> None:
    # what `snapshots=False` (a process without recovery) gives up: the counter-proof of the
    # test above, so the flag cannot silently drop state a recovery store would keep
    items = messages(bad=False)
    init_db_dir(tmp_path, 1)
    cut = len(items) * 3 // 10
    aborting = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    recovery = RecoveryConfig(str(tmp_path))
    kw: dict[str, Any] = {"epoch_interval": timedelta(seconds=0), "recovery_config": recovery}
    first = run_flow(aborting, snapshots=False, **kw)
    second = run_flow(aborting, snapshots=False, **kw)
    assert [e.state for e in first.alerts] == [AlertState.PENDING]
    assert AlertState.PENDING in {e.state for e in second.alerts}  # the incident began again
