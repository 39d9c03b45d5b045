"""`python -m bytewax.run flows.alerting` as a newcomer runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_job(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "NOTIFY_URL")}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.alerting"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_embedded_default_replays_the_sample_and_exits() -> None:
    r = run_job({})
    assert r.returncode == 0, r.stderr
    notify = [line for line in r.stdout.splitlines() if line.startswith("NOTIFY")]
    assert len(notify) == 2
    assert notify[0].startswith("NOTIFY [FIRING:warning]") and "prod-db-01" in notify[0]
    assert notify[1].startswith("NOTIFY [RESOLVED]")


def test_bad_rules_stop_the_job_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "alert_rules:\n  - name: X\n    metric: cpu\n    condition: {operator: '=>', threshold: hi}\n"
    )
    r = run_job({"RULES_PATH": str(bad)})
    assert r.returncode == 2
    assert "rule 'X': operator" in r.stderr and "rule 'X': threshold" in r.stderr
    assert "NOTIFY" not in r.stdout


def test_bad_configuration_stops_the_job_with_every_problem() -> None:
    r = run_job({"NOTIFY_TIMEOUT_S": "-1", "INPUT_FORMAT": "xml"})
    assert r.returncode == 2
    assert "NOTIFY_TIMEOUT_S" in r.stderr and "INPUT_FORMAT" in r.stderr


def test_a_lateness_the_live_job_cannot_honour_is_refused(tmp_path: Path) -> None:
    import pytest

    from connectors.config import ConfigError, Settings
    from flows.alerting import from_settings

    rules = tmp_path / "tight.yml"
    rules.write_text(
        "settings: {allowed_lateness: 0s}\n"
        "alert_rules:\n  - {name: X, metric: cpu, condition: {operator: '>', threshold: 1}}\n"
    )
    live = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "RULES_PATH": str(rules)})
    with pytest.raises(ConfigError, match=r"allowed_lateness 0s cannot be honoured by a live job"):
        from_settings(live)  # refused before anything connects


def test_job_logging_leaves_out_a_line_per_http_request() -> None:
    import logging

    from flows.common import configure_logging

    configure_logging()
    # httpx's INFO line per notification filled a child's stderr pipe and stalled a 2-process run
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_make_run_shows_what_each_receiver_would_be_sent() -> None:
    r = run_job({"NOTIFY_ROUTES": str(ROOT / "flows/sample/routes.yml")})
    assert r.returncode == 0, r.stderr
    routed = [line for line in r.stdout.splitlines() if line.startswith("ROUTE")]
    assert routed == [
        "ROUTE dba-team [FIRING] {'alertname': 'HighCPUUsage', 'environment': 'production'}: 1 alert(s)",
        "ROUTE dba-team [RESOLVED] {'alertname': 'HighCPUUsage', 'environment': 'production'}: 1 alert(s)",
    ]


def test_a_bad_routing_file_stops_the_job_with_its_problems_located(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: team\n")
    r = run_job({"NOTIFY_ROUTES": str(bad)})
    assert r.returncode == 2
    assert "NOTIFY_ROUTES:" in r.stderr and "nobody" in r.stderr and f"{bad}:2:" in r.stderr
