"""`python -m connectors.api` refuses bad settings at start: exit 2, every problem, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_bad_settings_exit_2_listing_every_problem_without_the_secrets(tmp_path: Path) -> None:
    secret = "s" * 30
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG_", "KAFKA_", "API_", "CONTROL_"))},
        "API_TOKENS": f"ops:admin:{secret},viewer:read:short",
        "API_TOKENS_FILE": str(tmp_path / "missing"),
        "API_PORT": "99999",
    }
    r = subprocess.run(
        [sys.executable, "-m", "connectors.api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "API_PORT" in r.stderr and "entry 1 (ops)" in r.stderr  # the tokens are checked all the same
    env["API_PORT"] = "9093"
    r = subprocess.run(
        [sys.executable, "-m", "connectors.api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    for expected in (
        "PG_DSN",
        "KAFKA_BOOTSTRAP_SERVERS",
        "API_TOKENS_FILE",
        "entry 1 (ops)",
        "entry 2 (viewer)",
    ):
        assert expected in r.stderr, expected
    assert secret not in r.stderr and "short" not in r.stderr
