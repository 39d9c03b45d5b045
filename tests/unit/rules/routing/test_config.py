"""rules/routing/config.py: alertmanager.yml loads into the typed model; every problem listed, located."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.routing.config import (
    EmailConfig,
    RateLimit,
    RoutingConfigError,
    load_routing,
    load_routing_file,
    matcher_string,
    parse_matchers,
)

FIXTURE = Path(__file__).parents[3] / "routing" / "alertmanager.yml"


def problems(text: str) -> list[str]:
    with pytest.raises(RoutingConfigError) as exc:
        load_routing(text, source="am.yml")
    return [str(p) for p in exc.value.problems]


def test_fixture_loads_with_globals_as_defaults() -> None:
    cfg = load_routing_file(FIXTURE)
    assert list(cfg.receivers) == ["default", "pager", "slack-prod", "dba-email", "webhook"]
    email = cfg.receivers["dba-email"].email_configs[0]
    assert email == EmailConfig(
        to="dba@example.com",
        from_="alerts@example.com",
        smarthost="127.0.0.1:2525",
        require_tls=False,
        headers={"Subject": "DB alert"},
    )
    assert cfg.receivers["slack-prod"].slack_configs[0].api_url.startswith("https://hooks.slack.com/")
    assert cfg.receivers["pager"].pagerduty_configs[0].url == "https://events.pagerduty.com/v2/enqueue"
    assert cfg.route.routes[0].continue_ and cfg.route.routes[1].group_by == ("...",)
    assert cfg.route.routes[1].routes[0].active_time_intervals == ("office-hours",)
    assert any("templates" in n for n in cfg.notes) and any("inhibit_rules" in n for n in cfg.notes)
    assert cfg.global_.resolve_timeout == 300.0


@pytest.mark.parametrize(
    ("text", "matchers"),
    [
        ('a="b"', ['a="b"']),
        ("a=b", ['a="b"']),
        ('c=~"x.*"', ['c=~"x.*"']),
        ('{a!=b, c!~"y|z"}', ['a!="b"', 'c!~"y|z"']),
        (r'a="quo\"te"', [r'a="quo\"te"']),
        ('a=""', ['a=""']),
    ],
)
def test_matcher_syntax(text: str, matchers: list[str]) -> None:
    assert [matcher_string(m) for m in parse_matchers(text)] == matchers


def test_old_match_and_match_re_forms() -> None:
    cfg = load_routing(
        "route:\n  receiver: r\n  routes:\n    - match: {env: prod}\n      match_re: {svc: 'db-.*'}\n"
        "receivers: [{name: r}]\n"
    )
    assert [matcher_string(m) for m in cfg.route.routes[0].matchers] == ['env="prod"', 'svc=~"db-.*"']


BAD_CASES = [
    # (what, yaml, expected substring, line:col)
    (
        "unknown receiver",
        "route: {receiver: nope}\nreceivers: [{name: r}]",
        "undefined receiver 'nope'",
        ":1:9",
    ),
    (
        "duplicate receiver",
        "route: {receiver: r}\nreceivers:\n  - name: r\n  - name: r",
        "'r' is not unique",
        ":4:5",
    ),
    (
        "bad matcher",
        "route:\n  receiver: r\n  routes:\n    - matchers: ['a=~\"(x\"']\nreceivers: [{name: r}]",
        "bad regular expression",
        ":4:18",
    ),
    (
        "bad duration",
        "route: {receiver: r, group_wait: 5x}\nreceivers: [{name: r}]",
        "not a valid duration: '5x'",
        ":1:22",
    ),
    (
        "fractional duration (amtool refuses it)",
        "route: {receiver: r, group_wait: 1.5s}\nreceivers: [{name: r}]",
        "not a valid duration",
        ":1:22",
    ),
    (
        "root without receiver",
        "route: {group_by: [a]}\nreceivers: [{name: r}]",
        "root route must specify",
        ":1:8",
    ),
    ("no route", "receivers: [{name: r}]", "no route", ""),
    (
        "unknown route key",
        "route: {receiver: r, recevier: x}\nreceivers: [{name: r}]",
        "unknown key 'recevier'",
        ":1:22",
    ),
    (
        "unknown receiver key",
        "route: {receiver: r}\nreceivers: [{name: r, webhook: x}]",
        "unknown key 'webhook'",
        "",
    ),
    (
        "root matchers",
        "route: {receiver: r, matchers: ['a=b']}\nreceivers: [{name: r}]",
        "must not have any matchers",
        "",
    ),
    (
        "root continue",
        "route: {receiver: r, continue: true}\nreceivers: [{name: r}]",
        "continue in root route",
        "",
    ),
    (
        "wildcard and labels",
        "route: {receiver: r, group_by: ['...', a]}\nreceivers: [{name: r}]",
        "wildcard group_by",
        "",
    ),
    (
        "zero group_interval",
        "route: {receiver: r, group_interval: 0s}\nreceivers: [{name: r}]",
        "cannot be zero",
        "",
    ),
    (
        "bad label in match",
        "route:\n  receiver: r\n  routes: [{match: {a-b: x}}]\nreceivers: [{name: r}]",
        "invalid label name 'a-b'",
        "",
    ),
    (
        "slack without url",
        "route: {receiver: r}\nreceivers: [{name: r, slack_configs: [{channel: x}]}]",
        "no Slack API URL",
        "",
    ),
    (
        "email without smarthost",
        "route: {receiver: r}\nreceivers: [{name: r, email_configs: [{to: a@b}]}]",
        "no SMTP smarthost",
        "",
    ),
    (
        "pagerduty without key",
        "route: {receiver: r}\nreceivers: [{name: r, pagerduty_configs: [{severity: x}]}]",
        "missing service or routing key",
        "",
    ),
    (
        "unsupported kind",
        "route: {receiver: r}\nreceivers: [{name: r, opsgenie_configs: [{}]}]",
        "not supported",
        "",
    ),
    (
        "undefined time interval",
        "route:\n  receiver: r\n  routes: [{mute_time_intervals: [x]}]\nreceivers: [{name: r}]",
        "undefined time interval 'x'",
        "",
    ),
    (
        "fallback unknown",
        "route: {receiver: r}\nreceivers: [{name: r, fallback: zz}]",
        "fallback receiver 'zz'",
        "",
    ),
    (
        "fallback loop",
        "route: {receiver: a}\nreceivers:\n  - {name: a, fallback: b}\n  - {name: b, fallback: a}",
        "fallback loop: a -> b -> a",
        ":3:15",
    ),
    (
        "bad rate limit",
        "route: {receiver: r}\nreceivers: [{name: r, rate_limit: lots}]",
        "bad rate limit",
        "",
    ),
    (
        "bad time interval",
        "route: {receiver: r}\nreceivers: [{name: r}]\ntime_intervals:\n"
        "  - {name: t, time_intervals: [{weekdays: [funday]}]}",
        "bad weekdays entry 'funday'",
        "",
    ),
]


@pytest.mark.parametrize(("what", "text", "expected", "at"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_each_problem_is_reported_and_located(what: str, text: str, expected: str, at: str) -> None:
    found = problems(text)
    hit = [p for p in found if expected in p]
    assert hit, f"{what}: {expected!r} not in {found}"
    assert hit[0].startswith(f"am.yml{at}"), hit[0]


def test_every_problem_listed_at_once() -> None:
    found = problems(
        "route:\n  receiver: nope\n  group_wait: soon\n  routes:\n    - matchers: ['=x']\n"
        "receivers:\n  - name: r\n  - name: r\n"
    )
    assert len(found) == 4, found
    assert [p.split(":")[1] for p in found] == ["2", "3", "5", "8"]  # sorted by line


def test_fallback_chain_without_loop_and_extensions() -> None:
    cfg = load_routing(
        "route: {receiver: ns}\nreceivers:\n"
        "  - name: ns\n    notification_service_configs: [{url: 'http://ns:8080'}]\n    fallback: mail\n"
        "    retry: {max_attempts: 5, initial_backoff: 1s, max_backoff: 30s, deadline: 10m}\n"
        "    max_in_flight: 4\n    rate_limit: 10/1m\n"
        "  - name: mail\n    email_configs: [{to: a@b, from: c@d, smarthost: 'h:25'}]\n    fallback: am\n"
        "  - name: am\n    alertmanager_configs: [{url: 'http://am:9093'}]\n"
    )
    ns = cfg.receivers["ns"]
    assert ns.fallback == "mail" and ns.max_in_flight == 4 and ns.rate_limit == RateLimit(10, 60.0)
    assert ns.retry.max_attempts == 5 and ns.retry.deadline == 600.0
    assert ns.send_resolved and not cfg.receivers["mail"].send_resolved
    assert load_routing(
        "route: {receiver: r}\nreceivers: [{name: r, rate_limit: {count: 3, per: 10s}}]"
    ).receivers["r"].rate_limit == RateLimit(3, 10.0)


def test_time_intervals() -> None:
    cfg = load_routing_file(FIXTURE)
    office = cfg.time_intervals["office-hours"]
    # 2025-01-15 is a Wednesday; Berlin is UTC+1 in January
    assert office.contains(1736935200.0)  # 10:00 UTC = 11:00 Berlin
    assert not office.contains(1736967600.0)  # 19:00 UTC = 20:00 Berlin
    assert not office.contains(1736935200.0 + 3 * 86400)  # Saturday
    assert cfg.time_intervals["weekends"].contains(1736935200.0 + 3 * 86400)


def test_invalid_yaml_is_located() -> None:
    found = problems("route: {receiver: r\nreceivers: [")
    assert len(found) == 1 and "not valid YAML" in found[0] and found[0].startswith("am.yml:")


# -- escalation (ours: escalate_after + escalate_to on a route) --------------------------------

ESCALATION = """\
route:
  receiver: team
  escalate_after: 15m
  escalate_to: pager
  routes:
    - matchers: ['severity="warning"']
    - matchers: ['severity="critical"']
      escalate_after: 2m
      escalate_to: manager
receivers: [{name: team}, {name: pager}, {name: manager}]
"""


def test_escalation_is_read_and_inherited_as_a_pair() -> None:
    from rules.routing.escalation import Escalation
    from rules.routing.route import match

    cfg = load_routing(ESCALATION)
    assert (cfg.route.escalate_after, cfg.route.escalate_to) == (900.0, "pager")
    assert match(cfg.route, {"severity": "warning"})[0].escalation == Escalation(900.0, "pager")
    assert match(cfg.route, {"severity": "critical"})[0].escalation == Escalation(120.0, "manager")
    plain = load_routing("route: {receiver: r}\nreceivers: [{name: r}]")
    assert match(plain.route, {})[0].escalation is None


ESCALATION_BAD = [
    (
        "escalate_to undefined",
        "route:\n  receiver: r\n  routes:\n    - escalate_after: 5m\n      escalate_to: nobody\n"
        "receivers: [{name: r}]",
        "undefined receiver 'nobody' in escalate_to",
        ":5:7",
    ),
    (
        "escalate_after alone",
        "route:\n  receiver: r\n  escalate_after: 5m\nreceivers: [{name: r}]",
        "escalate_after needs escalate_to",
        ":3:3",
    ),
    (
        "escalate_to alone",
        "route:\n  receiver: r\n  escalate_to: r\nreceivers: [{name: r}]",
        "escalate_to needs escalate_after",
        ":3:3",
    ),
    (
        "escalate_after zero",
        "route:\n  receiver: r\n  escalate_after: 0s\n  escalate_to: r\nreceivers: [{name: r}]",
        "escalate_after must be a positive duration",
        ":3:3",
    ),
    (
        "escalate_after not a duration",
        "route:\n  receiver: r\n  escalate_after: soon\n  escalate_to: r\nreceivers: [{name: r}]",
        "not a valid duration: 'soon'",
        ":3:3",
    ),
]


@pytest.mark.parametrize(
    ("what", "text", "expected", "at"), ESCALATION_BAD, ids=[c[0] for c in ESCALATION_BAD]
)
def test_escalation_problems_are_located(what: str, text: str, expected: str, at: str) -> None:
    found = problems(text)
    hit = [p for p in found if expected in p]
    assert hit, f"{what}: {expected!r} not in {found}"
    assert hit[0].startswith(f"am.yml{at}"), hit[0]


def test_the_escalation_docs_example_loads() -> None:
    from rules.routing.escalation import Escalation
    from rules.routing.route import match

    doc = (Path(__file__).parents[4] / "docs" / "escalation.md").read_text()
    cfg = load_routing(doc.split("```yaml\n", 1)[1].split("```", 1)[0], "docs/escalation.md")
    assert match(cfg.route, {"severity": "critical"})[0].escalation == Escalation(900.0, "on-call")
