"""The rule watcher (connectors/control/watch.py): content versions, one load per process,
refusals with every problem located, SIGHUP."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connectors.control import watch
from connectors.control.watch import RuleLoader, RulesUpdate, RuleWatch, content_version
from connectors.ops.heartbeat import EPOCH_TICK_S
from connectors.ops.metrics import Metrics
from rules.control.events import RuleSetEvent
from rules.loader import load_rules
from rules.promql.group import threshold_of

RULES = """
settings: {evaluation_interval: 1m, allowed_lateness: 30s}
alert_rules:
  - name: HotCPU
    metric: cpu
    condition: {operator: ">", threshold: 80, duration: 0s, aggregation: last}
    window: 1m
    severity: warning
"""


def configmap(root: Path, text: str, gen: int) -> Path:
    """A Kubernetes ConfigMap volume: files are symlinks into `..data`, itself a symlink swapped
    atomically to a new timestamped directory on every update."""
    data = root / f"..2025_{gen}"
    data.mkdir()
    (data / "rules.yml").write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(data.name)
    tmp.replace(root / "..data")
    link = root / "rules.yml"
    if not link.is_symlink():
        link.symlink_to("..data/rules.yml")
    return root


def test_the_version_follows_contents_not_times(tmp_path: Path) -> None:
    f = tmp_path / "rules.yml"
    f.write_text(RULES)
    v1, files = content_version([tmp_path])
    assert files == (str(f),)
    os.utime(f, (time.time() + 100, time.time() + 100))
    assert content_version([tmp_path])[0] == v1  # touched: same rules
    f.write_text(RULES.replace("80", "85"))
    os.utime(f, (0, 0))  # an older mtime than before: still a change
    assert content_version([tmp_path])[0] != v1


def test_a_configmap_symlink_swap_is_a_new_version(tmp_path: Path) -> None:
    root = configmap(tmp_path, RULES, 1)
    v1, _ = content_version([root])
    configmap(root, RULES.replace("80", "90"), 2)
    v2, _ = content_version([root])
    assert v2 != v1
    assert load_rules([root]).rules[0].threshold == 90


def loader(tmp_path: Path, **kw) -> tuple[RuleLoader, list[RuleSetEvent], Metrics]:
    published: list[RuleSetEvent] = []
    metrics = Metrics(CollectorRegistry())
    base = load_rules([tmp_path])
    ld = RuleLoader([tmp_path], base, host="pod-0", publish=published.append, metrics=metrics, **kw)
    return ld, published, metrics


def count(metrics: Metrics, outcome: str) -> float:
    return (
        metrics.registry.get_sample_value("gds_rule_reloads_total", {"flow": "alerting", "outcome": outcome})
        or 0
    )


def drain(ld: RuleLoader) -> None:
    if ld._pool is not None:
        ld._pool.shutdown(wait=True)
        ld._pool = None


def test_two_workers_noticing_one_change_load_and_report_it_once(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    ld, published, metrics = loader(tmp_path)
    start, _ = content_version([tmp_path])
    source = RuleWatch(ld, start, interval_s=0.01)
    parts = [source.build("rules-watch", i, 2) for i in range(2)]
    time.sleep(0.02)
    assert [p.next_batch() for p in parts] == [[], []]  # the start-up set: nothing to do
    (tmp_path / "rules.yml").write_text(RULES.replace("80", "85"))
    time.sleep(0.02)
    got = [p.next_batch() for p in parts]
    drain(ld)
    (a,), (b,) = got
    assert isinstance(a, RulesUpdate) and a == b  # one load, the same version and load time
    assert a.ruleset.rules[0].threshold == 85 and a.version == content_version([tmp_path])[0]
    assert [(e.status, e.version, e.rules, e.job, e.host) for e in published] == [
        ("loaded", a.version, 1, "alerting", "pod-0")
    ]
    assert count(metrics, "loaded") == 1
    time.sleep(0.02)
    assert [p.next_batch() for p in parts] == [[], []]  # nothing new


def test_a_broken_set_is_refused_with_every_problem_located(tmp_path: Path, caplog) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    ld, published, metrics = loader(tmp_path)
    broken = RULES.replace('operator: ">"', 'operator: "~"').replace("severity: warning", "severity: [1]")
    (tmp_path / "rules.yml").write_text(broken)
    version, files = content_version([tmp_path])
    with caplog.at_level(logging.ERROR, logger="connectors.control.watch"):
        result = ld.attempt(version, files)
    drain(ld)
    assert result is not None and result.ruleset is None and len(result.problems) == 2
    where = f"{tmp_path / 'rules.yml'}:"
    assert all(p.startswith(where) and p[len(where)].isdigit() for p in result.problems)  # file:line
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "refused" in errors[0] and all(any(p in m for m in errors) for p in result.problems)
    assert [(e.status, e.problems) for e in published] == [("refused", result.problems)]
    assert count(metrics, "refused") == 1
    assert ld.attempt(version, files) is result  # the other workers: no second report
    assert count(metrics, "refused") == 1


def test_a_settings_change_is_refused_restart_to_apply(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    ld, _, _ = loader(tmp_path)
    (tmp_path / "rules.yml").write_text(RULES.replace("evaluation_interval: 1m", "evaluation_interval: 2m"))
    result = ld.attempt(*content_version([tmp_path]))
    drain(ld)
    assert result is not None and result.ruleset is None
    (problem,) = result.problems
    assert problem.startswith(f"{tmp_path / 'rules.yml'}:2:")
    assert "evaluation_interval" in problem and "restart to apply" in problem


PROM = """\
groups:
  - name: db
    rules:
      - alert: HotCPU
        expr: cpu > 80
"""


def test_prometheus_files_are_part_of_the_set_and_their_problems_refuse_it(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prom.yml").write_text(PROM)
    ld, _, _ = loader(tmp_path)
    (tmp_path / "prom.yml").write_text(PROM.replace("80", "90"))
    ok = ld.attempt(*content_version([tmp_path]))
    assert ok is not None and ok.ruleset is not None
    assert [(g.name, len(g.rules)) for g in ok.groups] == [("db", 1)]
    assert threshold_of(ok.groups[0].rules[0].expr) == 90  # the edited file, loaded
    (tmp_path / "prom.yml").write_text(PROM.replace("cpu > 80", "cpu offset 5m > 80"))
    bad = ld.attempt(*content_version([tmp_path]))
    drain(ld)
    assert bad is not None and bad.ruleset is None and bad.groups == ()
    (problem,) = bad.problems
    assert problem.startswith(f"{tmp_path / 'prom.yml'}:5:") and "offset" in problem  # located, named


def test_groups_appearing_in_a_job_started_without_any_are_refused_restart_to_apply(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    base = load_rules([tmp_path])
    ld = RuleLoader([tmp_path], base, host="pod-0", prometheus=False, metrics=Metrics(CollectorRegistry()))
    (tmp_path / "prom.yml").write_text(PROM)
    result = ld.attempt(*content_version([tmp_path]))
    assert result is not None and result.ruleset is None
    (problem,) = result.problems
    assert problem.startswith(str(tmp_path / "prom.yml")) and "restart to apply" in problem


def test_a_reverted_version_is_loaded_again_and_wins(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    clock = iter(range(100, 200))
    ld, published, _ = loader(tmp_path, clock=lambda: float(next(clock)))
    first = ld.attempt(*content_version([tmp_path]))
    (tmp_path / "rules.yml").write_text(RULES.replace("80", "85"))
    ld.attempt(*content_version([tmp_path]))
    (tmp_path / "rules.yml").write_text(RULES)
    back = ld.attempt(*content_version([tmp_path]))
    drain(ld)
    assert first is not None and back is not None
    assert back.version == first.version and back.at > first.at
    assert len(published) == 3


def test_sighup_makes_every_partition_look_now(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    ld, _, _ = loader(tmp_path)
    part = RuleWatch(ld, content_version([tmp_path])[0], interval_s=0).build("w", 0, 1)  # SIGHUP only
    (tmp_path / "rules.yml").write_text(RULES.replace("80", "85"))
    assert part.next_batch() == []
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert watch.install_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.time() + 5
        while watch.sighups() == 0 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGHUP, previous)
    (update,) = part.next_batch()
    drain(ld)
    assert update.ruleset.rules[0].threshold == 85


@pytest.mark.parametrize("interval", [0.0, 30.0])
def test_partitions_wake_often_enough_for_sighup_and_epochs(tmp_path: Path, interval: float) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    ld, _, _ = loader(tmp_path)
    part = RuleWatch(ld, "", interval_s=interval).build("w", 0, 1)
    awake = part.next_awake()
    assert awake is not None
    from datetime import UTC, datetime

    assert (awake - datetime.now(UTC)).total_seconds() <= watch.SIGHUP_CHECK_S
    # and often enough not to hold the metrics input at an epoch boundary
    assert (awake - datetime.now(UTC)).total_seconds() <= EPOCH_TICK_S
