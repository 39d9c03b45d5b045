"""The HTTP layer and the service's Alertmanager semantics with an in-memory store and publisher
(starlette's TestClient); the real thing runs in tests/integration/test_api_*.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from connectors.api.app import Auth, create_app
from connectors.api.auth import Authenticator, parse_tokens
from connectors.api.service import ControlService
from rules.control.events import AckEvent, ControlEvent, SilenceEvent

W, R = "w" * 24, "r" * 24
NOW = 1_736_935_200.0  # 2025-01-15T10:00:00Z


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def iso(t: float) -> str:
    return at(t).isoformat().replace("+00:00", "Z")


class FakeStore:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.audit_rows: list[tuple[str, str | None, str | None]] = []

    async def record_event(
        self, event: ControlEvent, *, source: str, actor: str | None = None, action: str | None = None
    ) -> None:
        self.audit_rows.append((source, actor, action))

    async def current(self) -> list[Mapping[str, Any]]:
        newest: dict[str, dict[str, Any]] = {}
        for r in sorted(self.rows, key=lambda r: r["at"]):
            newest[r["fingerprint"]] = r
        return [r for r in newest.values() if r["state"] == "firing"]

    async def newest(self, fingerprint: str) -> Mapping[str, Any] | None:
        rows = [r for r in self.rows if r["fingerprint"] == fingerprint]
        return max(rows, key=lambda r: r["at"]) if rows else None


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[ControlEvent] = []

    def publish(self, event: ControlEvent) -> None:
        self.events.append(event)


@pytest.fixture()
def parts() -> Iterator[tuple[TestClient, ControlService, FakeStore, FakePublisher]]:
    store, publisher = FakeStore(), FakePublisher()
    clock = [NOW]
    service = ControlService(store, publisher, clock=lambda: clock[0])  # type: ignore[arg-type]
    tokens, problems = parse_tokens([("1", f"ops:write:{W}"), ("2", f"view:read:{R}")])
    assert not problems
    with TestClient(create_app(service, Auth(Authenticator(tokens)))) as client:
        client.headers["Authorization"] = f"Bearer {W}"
        yield client, service, store, publisher


def silence(**overrides: Any) -> dict[str, Any]:
    return {
        "matchers": [{"name": "alertname", "value": "HighCPU", "isRegex": False}],
        "startsAt": iso(NOW - 600),
        "endsAt": iso(NOW + 3600),
        "createdBy": "jane",
        "comment": "maintenance",
        **overrides,
    }


def test_a_silence_starting_in_the_past_starts_now_and_is_published_before_the_answer(parts: Any) -> None:
    client, service, store, publisher = parts
    r = client.post("/api/v2/silences", json=silence())
    assert r.status_code == 200
    sid = r.json()["silenceID"]
    (event,) = publisher.events
    assert isinstance(event, SilenceEvent) and event.id == sid and event.starts_at == NOW
    got = client.get(f"/api/v2/silence/{sid}").json()
    assert (got["status"]["state"], got["startsAt"], got["createdBy"]) == (
        "active",
        "2025-01-15T10:00:00Z",
        "jane",
    )
    assert store.audit_rows == [("api", "ops", "silence.create")]
    # an update keeps the id; an expiry ends it now; expiring again is a conflict
    assert client.post("/api/v2/silences", json=silence(id=sid, comment="longer")).json() == {
        "silenceID": sid
    }
    assert client.delete(f"/api/v2/silence/{sid}").status_code == 200
    assert service.get_silence(sid).state(NOW) == "expired"
    assert client.delete(f"/api/v2/silence/{sid}").status_code == 409
    # updating an expired silence creates a new one (Alertmanager's rule)
    assert client.post("/api/v2/silences", json=silence(id=sid)).json()["silenceID"] != sid
    assert [a for _, _, a in store.audit_rows] == [
        "silence.create",
        "silence.update",
        "silence.expire",
        "silence.create",
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (silence(matchers=[]), "at least one matcher"),
        (silence(matchers=[{"name": "a", "value": ".*", "isRegex": True}]), "empty string"),
        (silence(endsAt=iso(NOW - 1)), "endsAt"),
        (silence(startsAt="tomorrow"), "RFC 3339"),
        (silence(createdBy=""), "createdBy"),
        (silence(id="no-such-silence"), "not found"),
        ([1, 2], "PostableSilence"),
    ],
)
def test_bad_silences_are_refused_with_the_reason(parts: Any, body: Any, reason: str) -> None:
    client, _, _, publisher = parts
    r = client.post("/api/v2/silences", json=body)
    assert r.status_code in (400, 404) and reason in r.json()["error"]
    assert publisher.events == []


def test_alerts_carry_their_silences_and_acknowledgement(parts: Any) -> None:
    client, _, store, publisher = parts
    labels = {"alertname": "HighCPU", "instance_id": "db-1"}
    store.rows.append(
        {
            "fingerprint": "fp1",
            "alert_name": "HighCPU",
            "state": "firing",
            "at": at(NOW - 60),
            "active_at": at(NOW - 120),
            "labels": labels,
            "annotations": {},
            "severity": "critical",
            "value": 97.0,
            "suppressed": None,
        }
    )
    assert [a["status"]["state"] for a in client.get("/api/v2/alerts").json()] == ["active"]
    sid = client.post("/api/v2/silences", json=silence()).json()["silenceID"]
    assert client.get("/api/v2/alerts?silenced=false").json() == []
    (alert,) = client.get("/api/v2/alerts").json()
    assert alert["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
    assert client.get('/api/v2/alerts?filter=instance_id="db-2"').json() == []
    r = client.post("/api/v1/alerts/fp1/ack", json={"comment": "mine"})
    assert r.status_code == 200
    ack = publisher.events[-1]
    assert isinstance(ack, AckEvent) and (ack.by, ack.active_at, ack.acked) == ("ops", NOW - 120, True)
    assert client.get("/api/v1/alerts").json()["alerts"][0]["acknowledgement"]["by"] == "ops"
    assert client.delete("/api/v1/alerts/fp1/ack").status_code == 200
    assert client.get("/api/v1/alerts").json()["alerts"][0]["acknowledgement"] is None
    assert client.delete("/api/v1/alerts/fp1/ack").status_code == 409
    assert client.post("/api/v1/alerts/nope/ack", json={}).status_code == 404


def test_scopes_and_anonymous_reads(parts: Any) -> None:
    client, service, _, publisher = parts
    r = client.post("/api/v2/silences", json=silence(), headers={"Authorization": f"Bearer {R}"})
    assert r.status_code == 403
    r = client.get("/api/v2/silences", headers={"Authorization": ""})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/api/v2/silences", headers={"Authorization": f"Bearer {R}"}).status_code == 200
    assert publisher.events == []
    tokens, _ = parse_tokens([("1", f"ops:write:{W}")])
    anon = create_app(service, Auth(Authenticator(tokens, anonymous_read=True)))
    with TestClient(anon) as c:
        assert c.get("/api/v2/silences").status_code == 200
        assert c.post("/api/v2/silences", json=silence()).status_code == 401
        assert (
            c.get("/api/v2/silences", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code
            == 401
        )


def test_probes_and_metrics_need_no_token(parts: Any) -> None:
    client, _, _, _ = parts
    client.post("/api/v2/silences", json=silence())
    plain = {"Authorization": ""}
    assert client.get("/healthz", headers=plain).text == "ok\n"
    assert client.get("/readyz", headers=plain).status_code == 200
    text = client.get("/metrics", headers=plain).text
    assert 'gds_api_writes_total{action="silence.create"} 1.0' in text
    assert 'gds_api_requests_total{method="POST",route="post_silence",status="200"} 1.0' in text
    assert 'gds_api_control_events_applied_total{kind="silence"} 1.0' in text
