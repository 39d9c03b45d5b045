"""Receiver bodies built from a GroupNotification (rules/routing/payloads.py).

Slack and PagerDuty bodies are checked by validators that encode the rules of their public API
documentation, and each validator is first run on the documentation's own example, so a
validator that is too strict (or too lax to matter) shows up here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from rules.model import AlertState, Severity
from rules.payload import notification_payload
from rules.routing import payloads
from rules.routing.types import GroupNotification
from tests.support.events import T0, alert_event, instance_labels


def _labels(instance: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((*instance_labels(instance), ("alertname", "HighCPUUsage"), ("severity", "critical")))
    )


def _alert(instance: str, *, resolved: bool = False, **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "fingerprint": f"fp-{instance}",
        "labels": _labels(instance),
        "message_id": f"msg-{instance}-{'r' if resolved else 'f'}",
        "annotations": (("summary", f"High CPU usage on {instance}"),),
    }
    if resolved:
        fields.update(state=AlertState.RESOLVED, resolved_at=T0 + 900, at=T0 + 900)
    fields.update(kw)
    return alert_event(**fields)


def group(*alerts: Any, receiver: str = "team") -> GroupNotification:
    return GroupNotification(
        receiver=receiver,
        group_key='{}:{alertname="HighCPUUsage"}',
        group_labels=(("alertname", "HighCPUUsage"),),
        alerts=tuple(alerts),
        at=T0 + 1000,
    )


@pytest.fixture()
def mixed() -> GroupNotification:
    # given out of label order on purpose: bodies list alerts sorted by labels
    return group(_alert("prod-db-03", resolved=True), _alert("prod-db-02"), _alert("prod-db-01"))


# -- webhook ---------------------------------------------------------------------------------------


def test_webhook_has_alertmanagers_fields_and_version_4(mixed: GroupNotification) -> None:
    body = payloads.webhook_payload(mixed, external_url="http://am.example:9093")
    assert set(body) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
        "commonLabels", "commonAnnotations", "externalURL", "alerts",
    }  # fmt: skip
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "team"
    assert body["groupKey"] == mixed.group_key
    assert body["groupLabels"] == {"alertname": "HighCPUUsage"}
    assert body["commonLabels"]["alertname"] == "HighCPUUsage"
    assert "instance_id" not in body["commonLabels"]
    assert body["truncatedAlerts"] == 0
    assert body["externalURL"] == "http://am.example:9093"
    alerts = body["alerts"]
    assert [a["labels"]["instance_id"] for a in alerts] == ["prod-db-01", "prod-db-02", "prod-db-03"]
    for a in alerts:
        assert set(a) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
    assert alerts[0]["status"] == "firing"
    assert alerts[0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert alerts[0]["startsAt"] == "2025-01-15T10:35:00Z"  # fired_at
    assert alerts[2]["status"] == "resolved"
    assert alerts[2]["endsAt"] == "2025-01-15T10:45:00Z"
    assert alerts[0]["fingerprint"] == "fp-prod-db-01"
    json.dumps(body, allow_nan=False)


def test_webhook_is_resolved_when_every_alert_is() -> None:
    n = group(_alert("a", resolved=True), _alert("b", resolved=True))
    assert payloads.webhook_payload(n)["status"] == "resolved"


def test_webhook_max_alerts_truncates_and_counts(mixed: GroupNotification) -> None:
    body = payloads.webhook_payload(mixed, max_alerts=2)
    assert len(body["alerts"]) == 2
    assert body["truncatedAlerts"] == 1
    with pytest.raises(ValueError, match="max_alerts"):
        payloads.webhook_payload(mixed, max_alerts=-1)


def test_webhook_is_deterministic(mixed: GroupNotification) -> None:
    reordered = group(*reversed(mixed.alerts))
    assert json.dumps(payloads.webhook_payload(mixed)) == json.dumps(payloads.webhook_payload(reordered))


# -- alertmanager push ----------------------------------------------------------------------------


def test_alertmanager_firing_ends_after_resolve_timeout_from_now(mixed: GroupNotification) -> None:
    now = T0 + 5000  # sent late (a backlog): endsAt counts from the send, not the flush
    body = payloads.alertmanager_payload(mixed, now=now, resolve_timeout_s=300)
    assert isinstance(body, list) and len(body) == 3
    for item in body:
        assert set(item) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert item["labels"]["alertname"] == "HighCPUUsage"
    assert body[0]["endsAt"] == "2025-01-15T11:58:20Z"  # T0 + 5000 + 300
    assert body[2]["endsAt"] == "2025-01-15T10:45:00Z"  # resolved_at
    assert body[0]["generatorURL"].startswith("https://grafana.example.com/")


def test_alertmanager_omits_empty_generator_url_and_adds_alertname() -> None:
    a = _alert("x", dashboard_url="", labels=tuple(instance_labels("x")))
    (item,) = payloads.alertmanager_payload(group(a), now=T0)
    assert "generatorURL" not in item
    assert item["labels"]["alertname"] == "HighCPUUsage"
    with pytest.raises(ValueError, match="resolve_timeout"):
        payloads.alertmanager_payload(group(a), now=T0, resolve_timeout_s=0)


# -- slack -----------------------------------------------------------------------------------------

# The example of Slack's "Sending messages using incoming webhooks" page (text + blocks).
SLACK_DOC_EXAMPLE: dict[str, Any] = {
    "text": "Danny Torrence left a 1 star review for your property.",
    "blocks": [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Danny Torrence left the following review for your property:"},
        },
        {
            "type": "section",
            "block_id": "section567",
            "text": {
                "type": "mrkdwn",
                "text": "<https://example.com|Overlook Hotel> \n :star: \n Doors had too many axe holes.",
            },
            "accessory": {
                "type": "image",
                "image_url": "https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/d3725c8f.png",
                "alt_text": "Haunted hotel image",
            },
        },
        {
            "type": "section",
            "block_id": "section789",
            "fields": [{"type": "mrkdwn", "text": "*Average Rating*\n1.0"}],
        },
    ],
}


def slack_problems(body: dict[str, Any]) -> list[str]:
    """Block Kit rules from Slack's reference: `text` is the notification fallback; at most 50
    blocks; a section's text at most 3000 characters, at most 10 fields of 2000; a header's
    plain_text at most 150; text objects are {type: mrkdwn|plain_text, text}."""
    problems: list[str] = []
    if not isinstance(body.get("text"), str) or not body["text"]:
        problems.append("text (the fallback) must be a non-empty string")
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        problems.append("blocks must be a list of at most 50")
        return problems

    def text_object(
        obj: Any, where: str, limit: int, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")
    ) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in kinds or not isinstance(obj.get("text"), str):
            problems.append(f"{where}: not a text object of {kinds}")
        elif not 1 <= len(obj["text"]) <= limit:
            problems.append(f"{where}: text length {len(obj['text'])} not in 1..{limit}")

    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"block {i}: section needs text or fields")
            if "text" in block:
                text_object(block["text"], f"block {i} text", 3000)
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"block {i}: more than 10 fields")
            for j, f in enumerate(fields):
                text_object(f, f"block {i} field {j}", 2000)
        elif kind == "header":
            text_object(block.get("text"), f"block {i} header", 150, ("plain_text",))
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                problems.append(f"block {i}: context needs 1..10 elements")
        elif kind != "divider":
            problems.append(f"block {i}: unexpected type {kind!r}")
    return problems


def test_slack_validator_accepts_the_documented_example() -> None:
    assert slack_problems(SLACK_DOC_EXAMPLE) == []
    assert slack_problems({"blocks": SLACK_DOC_EXAMPLE["blocks"]}) != []  # it does check something


def test_slack_body_follows_the_documented_shape(mixed: GroupNotification) -> None:
    body = payloads.slack_payload(mixed, channel="#db-alerts")
    assert slack_problems(body) == []
    assert body["text"] == "[FIRING:2] HighCPUUsage"
    assert body["channel"] == "#db-alerts"
    assert body["blocks"][0]["type"] == "header"
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    assert len(sections) == 3
    assert sections[0].startswith("*[FIRING:critical] High CPU usage on prod-db-01*")
    assert "<https://runbooks.example.com/high-cpu|Runbook>" in sections[0]
    assert sections[2].startswith("*[RESOLVED]")
    json.dumps(body, allow_nan=False)


def test_slack_escapes_markup_and_caps_blocks() -> None:
    many = [_alert(f"db-{i:02d}", annotations=(("summary", "<!channel> & co"),)) for i in range(30)]
    body = payloads.slack_payload(group(*many))
    assert slack_problems(body) == []
    assert "<!channel>" not in json.dumps(body)
    assert "&lt;!channel&gt; &amp; co" in body["blocks"][1]["text"]["text"]
    assert body["blocks"][-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "and 10 more alert(s)"}],
    }


# -- pagerduty -------------------------------------------------------------------------------------

# The examples of PagerDuty's "Send an Alert Event" (Events API v2) page: trigger and resolve.
PAGERDUTY_DOC_TRIGGER: dict[str, Any] = {
    "payload": {
        "summary": "Example alert on host1.example.com",
        "timestamp": "2015-07-17T08:42:58.315+0000",
        "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
        "severity": "info",
        "component": "postgres",
        "group": "prod-datapipe",
        "class": "deploy",
        "custom_details": {"ping time": "1500ms", "load avg": 0.75},
    },
    "routing_key": "samplekeyhere",
    "dedup_key": "samplekeyhere",
    "images": [
        {"src": "https://www.pagerduty.com/logo.png", "href": "https://example.com/", "alt": "Example"}
    ],
    "links": [{"href": "https://example.com/", "text": "Link text"}],
    "event_action": "trigger",
    "client": "Sample Monitoring Service",
    "client_url": "https://monitoring.example.com",
}
PAGERDUTY_DOC_RESOLVE = {
    "routing_key": "routingkeyhere",
    "dedup_key": "dedupkeyhere",
    "event_action": "resolve",
}


def pagerduty_problems(event: dict[str, Any]) -> list[str]:
    """The parameter table of the Events API v2: routing_key and event_action required; dedup_key
    at most 255; for a trigger, payload.summary (at most 1024), payload.source and
    payload.severity (critical|error|warning|info) required; custom_details an object; links
    need href; no other top-level keys."""
    problems: list[str] = []
    allowed = {
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "images",
        "links",
        "client",
        "client_url",
    }
    problems += [f"unknown key {k!r}" for k in sorted(set(event) - allowed)]
    if not isinstance(event.get("routing_key"), str) or not event["routing_key"]:
        problems.append("routing_key required")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append(f"bad event_action {action!r}")
    if "dedup_key" in event and not (isinstance(event["dedup_key"], str) and len(event["dedup_key"]) <= 255):
        problems.append("dedup_key must be a string of at most 255")
    if action == "trigger":
        p = event.get("payload")
        if not isinstance(p, dict):
            return [*problems, "trigger needs a payload"]
        if not isinstance(p.get("summary"), str) or not 1 <= len(p["summary"]) <= 1024:
            problems.append("payload.summary required, at most 1024 characters")
        if not isinstance(p.get("source"), str) or not p["source"]:
            problems.append("payload.source required")
        if p.get("severity") not in ("critical", "error", "warning", "info"):
            problems.append(f"bad payload.severity {p.get('severity')!r}")
        if "custom_details" in p and not isinstance(p["custom_details"], dict):
            problems.append("payload.custom_details must be an object")
    for link in event.get("links", []):
        if not link.get("href"):
            problems.append("a link needs href")
    return problems


def test_pagerduty_validator_accepts_the_documented_examples() -> None:
    assert pagerduty_problems(PAGERDUTY_DOC_TRIGGER) == []
    assert pagerduty_problems(PAGERDUTY_DOC_RESOLVE) == []
    assert pagerduty_problems({**PAGERDUTY_DOC_TRIGGER, "payload": {"summary": "x"}}) != []


def test_pagerduty_one_event_per_alert_keyed_by_fingerprint(mixed: GroupNotification) -> None:
    events = payloads.pagerduty_events(mixed, routing_key="R" * 32, client_url="https://gds.example")
    assert [pagerduty_problems(e) for e in events] == [[], [], []]
    assert [e["dedup_key"] for e in events] == ["fp-prod-db-01", "fp-prod-db-02", "fp-prod-db-03"]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    trigger = events[0]
    assert trigger["payload"]["summary"] == "High CPU usage on prod-db-01"
    assert trigger["payload"]["source"] == "prod-db-01"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["component"] == "postgresql"
    assert trigger["payload"]["group"] == "production"
    assert trigger["payload"]["custom_details"]["labels"]["instance_id"] == "prod-db-01"
    assert {"href": "https://runbooks.example.com/high-cpu", "text": "Runbook"} in trigger["links"]
    assert events[2] == {"routing_key": "R" * 32, "dedup_key": "fp-prod-db-03", "event_action": "resolve"}
    json.dumps(events, allow_nan=False)


def test_pagerduty_maps_unknown_severity_and_clips_summary() -> None:
    a = _alert("x", severity=Severity("page"), annotations=(("summary", "s" * 2000),), value=math.nan)
    (event,) = payloads.pagerduty_events(group(a), routing_key="k")
    assert pagerduty_problems(event) == []
    assert event["payload"]["severity"] == "error"
    assert len(event["payload"]["summary"]) == 1024
    assert event["payload"]["custom_details"]["value"].startswith("no data")
    with pytest.raises(ValueError, match="routing_key"):
        payloads.pagerduty_events(group(a), routing_key="")


# -- email -----------------------------------------------------------------------------------------


def test_email_is_grouped_with_text_and_html(mixed: GroupNotification) -> None:
    content = payloads.email_content(mixed)
    assert content.subject == "[FIRING:2] HighCPUUsage"
    assert content.message_id == mixed.message_id
    assert "Firing (2):" in content.text and "Resolved (1):" in content.text
    assert (
        content.text.index("prod-db-01") < content.text.index("prod-db-02") < content.text.index("prod-db-03")
    )
    assert "Runbook: https://runbooks.example.com/high-cpu" in content.text
    assert content.html.startswith("<html>") and "<h3>Resolved (1)</h3>" in content.html


def test_email_html_escapes_annotations() -> None:
    a = _alert("x", annotations=(("summary", "<script>alert(1)</script>"),))
    content = payloads.email_content(group(a))
    assert "<script>" not in content.html
    assert "&lt;script&gt;" in content.html
    assert "<script>" in content.text  # plain text is literal


def test_title_names_group_labels_other_than_alertname() -> None:
    n = GroupNotification("r", "k", (("alertname", "A"), ("env", "prod")), (_alert("x", resolved=True),), T0)
    assert payloads.title(n) == "[RESOLVED] HighCPUUsage (env=prod)"


# -- notification_service --------------------------------------------------------------------------


def test_notification_service_posts_todays_payload_per_alert(mixed: GroupNotification) -> None:
    posts = payloads.notification_service_posts(mixed)
    by_id = {a.message_id: a for a in mixed.alerts}
    assert [p.message_id for p in posts] == ["msg-prod-db-01-f", "msg-prod-db-02-f", "msg-prod-db-03-r"]
    for post in posts:
        assert post.body == notification_payload(by_id[post.message_id])
        assert post.headers == {"Idempotency-Key": post.message_id}
