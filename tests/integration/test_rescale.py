"""Rescale 2 -> 3 processes from the same recovery directory, with alert state in flight.

Bytewax 0.21 rescales on resume ("stop-start rescaling"): snapshots are keyed by step and state
key, not by worker, and a resumed execution routes each one to whichever worker now owns its key
(docs/operations.md). What this test pins down for the alerting job, as pods run it
(`python -m bytewax.run flows.alerting -w1 -i I -a ...`):

* a job of 2 processes builds state: `db-fire` FIRING (notified), `db-span` PENDING with part of
  its 5 m `for` elapsed, then both processes are stopped as Kubernetes stops pods (SIGTERM);
* 3 processes resume from the same directory and finish the topic (bounded, `KAFKA_TAIL=false`);
* every transition on the alerts topic and every notification equals the one-process backtest of
  the same messages: `db-fire` is not announced again as a new incident, `db-span` fires at the
  tick it fires at without the stop, nothing is lost; offsets came back too (the poison at the
  topic's head is dead-lettered once, not twice).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from flows import backtest
from rules.loader import BUNDLED, load_rules
from tests.integration.test_scale_recovery import (
    POISON,
    base_env,
    free_port,
    job,
    recovery_frontier,
    spanning_rows,
    topics_for,
    wait_for,
)
from tests.support.data import T0, incident_rows, produce, record_count, write_jsonl
from tests.support.http_receiver import Recorder, RecordingServer
from tests.support.live_job import AlertsTail

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def key(r: dict[str, Any]) -> tuple[str, ...]:
    """A transition, whoever computed it: rule, instance, state entered, when, since when."""
    labels: dict[str, Any] = r["labels"]
    return (
        str(r["alert_name"]),
        str(labels.get("instance_id")),
        str(r["state"]),
        str(r["at"]),
        str(r["active_at"]),
    )


def executions(recovery: Path) -> dict[int, int]:
    """Bytewax's record of each execution on this directory: execution number -> worker count."""
    out: dict[int, int] = {}
    for part in recovery.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5) as db:
            out.update(db.execute("SELECT ex_num, worker_count FROM exs").fetchall())
    return out


def cluster(n: int, extra: list[str], env: dict[str, str], tmp: Path, tag: str) -> list[Any]:
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(n))
    return [job(["-w1", f"-i{i}", "-a", addresses, *extra], env, tmp / f"{tag}-p{i}.log") for i in range(n)]


def test_rescale_from_two_to_three_processes_keeps_alert_state(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    cut = T0 + int(17.5 * 60)
    stamp_cut = datetime.fromtimestamp(cut, UTC).isoformat().replace("+00:00", "Z")
    rows = sorted(
        incident_rows(instances=16, minutes=35)
        + spanning_rows("db-span", 14, 21)  # HighCPUUsage pending from 10:15, fires 10:20
        + spanning_rows("db-fire", 3, 25),  # fires ~10:08, still firing at the stop, resolves ~10:25
        key=lambda r: str(r["timestamp"]),
    )
    first_half = [r for r in rows if str(r["timestamp"]) < stamp_cut]
    second_half = rows[len(first_half) :]

    # the one-process reference: the backtest over the same messages, every transition
    data = tmp_path / "all.jsonl"
    write_jsonl(data, rows)
    records, poison = backtest.run(load_rules([BUNDLED]), [data], all_states=True)
    assert not poison
    want: list[dict[str, Any]] = list(records)
    want_ids = {str(r["message_id"]) for r in want if r["notify"] and not r["suppressed"]}

    def of(instance: str, state: str) -> list[dict[str, Any]]:
        return [r for r in want if r["labels"]["instance_id"] == instance and r["state"] == state]

    (fire,) = of("db-fire", "firing")
    (span_pending,) = of("db-span", "pending")
    (span_fire,) = of("db-span", "firing")
    assert str(fire["at"]) < stamp_cut < str(of("db-fire", "resolved")[0]["at"])  # firing across the stop
    assert str(span_pending["at"]) < stamp_cut < str(span_fire["at"])  # pending across the stop

    topics = topics_for(topic_factory)  # 4 input partitions: 2 + 2, then 2 + 1 + 1 workers
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "6"], check=True, cwd=ROOT)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for raw in POISON:
        p.produce(topics["metrics"], raw, b"db-00")
    assert p.flush(30) == 0
    produce(kafka_bootstrap, topics["metrics"], first_half)

    rec = Recorder()
    server = RecordingServer(0, rec)
    flags = ["-r", str(recovery), "-s", "1", "-b", "5"]
    try:
        env = base_env(kafka_bootstrap, topics, server.url)
        two = cluster(2, flags, env, tmp_path, "two")
        logs2 = [tmp_path / f"two-p{i}.log" for i in range(2)]

        tail = AlertsTail(kafka_bootstrap, topics["alerts"])

        def pending_seen() -> bool:
            return any(key(r) == key(span_pending) for r in tail.poll(0.3))

        # db-fire delivered, the poison dead-lettered, db-span's pending written to the alerts topic
        wait_for(
            lambda: (
                str(fire["message_id"]) in rec.ok_ids()
                and record_count(kafka_bootstrap, topics["dlq"]) == 3
                and pending_seen()
            ),
            180,
            two,
            logs2,
        )
        seen = recovery_frontier(recovery)  # two more snapshots, so the state above is in one
        wait_for(lambda: recovery_frontier(recovery) >= seen + 2, 60, two, logs2)
        for proc in two:
            proc.send_signal(signal.SIGTERM)  # what `kubectl scale --replicas=0` sends
        for proc in two:
            proc.wait(timeout=30)
        before = set(rec.ok_ids())
        assert str(span_fire["message_id"]) not in before  # still pending at the stop

        produce(kafka_bootstrap, topics["metrics"], second_half)
        three = cluster(3, flags, {**env, "KAFKA_TAIL": "false"}, tmp_path, "three")
        for i, proc in enumerate(three):
            assert proc.wait(timeout=300) == 0, (tmp_path / f"three-p{i}.log").read_text()[-3000:]
    finally:
        server.stop()

    assert executions(recovery) == {0: 2, 1: 3}  # Bytewax resumed execution 0 (2 workers) with 3
    assert record_count(kafka_bootstrap, topics["dlq"]) == 3, "the 3 processes re-read committed offsets"
    live = tail.poll(3.0)
    tail.close()
    # the resumed epoch may write a transition twice (at-least-once), always with its message_id
    by_id = {str(r["message_id"]): r for r in live}
    assert len({key(r) for r in by_id.values()}) == len(by_id)
    assert sorted(map(key, by_id.values())) == sorted(map(key, want))  # same transitions, same times
    fired = [r for r in by_id.values() if r["labels"]["instance_id"] == "db-fire" and r["state"] == "firing"]
    assert [key(r) for r in fired] == [key(fire)], "db-fire was announced again as a new incident"
    assert str(span_fire["message_id"]) in set(rec.ok_ids()), "db-span's pending state was lost"
    got = rec.ok_ids()
    assert set(got) == want_ids  # nothing lost, nothing new
    assert before < want_ids
    print(json.dumps({"notifications": len(want_ids), "transitions": len(want), "posts": len(got)}))
