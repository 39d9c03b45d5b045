"""Our routing loader and Debian's `amtool check-config` (Alertmanager 0.25) agree on what is valid.

The fixture tests/routing/alertmanager.yml passes both; configs amtool rejects are rejected by
rules/routing/config.py too. amtool comes from deploy/local/alertmanager.sh install (the
prometheus-alertmanager package).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rules.routing.config import RoutingConfigError, load_routing, load_routing_file

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "routing" / "alertmanager.yml"


@pytest.fixture(scope="module")
def amtool() -> str:
    if shutil.which("amtool") is None:
        subprocess.run([str(ROOT / "deploy" / "local" / "alertmanager.sh"), "install"], check=True)
    path = shutil.which("amtool")
    assert path, "amtool missing after deploy/local/alertmanager.sh install"
    return path


def amtool_accepts(amtool: str, path: Path) -> tuple[bool, str]:
    r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    return r.returncode == 0, r.stdout + r.stderr


def test_fixture_is_valid_for_amtool_and_for_us(amtool: str) -> None:
    ok, out = amtool_accepts(amtool, FIXTURE)
    assert ok, out
    cfg = load_routing_file(FIXTURE)
    assert set(cfg.receivers) == {"default", "pager", "slack-prod", "dba-email", "webhook"}


REJECTED = {
    "undefined receiver": "route: {receiver: nope}\nreceivers: [{name: r}]\n",
    "duplicate receiver": "route: {receiver: r}\nreceivers: [{name: r}, {name: r}]\n",
    "bad regex matcher": "route:\n  receiver: r\n  routes: [{matchers: ['a=~\"(x\"']}]\n"
    "receivers: [{name: r}]\n",
    "bad duration": "route: {receiver: r, group_wait: 5x}\nreceivers: [{name: r}]\n",
    "fractional duration": "route: {receiver: r, group_wait: 1.5s}\nreceivers: [{name: r}]\n",
    "root without receiver": "route: {group_by: [a]}\nreceivers: [{name: r}]\n",
    "unknown key": "route: {receiver: r, recevier: x}\nreceivers: [{name: r}]\n",
    "root matchers": "route: {receiver: r, matchers: ['a=b']}\nreceivers: [{name: r}]\n",
    "wildcard with labels": "route: {receiver: r, group_by: ['...', a]}\nreceivers: [{name: r}]\n",
    "slack without url": "route: {receiver: r}\nreceivers: [{name: r, slack_configs: [{channel: x}]}]\n",
    "email without smarthost": "route: {receiver: r}\nreceivers: [{name: r, email_configs: [{to: a@b}]}]\n",
    "pagerduty without key": "route: {receiver: r}\nreceivers: [{name: r, pagerduty_configs: [{}]}]\n",
    "undefined time interval": "route:\n  receiver: r\n  routes: [{mute_time_intervals: [x]}]\n"
    "receivers: [{name: r}]\n",
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_what_amtool_rejects_we_reject(amtool: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(REJECTED[name])
    ok, out = amtool_accepts(amtool, path)
    assert not ok, f"amtool accepted {name}: {out}"
    with pytest.raises(RoutingConfigError):
        load_routing(REJECTED[name], source=str(path))
