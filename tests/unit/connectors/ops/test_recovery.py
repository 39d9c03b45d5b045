"""Recovery on by default: the re-execution a tailing Kafka job does when started without `-r`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from connectors.config import Settings
from connectors.ops.recovery import ensure_recovery, given_directory

RUN = "/venv/lib/python3.11/site-packages/bytewax/run.py"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "RECOVERY_DIR": str(tmp_path), **env})


def test_a_tailing_job_without_flags_reexecutes_with_its_default_directory(tmp_path: Path) -> None:
    calls: list[Any] = []
    got = ensure_recovery(
        "alerting", settings(tmp_path), argv=[RUN, "flows.alerting", "-w1"], env={},
        execv=lambda exe, args: calls.append(args),
    )  # fmt: skip
    assert got == tmp_path / "alerting"
    assert (tmp_path / "alerting" / "part-0.sqlite3").exists()
    [args] = calls
    assert args == [sys.executable, "-m", "bytewax.run", "flows.alerting", "-w1",
                    "-r", str(tmp_path / "alerting"), "-s", "10", "-b", "0"]  # fmt: skip


def test_explicit_flags_off_switch_and_replays_are_left_alone(tmp_path: Path) -> None:
    def never(exe: str, args: list[str]) -> None:
        raise AssertionError(args)

    mine = tmp_path / "mine"
    argv = [RUN, "flows.alerting", "-r", str(mine), "-s", "5", "-b", "0"]
    assert ensure_recovery("alerting", settings(tmp_path), argv=argv, env={}, execv=never) == mine
    assert (mine / "part-0.sqlite3").exists()  # initialised when empty, as the README says
    off = settings(tmp_path, RECOVERY_DIR="off")
    assert ensure_recovery("alerting", off, argv=[RUN, "flows.alerting"], env={}, execv=never) is None
    bounded = settings(tmp_path, KAFKA_TAIL="false")
    assert ensure_recovery("alerting", bounded, argv=[RUN, "flows.alerting"], env={}, execv=never) is None
    assert given_directory(["x"], {"BYTEWAX_RECOVERY_DIRECTORY": "/r"}) == Path("/r")
