"""The console's pure parts: CSRF tokens, the silence form, views, and autoescaped templates.
(The pages themselves are tested in Chromium: tests/integration/test_console.py.)"""

from __future__ import annotations

import pytest

from connectors.api.amv2 import CurrentAlert
from connectors.api.console import (
    Console,
    alert_view,
    csrf_ok,
    csrf_token,
    matcher_text,
    prefilled,
    safe_next,
    silence_groups,
    silence_request,
)
from rules.control.events import ControlError, SilenceEvent, silence_from_json
from rules.model import Matcher

T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z
PAYLOAD = '<script>window.__pwned=1</script>"><img src=x onerror=alert(1)>'


def test_csrf_token_is_bound_to_the_session_token() -> None:
    a, b = "write-token-aaaaaaaaaaaa", "write-token-bbbbbbbbbbbb"
    assert csrf_ok(a, csrf_token(a))
    assert not csrf_ok(a, csrf_token(b))
    assert not csrf_ok(a, None) and not csrf_ok(a, "") and not csrf_ok(None, csrf_token(a))
    assert a not in csrf_token(a)


def test_silence_form_becomes_a_postable_silence_by_the_signed_in_author() -> None:
    form = {
        "m0_name": "alertname",
        "m0_op": "=",
        "m0_value": "HighCPU",
        "m1_name": "instance_id",
        "m1_op": "=~",
        "m1_value": "prod-.*",
        "m2_name": "",
        "m2_value": "ignored",
        "duration": "1h30m",
        "comment": "upgrade",
        "createdBy": "mallory",  # the form cannot choose the author
    }
    body = silence_request(form, author="alice", now=T0)
    assert body["createdBy"] == "alice"
    assert body["startsAt"] == "2025-01-15T10:00:00Z" and body["endsAt"] == "2025-01-15T11:30:00Z"
    silence = silence_from_json(body, id="s1", updated_at=T0)
    assert [matcher_text(m) for m in silence.matchers] == ['alertname="HighCPU"', 'instance_id=~"prod-.*"']


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"m0_name": ""}, "at least one"),
        ({"m0_op": "<"}, "operator"),
        ({"duration": "soon"}, "duration"),
        ({"duration": "0"}, "duration"),
        ({"comment": "  "}, "comment"),
    ],
)
def test_silence_form_problems_say_what_to_fix(change: dict[str, str], reason: str) -> None:
    form = {"m0_name": "alertname", "m0_op": "=", "m0_value": "X", "duration": "1h", "comment": "c", **change}
    with pytest.raises(ControlError, match=reason):
        silence_request(form, author="alice", now=T0)


def test_prefilled_form_has_an_equality_matcher_per_label() -> None:
    form = prefilled({"instance_id": "db-1", "alertname": "HighCPU"})
    assert [(m.name, m.op, m.value) for m in form.matchers if m.name] == [
        ("alertname", "=", "HighCPU"),
        ("instance_id", "=", "db-1"),
    ]


def test_next_is_only_a_console_path() -> None:
    assert safe_next("/console", "/console/history?x=1") == "/console/history?x=1"
    for bad in ("https://evil.example/", "//evil.example/console/", "/consolex", "/api/v2/silences", None):
        assert safe_next("/console", bad) == "/console/alerts"


def alert(**kw: object) -> CurrentAlert:
    base: dict[str, object] = {
        "fingerprint": "fp1",
        "alert_name": "HighCPU",
        "labels": {"alertname": "HighCPU", "instance_id": "db-1"},
        "annotations": {},
        "active_at": T0,
        "at": T0 + 60,
        "severity": "critical",
        "value": 93.4,
        "suppressed": None,
    }
    return CurrentAlert(**{**base, **kw})  # type: ignore[arg-type]


def test_alert_view_states() -> None:
    assert alert_view(alert()).css == "firing"
    silenced = alert_view(alert(silenced_by=("s1",)))
    assert silenced.css == "muted" and [b.text for b in silenced.statuses] == ["silenced"]
    acked = alert_view(alert(acked_by="bob", acked_at=T0 + 120, ack_comment="on it"))
    assert acked.css == "acked" and "acknowledged by bob" in [b.text for b in acked.statuses]
    assert alert_view(alert()).since == "2025-01-15T10:00:00Z"


def test_silences_grouped_by_state() -> None:
    def s(sid: str, start: float, end: float) -> SilenceEvent:
        return SilenceEvent(sid, (Matcher("a", "b"),), start, end, "alice", "", T0)

    groups = dict(
        silence_groups([s("e", T0 - 20, T0 - 10), s("p", T0 + 10, T0 + 20), s("a", T0 - 5, T0 + 5)], T0)
    )
    assert {k: [v.id for v in vs] for k, vs in groups.items()} == {
        "active": ["a"],
        "pending": ["p"],
        "expired": ["e"],
    }


def test_templates_escape_user_text() -> None:
    console = Console(service=None, authenticator=None)  # type: ignore[arg-type]
    view = alert_view(alert(labels={"alertname": "X", "note": PAYLOAD}, annotations={"summary": PAYLOAD}))
    html = console.env.get_template("console/alerts.html").render(
        prefix="/console",
        user=type("U", (), {"name": PAYLOAD, "can_write": True})(),
        csrf="t",
        now="",
        alerts=[view],
    )
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&#34;&gt;&lt;img" in html
