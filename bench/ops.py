"""Operations at scale: SIGKILL of one of two processes, and a rescale from 2 to 3 processes.

`python bench/ops.py [--rate 2000] [--snapshot-s 2]` (needs KAFKA_BOOTSTRAP_SERVERS). A producer
in this process feeds a 4-partition topic at a fixed rate with event time = wall time; the
alerting job (evaluation only, `NOTIFY_DELIVERY=separate`) runs as 2 processes x 1 worker with
recovery (`-r DIR -s S -b 0`). Each process serves its own `/metrics`; "processing" is its
`gds_messages_in_total` moving.

* kill: SIGKILL process 1, then do what Kubernetes does: start again every process that ended
  (the killed one at once; the survivor when it exits, which Timely makes it do). Emits the
  seconds until the survivor exits, until the new cluster processes again, until it is caught up,
  and the messages read twice (at-least-once replay of the last epoch).
* rescale: SIGTERM both (what `kubectl scale --replicas=0` sends; the job has no handler, so this
  is an abrupt stop too), start 3 processes on the same recovery directory. Same figures.
* frozen: SIGSTOP one of the 3 (a hung process or a partitioned node: its sockets stay open).
  Emits when the others stopped processing (they do not exit) and when their `/healthz` failed
  (`HEALTH_STALE_S` = --stale-s); then the frozen one is killed, as liveness would.

Messages read twice = (read by the stopped execution) + (read by the next one, once the feed has
stopped and everything is read) - (produced): the stopped execution's count is its last scrape
(every 20 ms), so the figure is exact to about rate x 0.02 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import METRICS, emit, rules_file

ROOT = Path(__file__).resolve().parents[1]
SCRAPE_S = 0.02
COUNTER = re.compile(r'^gds_messages_in_total\{flow="alerting"\} ([0-9.e+]+)$', re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Feed:
    """`rate` samples a second, spread over instances x METRICS series, event time = now."""

    def __init__(self, bootstrap: str, topic: str, rate: int, base: float) -> None:
        self.base = base  # the job's counters when this feed started
        self.stopped = False
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic, self.instances = topic, max(1, rate // len(METRICS))
        self.produced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> Feed:
        self._thread.start()
        return self

    def stop(self) -> int:
        self.stopped = True
        self._stop.set()
        self._thread.join(30)
        assert self.producer.flush(60) == 0
        return self.produced

    def _run(self) -> None:
        tick = 0.1  # a tenth of the instances every 100 ms: an even rate, each series once a second
        start, k = time.time(), 0
        while not self._stop.is_set():
            now = time.time()
            for i in range(k % 10, self.instances, 10):
                iid = f"ops-db-{i:04d}"
                for m in METRICS:
                    body = {
                        "timestamp": now, "database_type": "postgresql", "instance_id": iid,
                        "metric_name": m, "value": 50.0, "tags": {"environment": "bench"},
                    }  # fmt: skip
                    self.producer.produce(self.topic, json.dumps(body).encode(), iid.encode())
                    self.produced += 1
            self.producer.poll(0)
            k += 1
            self._stop.wait(max(0.0, start + k * tick - time.time()))


@dataclass
class Proc:
    """One job process and the last value of its counter."""

    popen: subprocess.Popen[bytes]
    port: int
    count: float = 0.0

    def scrape(self) -> float:
        """The counter (its last value once the process has ended)."""
        if self.popen.poll() is None:
            self.count = max(self.count, scrape(self.port) or 0.0)
        return self.count


def scrape(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=0.5) as r:
            text = r.read().decode()
    except (OSError, http.client.HTTPException):  # not up yet, or ended mid-answer
        return None
    found = COUNTER.search(text)
    return float(found.group(1)) if found else None


def healthy(port: int) -> bool:
    """`/healthz` answers 200 within a second."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as r:
            return int(r.status) == 200
    except (OSError, http.client.HTTPException):
        return False


def total(procs: list[Proc]) -> float:
    return sum(p.scrape() for p in procs)


class Job:
    """Starts alerting processes on one recovery directory and set of topics."""

    def __init__(self, env: dict[str, str], recovery: Path, snapshot_s: float, logs: Path) -> None:
        self.env, self.recovery, self.snapshot_s, self.logs = env, recovery, snapshot_s, logs
        self.every: list[Proc] = []

    def start(self, index: int, addresses: list[str]) -> Proc:
        port = free_port()
        log = (self.logs / f"p{index}-{len(self.every)}.log").open("wb")
        args = ["-w1", "-r", str(self.recovery), "-s", f"{self.snapshot_s:g}", "-b", "0"]
        args += [f"-i{index}", "-a", ";".join(addresses)]
        popen = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.alerting", *args],
            cwd=ROOT,
            env={**self.env, "METRICS_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.every.append(Proc(popen, port))
        return self.every[-1]

    def kill_all(self) -> None:
        for p in self.every:
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait(10)


def wait(cond: Any, bound_s: float, what: str) -> None:
    deadline = time.monotonic() + bound_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/ops: {what} not reached within {bound_s:g}s")
        time.sleep(SCRAPE_S)


def steady(procs: list[Proc], feed: Feed, rate: int, settle_s: float) -> float:
    """Every process reads and the cluster keeps up with the feed; then a few snapshots pass.
    Returns the counters' sum when the feed started (what this phase's count starts from)."""
    wait(lambda: all(p.scrape() > 0 for p in procs), 120, "every process reading")
    wait(lambda: feed.produced - total(procs) + feed.base < rate, 120, "caught up")
    time.sleep(settle_s)
    return feed.base


def outage(
    feed: Feed, before: float, nxt: list[Proc], t_stop: float, rate: int, bound_s: float = 180
) -> dict[str, float]:
    """The next execution `nxt` (already started) from `t_stop` until caught up, then the feed
    stops and everything is read: seconds to the first batch, to caught up, messages re-read.

    `before`: what the stopped execution read of this feed; each process of `nxt` counts from 0."""
    samples: list[tuple[float, int, float]] = []
    first: float | None = None
    deadline = time.monotonic() + bound_s
    while True:
        now, got = time.monotonic(), total(nxt)
        samples.append((now, feed.produced, got))
        if first is None and got > 0:
            first = now
        if first is not None and now - first > 5 and feed.produced - (before + got) < rate / 2:
            break  # near the head (re-read messages can only make the gap look smaller)
        if now > deadline:
            raise SystemExit("bench/ops: the next execution did not catch up")
        if any(p.popen.poll() is not None for p in nxt):
            codes = [p.popen.poll() for p in nxt]
            raise SystemExit(f"bench/ops: a process of the next execution exited: {codes}")
        time.sleep(SCRAPE_S)
    produced = feed.stop()
    last, since = -1.0, time.monotonic()
    while time.monotonic() - since < 3:  # counters still for 3 s: everything read
        got = total(nxt)
        if got != last:
            last, since = got, time.monotonic()
        time.sleep(0.1)
    reread = before + last - produced
    # caught up: the first moment the unread backlog (gap minus the re-read) was under 0.5 s of feed
    caught = next(t for t, p, n in samples if first and t >= first and p - (before + n) + reread < rate / 2)
    assert first is not None
    return {"resume_s": first - t_stop, "caught_up_s": caught - t_stop, "reread": reread}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rate", type=int, default=2000, help="messages per second fed")
    ap.add_argument("--snapshot-s", type=float, default=2.0, help="-s: snapshot interval (epoch)")
    ap.add_argument("--settle-s", type=float, default=8.0, help="steady running before each outage")
    ap.add_argument("--stale-s", type=float, default=15.0, help="HEALTH_STALE_S of the job")
    args = ap.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tag = uuid.uuid4().hex[:8]
    topics = {"metrics": 4, "alerts": 4, "dlq": 1, "adlq": 1}
    names = {k: f"bench.ops.{k}.{tag}" for k in topics}
    for k, n in topics.items():
        admin.create_topics([NewTopic(names[k], num_partitions=n, replication_factor=1)])[names[k]].result(30)
    work = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    recovery = work / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "12"], check=True, cwd=ROOT)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "METRIC_TOPICS": names["metrics"],
        "ALERTS_TOPIC": names["alerts"],
        "DLQ_TOPIC": names["dlq"],
        "ALERTS_DLQ_TOPIC": names["adlq"],
        "CONTROL_TOPIC": "off",
        "NOTIFY_DELIVERY": "separate",
        "RULES_PATH": str(rules_file(work / "rules.yml")),
        "ALERT_SHARDS": "64",
        # liveness (/healthz) after --stale-s without a batch; it must exceed these deadlines
        "HEALTH_STALE_S": f"{args.stale_s:g}",
        "HEARTBEAT_INTERVAL_S": f"{args.stale_s / 3:g}",
        "NOTIFY_DEADLINE_S": f"{args.stale_s / 3:g}",
        "STORAGE_RETRY_DEADLINE_S": f"{args.stale_s / 3:g}",
    }
    job = Job(env, recovery, args.snapshot_s, work)
    two = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    feed = Feed(bootstrap, names["metrics"], args.rate, 0.0).start()
    try:
        t_cold = time.monotonic()
        procs = [job.start(i, two) for i in range(2)]
        wait(lambda: total(procs) > 0, 120, "first batch")
        cold_s = time.monotonic() - t_cold  # a first start: the floor of any restart's resume_s
        steady(procs, feed, args.rate, args.settle_s)

        # -- SIGKILL one of two; start again what ended, as the kubelet does
        before = total(procs)
        t_kill = time.monotonic()
        procs[1].popen.send_signal(signal.SIGKILL)
        nxt = [job.start(1, two)]  # waits for process 0 (Timely retries its connection every 1 s)
        survivor = procs[0]
        deadline = t_kill + 60
        while survivor.popen.poll() is None and time.monotonic() < deadline:
            survivor.scrape()
            time.sleep(SCRAPE_S)
        detect = time.monotonic() - t_kill if survivor.popen.poll() is not None else None
        if detect is None:
            raise SystemExit("bench/ops: the survivor kept running 60 s after its peer's SIGKILL")
        nxt.insert(0, job.start(0, two))
        before = procs[1].count + survivor.count
        fig = outage(feed, before, nxt, t_kill, args.rate)
        emit({
            "bench": "ops_sigkill_one_of_two", "rate_msg_s": args.rate, "snapshot_s": args.snapshot_s,
            "cold_start_s": round(cold_s, 2),
            "survivor_exit_code": survivor.popen.poll(), "survivor_exit_s": round(detect, 2),
            "resume_s": round(fig["resume_s"], 2), "caught_up_s": round(fig["caught_up_s"], 2),
            "reread_messages": int(fig["reread"]), "reread_s_of_feed": round(fig["reread"] / args.rate, 2),
        })  # fmt: skip

        # -- rescale 2 -> 3: stop both (SIGTERM, as Kubernetes does), start 3 on the same state
        feed = Feed(bootstrap, names["metrics"], args.rate, total(nxt)).start()
        steady(nxt, feed, args.rate, args.settle_s)
        total(nxt)  # counters just before the stop: the process has no SIGTERM handler, it ends at once
        t_stop = time.monotonic()
        for p in nxt:
            p.popen.send_signal(signal.SIGTERM)
        codes = [p.popen.wait(30) for p in nxt]
        stop_s = time.monotonic() - t_stop
        before = sum(p.count for p in nxt) - feed.base
        three = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        rescaled = [job.start(i, three) for i in range(3)]
        fig = outage(feed, before, rescaled, t_stop, args.rate)
        emit({
            "bench": "ops_rescale_2_to_3", "rate_msg_s": args.rate, "snapshot_s": args.snapshot_s,
            "stop_s": round(stop_s, 2), "stop_exit_codes": codes,
            "resume_s": round(fig["resume_s"], 2), "caught_up_s": round(fig["caught_up_s"], 2),
            "reread_messages": int(fig["reread"]), "reread_s_of_feed": round(fig["reread"] / args.rate, 2),
            "messages_per_process": [int(p.count) for p in rescaled],
        })  # fmt: skip

        # -- a frozen peer (SIGSTOP: a hung process or a partitioned node, its sockets stay open)
        feed = Feed(bootstrap, names["metrics"], args.rate, total(rescaled)).start()
        steady(rescaled, feed, args.rate, args.settle_s)
        frozen, others = rescaled[2], rescaled[:2]
        t_freeze = time.monotonic()
        frozen.popen.send_signal(signal.SIGSTOP)
        last, moved = total(others), t_freeze
        unhealthy: float | None = None
        while unhealthy is None and time.monotonic() - t_freeze < args.stale_s + 60:
            now = total(others)
            if now != last:
                last, moved = now, time.monotonic()
            if not all(healthy(p.port) for p in others):
                unhealthy = time.monotonic() - t_freeze
            time.sleep(0.1)
        alive = all(p.popen.poll() is None for p in others)
        frozen.popen.send_signal(signal.SIGKILL)  # what the kubelet does once liveness fails
        frozen.popen.wait(10)
        emit({
            "bench": "ops_frozen_one_of_three", "rate_msg_s": args.rate, "health_stale_s": args.stale_s,
            "others_stalled_after_s": round(max(0.0, moved - t_freeze), 2), "others_kept_running": alive,
            "others_unhealthy_s": round(unhealthy, 2) if unhealthy is not None else None,
        })  # fmt: skip
    finally:
        if not feed.stopped:
            feed.stop()
        job.kill_all()
        admin.delete_topics(list(names.values()))
        print(f"bench/ops: logs in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
