"""The control-plane API against real Kafka, PostgreSQL, Debian's amtool and Alertmanager.

Each test starts `python -m connectors.api` on a free port with a private control topic and a
private PostgreSQL schema; firing alerts are rows in its alert_events, as the storage flow writes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.control.publish import ControlPublisher
from connectors.control.reader import read_all
from rules.control.events import AckEvent, RuleSetEvent, SilenceEvent, stamp
from tests.support.api_server import Api, amtool, insert_event, running_api, wait_until
from tests.support.http_receiver import Recorder

pytestmark = pytest.mark.integration


@pytest.fixture()
def api(kafka_bootstrap: str, pg_dsn: str, topic_factory: Any, tmp_path: Path) -> Iterator[Api]:
    with running_api(kafka_bootstrap, pg_dsn, topic_factory("control"), tmp_path) as running:
        yield running


def control_events(kafka_bootstrap: str, api: Api) -> list[Any]:
    return read_all(kafka_bootstrap, api.topic, timeout_s=20)


def test_amtool_silence_mutes_the_alert_and_expiry_releases_it(
    api: Api, kafka_bootstrap: str, pg_dsn: str, tmp_path: Path
) -> None:
    name = f"ApiCpu{uuid.uuid4().hex[:8]}"
    insert_event(
        pg_dsn,
        api.schema,
        fingerprint=f"fp-{name}",
        alert_name=name,
        state="firing",
        labels={"instance_id": "db-1", "severity": "critical"},
        active_at="2 minutes",
    )
    shown = json.loads(amtool(api, tmp_path, "-o", "json", "alert", "query", f"alertname={name}"))
    assert [(a["labels"]["alertname"], a["status"]["state"]) for a in shown] == [(name, "active")]

    sid = amtool(
        api,
        tmp_path,
        "silence",
        "add",
        f"alertname={name}",
        "--comment=db maintenance",
        "--duration=1h",
    ).strip()
    listed = json.loads(amtool(api, tmp_path, "-o", "json", "silence", "query", f"alertname={name}"))
    assert [(s["id"], s["status"]["state"], s["comment"]) for s in listed] == [
        (sid, "active", "db maintenance")
    ]
    on_topic = [e for e in control_events(kafka_bootstrap, api) if isinstance(e, SilenceEvent)]
    assert [(e.id, e.matchers[0].value, e.ends_at > time.time()) for e in on_topic] == [(sid, name, True)]

    # `alert query` shows active alerts only; -s adds the silenced ones
    assert json.loads(amtool(api, tmp_path, "-o", "json", "alert", "query", f"alertname={name}")) == []
    muted = json.loads(amtool(api, tmp_path, "-o", "json", "alert", "query", "-s", f"alertname={name}"))
    assert [(a["status"]["state"], a["status"]["silencedBy"]) for a in muted] == [("suppressed", [sid])]

    amtool(api, tmp_path, "silence", "expire", sid)
    assert json.loads(amtool(api, tmp_path, "-o", "json", "silence", "query", f"alertname={name}")) == []
    expired = json.loads(
        amtool(api, tmp_path, "-o", "json", "silence", "query", "--expired", f"alertname={name}")
    )
    assert [(s["id"], s["status"]["state"]) for s in expired] == [(sid, "expired")]
    versions = [e for e in control_events(kafka_bootstrap, api) if isinstance(e, SilenceEvent)]
    assert versions[-1].id == sid and versions[-1].ends_at <= time.time()
    shown = json.loads(amtool(api, tmp_path, "-o", "json", "alert", "query", f"alertname={name}"))
    assert [a["status"]["state"] for a in shown] == ["active"]

    # both writes audited under the token's name (amtool's createdBy is the OS user)
    status, audit = api.request("GET", "/api/v1/audit?action=silence")
    assert status == 200
    assert sorted((e["action"], e["actor"], e["target"]) for e in audit["entries"]) == [
        ("silence.create", "ops", sid),
        ("silence.expire", "ops", sid),
    ]


def test_ack_and_resolve_appear_in_the_timeline_and_on_the_topic(
    api: Api, kafka_bootstrap: str, pg_dsn: str
) -> None:
    name, fp = "ApiDisk", f"fp-{uuid.uuid4().hex[:12]}"
    labels = {"instance_id": "db-2", "severity": "critical"}
    insert_event(
        pg_dsn,
        api.schema,
        fingerprint=fp,
        alert_name=name,
        state="firing",
        labels=labels,
        at="1 minute",
        active_at="1 minute",
    )
    status, body = api.request("GET", f"/api/v1/alerts/{fp}/timeline")
    assert (status, body["status"]) == (200, "open")

    status, body = api.request("POST", f"/api/v1/alerts/{fp}/ack", {"comment": "looking"})
    assert (status, body["acknowledged"], body["by"]) == (200, True, "ops")
    acks = [e for e in control_events(kafka_bootstrap, api) if isinstance(e, AckEvent)]
    assert [(a.fingerprint, a.acked, a.by, a.comment) for a in acks] == [(fp, True, "ops", "looking")]
    status, current = api.request("GET", "/api/v1/alerts?filter=alertname%3D%22ApiDisk%22")
    assert [a["acknowledgement"]["by"] for a in current["alerts"]] == ["ops"]
    assert api.request("GET", f"/api/v1/alerts/{fp}/timeline")[1]["status"] == "acknowledged"

    insert_event(
        pg_dsn,
        api.schema,
        fingerprint=fp,
        alert_name=name,
        state="resolved",
        labels=labels,
        active_at="1 minute",
    )
    status, body = api.request("GET", f"/api/v1/alerts/{fp}/timeline")
    assert body["status"] == "resolved"
    kinds = [(e["kind"], e.get("state")) for e in body["entries"]]
    assert kinds == [("event", "firing"), ("ack", None), ("event", "resolved")]
    # a resolved alert has nothing to acknowledge
    assert api.request("POST", f"/api/v1/alerts/{fp}/ack", {})[0] == 409


def test_a_rule_set_reload_on_the_topic_is_in_the_audit_and_replicas_share_the_state(
    api: Api, kafka_bootstrap: str, pg_dsn: str, topic_factory: Any, tmp_path: Path
) -> None:
    status, body = api.request(
        "POST",
        "/api/v2/silences",
        {
            "matchers": [{"name": "instance_id", "value": "db-9", "isRegex": False}],
            "startsAt": _iso(0),
            "endsAt": _iso(3600),
            "createdBy": "jane",
            "comment": "patching",
        },
    )
    assert status == 200, body
    sid = body["silenceID"]
    reload = RuleSetEvent(
        job="alerting",
        host="pod-0",
        version="abc123",
        status="refused",
        at=stamp(time.time()),
        files=("rules/x.yml",),
        problems=("x.yml:3: bad",),
        rules=4,
        id=uuid.uuid4().hex,
    )
    publisher = ControlPublisher(kafka_bootstrap, api.topic)
    publisher.publish(reload)
    publisher.close()

    def audited() -> list[Any]:
        return api.request("GET", "/api/v1/audit?action=ruleset")[1]["entries"]

    entries = wait_until(audited, "the rule-set event in the audit", api)
    assert [(e["action"], e["actor"], e["source"], e["detail"]["problems"]) for e in entries] == [
        ("ruleset.refused", "alerting", "topic", ["x.yml:3: bad"])
    ]
    # a second replica on the same topic folds the same state from the beginning
    with running_api(kafka_bootstrap, pg_dsn, api.topic, tmp_path) as replica:
        status, silences = replica.request("GET", "/api/v2/silences")
        assert [(s["id"], s["createdBy"]) for s in silences] == [(sid, "jane")]
        assert [
            e["action"]
            for e in wait_until(
                lambda: replica.request("GET", "/api/v1/audit")[1]["entries"], "the replica's audit", replica
            )
        ] != []
    # the API's own write was audited once (its reader's copy of the event did not add a row)
    status, writes = api.request("GET", "/api/v1/audit?action=silence")
    assert [(e["actor"], e["source"]) for e in writes["entries"]] == [("ops", "api")]


def _iso(offset_s: float) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat().replace("+00:00", "Z")


def test_webhook_proxy_stores_real_alertmanager_payloads_once(
    api: Api, alertmanager_url: str, alertmanager_webhook: Recorder
) -> None:
    """Alertmanager 0.25 (deploy/local) notifies its webhook; we record what it sends and post it
    to /webhook/proxy, twice."""
    name = f"ApiProxy{uuid.uuid4().hex[:8]}"
    starts = _iso(-60)
    alert = {
        "labels": {"alertname": name, "instance_id": "db-7", "severity": "warning"},
        "annotations": {"summary": "it's <b>late</b>"},
        "startsAt": starts,
    }
    httpx.post(f"{alertmanager_url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()

    def posted(status: str) -> dict[str, Any] | None:
        with alertmanager_webhook.lock:
            found = [
                p.body
                for p in alertmanager_webhook.posts
                if p.body.get("groupLabels", {}).get("alertname") == name and p.body.get("status") == status
            ]
        return found[0] if found else None

    firing = wait_until(lambda: posted("firing"), "Alertmanager's firing webhook", api)
    httpx.post(
        f"{alertmanager_url}/api/v2/alerts", json=[{**alert, "endsAt": _iso(-1)}], timeout=10
    ).raise_for_status()
    resolved = wait_until(lambda: posted("resolved"), "Alertmanager's resolved webhook", api)

    assert api.request("POST", "/webhook/proxy", firing)[1] == {"received": 1, "inserted": 1}
    assert api.request("POST", "/webhook/proxy", firing)[1] == {"received": 1, "inserted": 0}
    assert api.request("POST", "/webhook/proxy", resolved)[1] == {"received": 1, "inserted": 1}
    status, history = api.request("GET", f"/api/v1/history?alertname={name}")
    assert status == 200
    assert [
        (e["state"], e["labels"]["instance_id"], e["annotations"]["summary"]) for e in history["events"]
    ] == [
        ("resolved", "db-7", "it's <b>late</b>"),
        ("firing", "db-7", "it's <b>late</b>"),
    ]
    fp = firing["alerts"][0]["fingerprint"]
    assert api.request("GET", f"/api/v1/alerts/{fp}/timeline")[1]["status"] == "resolved"
    status, audit = api.request("GET", "/api/v1/audit?action=webhook.proxy")
    assert [(e["actor"], e["detail"]["inserted"]) for e in audit["entries"]] == [
        ("ops", 1),
        ("ops", 0),
        ("ops", 1),
    ]


def test_history_filters_and_keyset_pages(api: Api, pg_dsn: str) -> None:
    for i, (inst, region, state) in enumerate(
        [
            ("db-1", "eu", "firing"),
            ("db-1", "us", "firing"),
            ("db-2", "eu", "resolved"),
            ("db-1", "eu", "resolved"),
        ]
    ):
        insert_event(
            pg_dsn,
            api.schema,
            fingerprint=f"h{i}",
            alert_name="Hist",
            state=state,
            labels={"instance_id": inst, "region": region},
            at=f"{10 - i} minutes",
        )
    insert_event(
        pg_dsn,
        api.schema,
        fingerprint="other",
        alert_name="Other",
        state="firing",
        labels={"instance_id": "db-1"},
    )

    def fps(query: str) -> list[str]:
        status, body = api.request("GET", "/api/v1/history?" + query)
        assert status == 200, (query, body, api.output()[-1500:])
        return [e["fingerprint"] for e in body["events"]]

    assert fps("alertname=Hist") == ["h3", "h2", "h1", "h0"]
    assert fps("alertname=Hist&instance=db-1") == ["h3", "h1", "h0"]
    assert fps('alertname=Hist&filter=region%3D~"e.*"&state=resolved') == ["h3", "h2"]
    assert fps('filter=region!%3D"eu"&filter=alertname%3D"Hist"') == ["h1"]
    assert fps(f"alertname=Hist&since={_iso(-8.5 * 60)}&until={_iso(-6.5 * 60)}") == ["h3", "h2"]
    pages, cursor = [], ""
    while True:
        _, body = api.request(
            "GET", "/api/v1/history?alertname=Hist&limit=3" + (f"&cursor={cursor}" if cursor else "")
        )
        pages.append([e["fingerprint"] for e in body["events"]])
        if body["next"] is None:
            break
        cursor = body["next"]
    assert pages == [["h3", "h2", "h1"], ["h0"]]
