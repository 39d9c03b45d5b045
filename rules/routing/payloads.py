"""What each receiver kind is sent for one `GroupNotification` (pure: no clock, no I/O).

The same notification always yields the same bodies (a retry or a replay re-sends identical
bytes), except where a builder takes `now` explicitly (the Alertmanager push's `endsAt`).
Alerts are listed sorted by their labels, as Alertmanager orders a group.

Choices, where the receivers leave room:
- `webhook`: Alertmanager's webhook JSON, version "4". A firing alert's `endsAt` is Go's zero
  time (`0001-01-01T00:00:00Z`), as Alertmanager sends it; `startsAt` is when the alert fired
  (Prometheus' `startsAt`), else when it became active. `max_alerts` > 0 keeps the first
  `max_alerts` alerts and counts the rest in `truncatedAlerts`. `generatorURL` is the alert's
  dashboard URL (we have no expression browser).
- `alertmanager` (`POST /api/v2/alerts`): a firing alert gets `endsAt = now + resolve_timeout_s`,
  so re-sending while firing (as Prometheus does) keeps it alive and an Alertmanager restart
  loses nothing; a resolved alert gets `endsAt` = its resolve time. `now` is the send time
  (the sender passes its wall clock): a backlog delivered late must not arrive already expired.
  `generatorURL` is left out when empty (the API types it as a URI).
- `slack`: incoming-webhook JSON with a `text` fallback (what notifications and old clients
  show) and `blocks` (header, one section per alert, at most `SLACK_MAX_ALERT_BLOCKS`, then a
  "and N more" context). `&`, `<`, `>` are escaped (Slack markup: `<!channel>` would ping).
- `pagerduty` (Events API v2): ONE EVENT PER ALERT, `dedup_key` = the alert's fingerprint, as
  the issue asks: a resolve closes exactly that alert's incident even when the other alerts of
  its group still fire (Alertmanager's own integration uses the group key, so one incident per
  group whose resolve waits for the whole group). Severity is the alert's when PagerDuty knows
  it (critical, error, warning, info), else `error`. A resolve carries only routing_key,
  dedup_key and event_action, like the documented example.
- `email`: one message per notification (grouped): subject `[FIRING:2] alertname (group labels)`
  as Alertmanager's default title, a plain-text and an HTML part listing each alert.
- `notification_service`: the seeds' payload (`rules.payload.notification_payload`), one POST
  per alert with that alert's own `message_id` as `Idempotency-Key`: exactly today's posts.

An escalation (`GroupNotification.escalated`, docs/escalation.md) is marked in every kind, and
only then (other payloads are unchanged): webhook `"escalated": true`; Alertmanager push and
notification service label `escalated="true"`; titles and subjects (slack, email, pagerduty
summary, notification service) start with `[ESCALATED] `. The notification service post gets
its own `message_id` (derived from the alert's), or the service would drop it as a duplicate of
the post the first receiver was sent.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.metric import iso
from rules.model import AlertEvent, AlertState
from rules.payload import format_number, notification_payload
from rules.routing.types import GroupNotification, GroupStatus

WEBHOOK_VERSION = "4"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
RESOLVE_TIMEOUT_S = 300.0  # Alertmanager's resolve_timeout default (5m)
SLACK_MAX_ALERT_BLOCKS = 20  # Slack allows 50 blocks per message; a page of 20 stays readable
SLACK_TEXT_LIMIT = 3000  # characters in one section's text
SLACK_HEADER_LIMIT = 150  # characters in a header block
PAGERDUTY_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
PAGERDUTY_SUMMARY_LIMIT = 1024
PAGERDUTY_DEDUP_LIMIT = 255
PAGERDUTY_CLIENT = "gds-alerting"
ESCALATED_PREFIX = "[ESCALATED] "
ESCALATED_LABEL = "escalated"


def sorted_alerts(n: GroupNotification) -> list[AlertEvent]:
    """The group's alerts in a stable order: by labels, then fingerprint."""
    return sorted(n.alerts, key=lambda a: (a.labels, a.fingerprint))


def labels_of(alert: AlertEvent) -> dict[str, str]:
    """The alert's labels with `alertname` (receivers group and title by it)."""
    labels = dict(alert.labels)
    labels.setdefault("alertname", alert.alert_name)
    return labels


def starts_at(alert: AlertEvent) -> str:
    return iso(alert.fired_at if alert.fired_at is not None else alert.active_at)


def _resolved_time(alert: AlertEvent) -> float:
    return alert.resolved_at if alert.resolved_at is not None else alert.at


# -- webhook (Alertmanager's webhook_config) ----------------------------------------------------


def webhook_payload(n: GroupNotification, *, max_alerts: int = 0, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for the group; `max_alerts` 0 means all."""
    if max_alerts < 0:
        raise ValueError(f"webhook max_alerts must be >= 0, got {max_alerts}")
    alerts = sorted_alerts(n)
    kept = alerts[:max_alerts] if max_alerts else alerts
    body: dict[str, Any] = {
        "version": WEBHOOK_VERSION,
        "groupKey": n.group_key,
        "truncatedAlerts": len(alerts) - len(kept),
        "status": n.status.value,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": _common_labels(n),
        "commonAnnotations": n.common_annotations,
        "externalURL": external_url,
        "alerts": [_webhook_alert(a) for a in kept],
    }
    if n.escalated:
        body["escalated"] = True
    return body


def _common_labels(n: GroupNotification) -> dict[str, str]:
    common = n.common_labels
    names = {a.alert_name for a in n.alerts}
    if len(names) == 1:
        common.setdefault("alertname", names.pop())
    return common


def _webhook_alert(alert: AlertEvent) -> dict[str, Any]:
    resolved = alert.state is AlertState.RESOLVED
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels_of(alert),
        "annotations": dict(alert.annotations),
        "startsAt": starts_at(alert),
        "endsAt": iso(_resolved_time(alert)) if resolved else GO_ZERO_TIME,
        "generatorURL": alert.dashboard_url,
        "fingerprint": alert.fingerprint,
    }


# -- alertmanager (API v2 push) -------------------------------------------------------------------


def alertmanager_payload(
    n: GroupNotification, *, now: float, resolve_timeout_s: float = RESOLVE_TIMEOUT_S
) -> list[dict[str, Any]]:
    """The body of `POST /api/v2/alerts`: one postable alert per alert of the group."""
    if resolve_timeout_s <= 0:
        raise ValueError(f"alertmanager resolve_timeout must be > 0, got {resolve_timeout_s}")
    out: list[dict[str, Any]] = []
    for alert in sorted_alerts(n):
        if alert.state is AlertState.RESOLVED:
            ends = _resolved_time(alert)
        else:
            ends = now + resolve_timeout_s
        labels = labels_of(alert)
        if n.escalated:  # a separate alert in that Alertmanager, so its routes can page on it
            labels[ESCALATED_LABEL] = "true"
        item: dict[str, Any] = {
            "labels": labels,
            "annotations": dict(alert.annotations),
            "startsAt": starts_at(alert),
            "endsAt": iso(ends),
        }
        if alert.dashboard_url:
            item["generatorURL"] = alert.dashboard_url
        out.append(item)
    return out


# -- titles shared by slack and email -------------------------------------------------------------


def title(n: GroupNotification) -> str:
    """Alertmanager's default title: `[FIRING:2] HighCPUUsage (instance_id=prod-db-01)`."""
    status = n.status
    head = f"[{status.value.upper()}:{len(n.firing)}]" if status is GroupStatus.FIRING else "[RESOLVED]"
    names = sorted({a.alert_name for a in n.alerts})
    name = names[0] if len(names) == 1 else ", ".join(names)
    shown = [f"{k}={v}" for k, v in n.group_labels if k != "alertname"]
    text = f"{head} {name}" + (f" ({' '.join(shown)})" if shown else "")
    return ESCALATED_PREFIX + text if n.escalated else text


def alert_summary(alert: AlertEvent) -> str:
    """The rendered `summary` annotation, else `<alertname> on <instance_id>`."""
    summary = dict(alert.annotations).get("summary", "").strip()
    if summary:
        return summary
    instance = alert.instance_id
    return f"{alert.alert_name} on {instance}" if instance else alert.alert_name


def _value_text(alert: AlertEvent) -> str:
    value = "no data" if not math.isfinite(alert.value) else format_number(alert.value)
    return f"{value} (threshold {format_number(alert.threshold)})"


# -- slack (incoming webhook) --------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(n: GroupNotification, *, channel: str = "", username: str = "") -> dict[str, Any]:
    """Incoming-webhook JSON: `text` (fallback) plus Block Kit `blocks`."""
    alerts = sorted_alerts(n)
    head = title(n)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(head, SLACK_HEADER_LIMIT)}}
    ]
    for alert in alerts[:SLACK_MAX_ALERT_BLOCKS]:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(_slack_alert_text(alert), SLACK_TEXT_LIMIT)},
            }
        )
    hidden = len(alerts) - SLACK_MAX_ALERT_BLOCKS
    if hidden > 0:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {hidden} more alert(s)"}]}
        )
    body: dict[str, Any] = {"text": slack_escape(head), "blocks": blocks}
    if channel:
        body["channel"] = channel
    if username:
        body["username"] = username
    return body


def _slack_alert_text(alert: AlertEvent) -> str:
    state = "RESOLVED" if alert.state is AlertState.RESOLVED else f"FIRING:{alert.severity.value}"
    lines = [f"*[{state}] {slack_escape(alert_summary(alert))}*"]
    description = dict(alert.annotations).get("description", "").strip()
    if description:
        lines.append(slack_escape(description))
    lines.append(f"Value: {_value_text(alert)}")
    links = []
    if alert.runbook_url:
        links.append(f"<{slack_escape(alert.runbook_url)}|Runbook>")
    if alert.dashboard_url:
        links.append(f"<{slack_escape(alert.dashboard_url)}|Dashboard>")
    if links:
        lines.append(" | ".join(links))
    return "\n".join(lines)


# -- pagerduty (Events API v2) --------------------------------------------------------------------


def pagerduty_severity(alert: AlertEvent) -> str:
    value = alert.severity.value
    return value if value in PAGERDUTY_SEVERITIES else "error"


def pagerduty_events(
    n: GroupNotification, *, routing_key: str, client: str = PAGERDUTY_CLIENT, client_url: str = ""
) -> list[dict[str, Any]]:
    """One Events API v2 event per alert: trigger while firing, resolve once resolved."""
    if not routing_key:
        raise ValueError("pagerduty needs a routing_key (the service's integration key)")
    events: list[dict[str, Any]] = []
    for alert in sorted_alerts(n):
        dedup_key = alert.fingerprint[:PAGERDUTY_DEDUP_LIMIT]
        if alert.state is AlertState.RESOLVED:
            events.append({"routing_key": routing_key, "dedup_key": dedup_key, "event_action": "resolve"})
            continue
        labels = labels_of(alert)
        summary = (ESCALATED_PREFIX if n.escalated else "") + alert_summary(alert)
        payload: dict[str, Any] = {
            "summary": _clip(summary, PAGERDUTY_SUMMARY_LIMIT),
            "source": alert.instance_id or client,
            "severity": pagerduty_severity(alert),
            "timestamp": starts_at(alert),
            "class": alert.alert_name,
            "custom_details": {
                "value": _value_text(alert),
                "labels": labels,
                "annotations": dict(alert.annotations),
                "group_key": n.group_key,
                "fire_count": alert.fire_count,
            },
        }
        if n.escalated:
            payload["custom_details"]["escalated"] = True
        if labels.get("database_type"):
            payload["component"] = labels["database_type"]
        if labels.get("environment"):
            payload["group"] = labels["environment"]
        event: dict[str, Any] = {
            "routing_key": routing_key,
            "dedup_key": dedup_key,
            "event_action": "trigger",
            "payload": payload,
            "client": client,
        }
        if client_url:
            event["client_url"] = client_url
        links = [
            {"href": url, "text": text}
            for url, text in ((alert.runbook_url, "Runbook"), (alert.dashboard_url, "Dashboard"))
            if url
        ]
        if links:
            event["links"] = links
        events.append(event)
    return events


# -- email ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailContent:
    """A grouped email: the sender adds From/To and sends it as multipart/alternative."""

    subject: str
    text: str
    html: str
    message_id: str  # the notification's id, for the Message-ID header (receivers dedup on it)


def email_content(n: GroupNotification) -> EmailContent:
    alerts = sorted_alerts(n)
    subject = title(n)
    text_lines = [subject, ""]
    html_items: list[str] = []
    for heading, group in (
        ("Firing", [a for a in alerts if a.state is not AlertState.RESOLVED]),
        ("Resolved", [a for a in alerts if a.state is AlertState.RESOLVED]),
    ):
        if not group:
            continue
        text_lines.append(f"{heading} ({len(group)}):")
        html_items.append(f"<h3>{heading} ({len(group)})</h3><ul>")
        for alert in group:
            detail = _email_details(alert)
            text_lines.append(f"- {alert_summary(alert)}")
            text_lines.extend(f"    {line}" for line in detail)
            html_items.append(
                f"<li><strong>{html.escape(alert_summary(alert))}</strong><br>"
                + "<br>".join(html.escape(line) for line in detail)
                + _email_links_html(alert)
                + "</li>"
            )
        text_lines.append("")
        html_items.append("</ul>")
    labels = ", ".join(f"{k}={v}" for k, v in n.group_labels)
    if labels:
        text_lines.append(f"Group: {labels}")
    body_html = (
        "<html><body>"
        f"<h2>{html.escape(subject)}</h2>"
        + "".join(html_items)
        + (f"<p>Group: {html.escape(labels)}</p>" if labels else "")
        + "</body></html>"
    )
    return EmailContent(subject, "\n".join(text_lines).rstrip() + "\n", body_html, n.message_id)


def _email_details(alert: AlertEvent) -> list[str]:
    lines = []
    description = dict(alert.annotations).get("description", "").strip()
    if description:
        lines.append(description)
    lines.append(f"Value: {_value_text(alert)}")
    lines.append(f"Started: {starts_at(alert)}")
    if alert.state is AlertState.RESOLVED:
        lines.append(f"Resolved: {iso(_resolved_time(alert))}")
    if alert.runbook_url:
        lines.append(f"Runbook: {alert.runbook_url}")
    if alert.dashboard_url:
        lines.append(f"Dashboard: {alert.dashboard_url}")
    return lines


def _email_links_html(alert: AlertEvent) -> str:
    links = [
        f'<a href="{html.escape(url, quote=True)}">{text}</a>'
        for url, text in ((alert.runbook_url, "Runbook"), (alert.dashboard_url, "Dashboard"))
        if url
    ]
    return ("<br>" + " | ".join(links)) if links else ""


# -- notification_service (the seeds' API) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicePost:
    """One `POST {url}/alerts` of the notification service: today's body and idempotency key."""

    message_id: str
    body: Mapping[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.message_id}


def notification_service_posts(n: GroupNotification) -> list[ServicePost]:
    """One post per alert, in the group's order; raises `rules.payload.PayloadError` for a PENDING one."""
    if not n.escalated:
        return [ServicePost(a.message_id, notification_payload(a)) for a in sorted_alerts(n)]
    return [_escalated_post(a) for a in sorted_alerts(n)]


def escalated_message_id(alert: AlertEvent) -> str:
    """The escalation's own id: deterministic per transition, never the alert's own."""
    return hashlib.blake2b(f"{alert.message_id}|escalated".encode(), digest_size=16).hexdigest()


def _escalated_post(alert: AlertEvent) -> ServicePost:
    body = notification_payload(alert)
    message_id = escalated_message_id(alert)
    body["message_id"] = message_id
    body["subject"] = ESCALATED_PREFIX + str(body["subject"])
    body["labels"] = {**body["labels"], ESCALATED_LABEL: "true"}
    return ServicePost(message_id, body)
