"""rules/routing/route.py: Alertmanager's route matching, inheritance, route ids and group keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.routing.config import load_routing, load_routing_file
from rules.routing.route import group_key, match, muted

FIXTURE = Path(__file__).parents[3] / "routing" / "alertmanager.yml"
CFG = load_routing_file(FIXTURE)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # nothing matches a child: the root itself
        ({"alertname": "A", "severity": "info"}, [("{}", "default")]),
        # critical in production: pager (continue) then slack-prod
        (
            {"alertname": "A", "severity": "critical", "environment": "production"},
            [
                ('{}/{severity="critical"}/0', "pager"),
                ('{}/{environment="production",severity=~"critical|warning"}/1', "slack-prod"),
            ],
        ),
        # nested: postgres warnings in production go to the DBA's mail, not to slack-prod
        (
            {
                "alertname": "A",
                "severity": "warning",
                "environment": "production",
                "database_type": "postgresql",
            },
            [
                (
                    '{}/{environment="production",severity=~"critical|warning"}/1/{database_type="postgresql"}/0',
                    "dba-email",
                )
            ],
        ),
        # match_re is anchored: "staging-x" is not staging|dev
        ({"alertname": "A", "environment": "staging-x"}, [("{}", "default")]),
        ({"alertname": "A", "environment": "dev"}, [('{}/{environment=~"staging|dev"}/2', "webhook")]),
    ],
)
def test_match(labels: dict[str, str], expected: list[tuple[str, str]]) -> None:
    assert [(m.route_id, m.receiver) for m in match(CFG.route, labels)] == expected


def test_children_inherit_and_override() -> None:
    critical = {
        "alertname": "A",
        "severity": "critical",
        "environment": "production",
        "database_type": "postgresql",
    }
    pager, dba = match(CFG.route, critical)
    assert (pager.group_by, pager.group_wait, pager.group_interval, pager.repeat_interval) == (
        ("alertname",),
        10.0,
        300.0,
        14400.0,
    )
    assert dba.receiver == "dba-email" and dba.group_by is None and dba.group_wait == 30.0  # `...` inherited
    assert dba.active_time_intervals == ("office-hours",)
    root = match(CFG.route, {"x": "y"})[0]
    assert root.mute_time_intervals == () and root.timers.group_wait == 30.0


def test_defaults_without_timers() -> None:
    (m,) = match(load_routing("route: {receiver: r}\nreceivers: [{name: r}]").route, {})
    assert (m.group_by, m.group_wait, m.group_interval, m.repeat_interval) == ((), 30.0, 300.0, 14400.0)
    assert group_key(m, {"a": "b"}) == ("{}:{}", ())  # no group_by: one group per route


def test_continue_false_stops_at_first_match_even_if_later_ones_match() -> None:
    cfg = load_routing(
        "route:\n  receiver: r\n  routes:\n    - {matchers: [a=1], receiver: x}\n"
        "    - {matchers: [a=~.+], receiver: y}\n"
        "receivers: [{name: r}, {name: x}, {name: y}]"
    )
    assert [m.receiver for m in match(cfg.route, {"a": "1"})] == ["x"]
    assert [m.receiver for m in match(cfg.route, {"a": "2"})] == ["y"]


def test_group_key() -> None:
    (m,) = match(CFG.route, {"alertname": "HighCPU", "instance_id": "db-1"})
    assert group_key(m, {"alertname": "HighCPU", "instance_id": "db-1"}) == (
        '{}:{alertname="HighCPU"}',
        (("alertname", "HighCPU"),),
    )
    labels = {"alertname": "A", "severity": "warning", "environment": "production", "instance_id": "db-1"}
    (all_labels,) = match(CFG.route, labels)
    key, group = group_key(all_labels, labels)  # `...`: every label
    assert group == tuple(sorted(labels.items()))
    assert key.endswith(':{alertname="A", environment="production", instance_id="db-1", severity="warning"}')
    # a group_by label the alert lacks is left out, not grouped as ""
    assert group_key(m, {"instance_id": "db-1"}) == ("{}:{}", ())


def test_route_ids_do_not_depend_on_matcher_order_in_the_file() -> None:
    a = load_routing("route:\n  receiver: r\n  routes: [{matchers: [b=2, a=1]}]\nreceivers: [{name: r}]")
    b = load_routing(
        "route:\n  receiver: r\n  routes: [{matchers: ['a=\"1\"', b=2]}]\nreceivers: [{name: r}]"
    )
    labels = {"a": "1", "b": "2"}
    assert match(a.route, labels)[0].route_id == match(b.route, labels)[0].route_id == '{}/{a="1",b="2"}/0'


def test_muted_by_time_intervals() -> None:
    labels = {"severity": "warning", "environment": "production", "database_type": "postgresql"}
    (dba,) = match(CFG.route, labels)
    wednesday_11_berlin, wednesday_20_berlin = 1736935200.0, 1736967600.0
    assert not muted(dba, CFG.time_intervals, wednesday_11_berlin)
    assert muted(dba, CFG.time_intervals, wednesday_20_berlin)  # outside its active interval
    (staging,) = match(CFG.route, {"environment": "staging"})
    assert muted(staging, CFG.time_intervals, wednesday_11_berlin + 3 * 86400)  # Saturday: weekends
    assert not muted(staging, CFG.time_intervals, wednesday_11_berlin)
