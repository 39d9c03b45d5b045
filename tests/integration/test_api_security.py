"""Security of the control-plane API on a real process, Kafka and PostgreSQL: auth and scopes,
injection attempts in matchers, labels, comments and filters, size limits, tokens in logs."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.control.reader import read_all
from tests.support.api_server import READ_TOKEN, WRITE_TOKEN, Api, insert_event, psql, running_api

pytestmark = pytest.mark.integration

DROP = "'; DROP TABLE alert_events; --"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture()
def api(kafka_bootstrap: str, pg_dsn: str, topic_factory: Any, tmp_path: Path) -> Iterator[Api]:
    with running_api(kafka_bootstrap, pg_dsn, topic_factory("control"), tmp_path) as running:
        yield running


def silence(matchers: list[dict[str, Any]], comment: str = "ok") -> dict[str, Any]:
    return {
        "matchers": matchers,
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "tester",
        "comment": comment,
    }


def tables_intact(pg_dsn: str, api: Api) -> int:
    return int(psql(pg_dsn, f'SELECT count(*) FROM "{api.schema}".alert_events')[0][0])


def test_writes_need_a_write_token_and_nothing_is_published_without_one(
    api: Api, kafka_bootstrap: str, pg_dsn: str
) -> None:
    insert_event(pg_dsn, api.schema, fingerprint="fp-sec", alert_name="Sec", state="firing", labels={})
    body = silence([{"name": "alertname", "value": "Sec", "isRegex": False}])
    wrong = "x-" + uuid.uuid4().hex
    writes = [
        ("POST", "/api/v2/silences", body),
        ("POST", "/api/v1/alerts/fp-sec/ack", {"comment": "c"}),
        ("DELETE", "/api/v1/alerts/fp-sec/ack", {}),
        ("POST", "/webhook/proxy", {"version": "4", "alerts": []}),
        ("DELETE", "/api/v2/silence/whatever", None),
    ]
    for method, path, payload in writes:
        status, answer = api.request(method, path, payload, token=None)
        assert status == 401, (method, path, answer)
        status, answer = api.request(method, path, payload, token=wrong)
        assert status == 401, (method, path, answer)
        status, answer = api.request(method, path, payload, token=READ_TOKEN)
        assert status == 403, (method, path, answer)
        assert "scope read" in answer["error"]
    # reads: the read token is enough, no token is not (API_ANONYMOUS_READ is off)
    assert api.request("GET", "/api/v2/silences", token=READ_TOKEN)[0] == 200
    assert api.request("GET", "/api/v1/history", token=None)[0] == 401
    assert read_all(kafka_bootstrap, api.topic, timeout_s=20) == []
    assert psql(pg_dsn, f'SELECT count(*) FROM "{api.schema}".control_audit')[0][0] == 0
    # the 401 says how to authenticate
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(api.url + "/api/v2/silences", method="GET"), timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401 and exc.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        raise AssertionError("a read without a token was let through")


def test_injection_attempts_are_refused_or_stored_verbatim(api: Api, pg_dsn: str) -> None:
    insert_event(
        pg_dsn,
        api.schema,
        fingerprint="fp-inj",
        alert_name="Inj",
        state="firing",
        labels={"instance_id": "db-1"},
    )
    rows = tables_intact(pg_dsn, api)
    # label names are validated: quotes, SQL and HTML in a name are a 400 with the reason
    for bad_name in ['a"b', DROP, SCRIPT, ""]:
        status, answer = api.request(
            "POST", "/api/v2/silences", silence([{"name": bad_name, "value": "x", "isRegex": False}])
        )
        assert status == 400 and "is not a label name" in answer["error"], answer
    # values and comments are data: stored and returned verbatim (JSON-encoded, never interpreted)
    status, answer = api.request(
        "POST",
        "/api/v2/silences",
        silence(
            [
                {"name": "instance_id", "value": DROP, "isRegex": False},
                {"name": "alertname", "value": SCRIPT, "isRegex": False},
            ],
            comment=SCRIPT + DROP,
        ),
    )
    assert status == 200, answer
    status, got = api.request("GET", f"/api/v2/silence/{answer['silenceID']}")
    assert [m["value"] for m in got["matchers"]] == [DROP, SCRIPT] and got["comment"] == SCRIPT + DROP
    assert api.request("POST", "/api/v1/alerts/fp-inj/ack", {"comment": SCRIPT})[0] == 200
    assert api.request("GET", "/api/v1/alerts/fp-inj/timeline")[1]["acknowledgement"]["comment"] == SCRIPT
    # a bad regex is refused by our parser or by PostgreSQL's, never a 500
    assert (
        api.request("POST", "/api/v2/silences", silence([{"name": "a", "value": "(", "isRegex": True}]))[0]
        == 400
    )
    # filters and history parameters: values are parameters, names are validated
    q = urllib.parse.quote
    for path in [
        f"/api/v1/history?alertname={q(DROP)}",
        f"/api/v1/history?instance={q(DROP)}",
        f"/api/v1/history?filter={q('instance_id=' + chr(34) + DROP + chr(34))}",
        f"/api/v1/history?filter={q('instance_id=~' + chr(34) + DROP + chr(34))}",
        f"/api/v2/alerts?filter={q('alertname=' + chr(34) + SCRIPT + chr(34))}",
        f"/api/v1/audit?actor={q(DROP)}",
    ]:
        status, answer = api.request("GET", path)
        assert status == 200, (path, answer)
        assert (
            not (answer.get("events") or answer.get("entries")) if isinstance(answer, dict) else answer == []
        )
    for path in [
        f"/api/v1/history?filter={q(DROP + '=' + chr(34) + 'x' + chr(34))}",
        f"/api/v1/history?filter={q('instance_id=~' + chr(34) + '(' + chr(34))}",
        f"/api/v1/history?state={q(DROP)}",
        f"/api/v1/history?since={q(DROP)}",
        f"/api/v1/history?cursor={q(DROP)}",
        "/api/v1/history?limit=100000",
        f"/api/v2/silences?filter={q(SCRIPT)}",
    ]:
        status, answer = api.request("GET", path)
        assert status == 400 and answer["error"], (path, answer)
    # the webhook refuses bad label names and stores odd values verbatim
    alert = {
        "labels": {"alertname": "Inj", "bad-name": "x"},
        "status": "firing",
        "startsAt": "2025-01-15T10:00:00Z",
    }
    status, answer = api.request("POST", "/webhook/proxy", {"version": "4", "alerts": [alert]})
    assert status == 400 and "bad-name" in answer["error"]
    alert["labels"] = {"alertname": "Inj", "instance_id": DROP + SCRIPT}
    assert api.request("POST", "/webhook/proxy", {"version": "4", "alerts": [alert]})[1]["inserted"] == 1
    status, history = api.request("GET", f"/api/v1/history?instance={q(DROP + SCRIPT)}")
    assert [e["labels"]["instance_id"] for e in history["events"]] == [DROP + SCRIPT]
    assert tables_intact(pg_dsn, api) == rows + 1


def test_limits_and_no_token_in_the_log(api: Api) -> None:
    big = b'{"version": "4", "alerts": [' + b'{"labels": {}},' * 100_000 + b"{}]}"
    assert api.request("POST", "/webhook/proxy", raw=big)[0] == 413
    assert api.request("POST", "/webhook/proxy", raw=b"{not json")[0] == 400
    many = silence([{"name": f"l{i}", "value": "x", "isRegex": False} for i in range(100)])
    assert api.request("POST", "/api/v2/silences", many)[0] == 400
    wrong = "x-" + uuid.uuid4().hex
    status, answer = api.request("POST", "/api/v2/silences", {}, token=wrong)
    assert status == 401 and wrong not in str(answer)
    assert api.request("GET", "/api/v2/silences", token=READ_TOKEN)[0] == 200
    assert api.request("POST", "/api/v2/silences", {"matchers": "x"}, token=WRITE_TOKEN)[0] == 400
    log = api.output()
    assert "POST /api/v2/silences" in log  # the access log is on, and it is what is checked
    for secret in (WRITE_TOKEN, READ_TOKEN, wrong):
        assert secret not in log
