"""The web console in Debian's headless Chromium against the real API process (`python -m
connectors.api`) with real Kafka (a private control topic) and PostgreSQL (a private schema
holding firing alerts in alert_events)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from connectors.api.console import COOKIE, csrf_token
from connectors.control.reader import read_all
from rules.control.events import SilenceEvent
from tests.support.console import (
    READ_TOKEN,
    WRITE_TOKEN,
    Alert,
    Api,
    api_process,
    chromium,
    click_and_load,
    create_schema,
    drop_schema,
    seed,
    sign_in,
)

XSS_LABEL = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=2">'
XSS_COMMENT = '</textarea><script>window.__pwned=3</script><img src=x onerror="window.__pwned=4">'


@pytest.fixture()
def schema(pg_dsn: str) -> Iterator[str]:
    name = create_schema(pg_dsn)
    yield name
    drop_schema(pg_dsn, name)


@pytest.fixture()
def api(
    kafka_bootstrap: str, pg_dsn: str, schema: str, topic_factory: Callable[..., str], tmp_path: Path
) -> Iterator[tuple[Api, str]]:
    topic = topic_factory("control")
    with api_process(
        brokers=kafka_bootstrap, dsn=pg_dsn, schema=schema, control_topic=topic, log_dir=tmp_path
    ) as a:
        yield a, topic


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:g}s: {what}")
        time.sleep(0.2)


def row(driver: WebDriver, alert: Alert) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'tr.alert[data-fingerprint="{alert.fingerprint}"]')


def classes(element: WebElement) -> list[str]:
    return (element.get_attribute("class") or "").split()


def no_script_ran(driver: WebDriver) -> None:
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.find_elements(By.CSS_SELECTOR, "main img, main script") == []


def test_silence_ack_and_expire_from_the_browser(
    api: tuple[Api, str], kafka_bootstrap: str, pg_dsn: str, schema: str
):
    server, topic = api
    now = float(int(time.time()))
    cpu = Alert(
        "HighCPUUsage", {"instance_id": "prod-db-01", "region": "us-east-1"}, 93.4, 85, "critical", now - 600
    )
    xss = Alert(
        "DiskSpaceLow",
        {"instance_id": "prod-db-02", "note": XSS_LABEL},
        91.7,
        90,
        "warning",
        now - 300,
        XSS_LABEL,
    )
    seed(pg_dsn, schema, [cpu, xss])

    with chromium() as driver:
        driver.get(f"{server.url}/console/alerts")
        assert "/console/signin" in driver.current_url  # nothing shown before sign-in
        sign_in(driver, server.url, WRITE_TOKEN)
        assert driver.find_element(By.ID, "user").text == "alice (write)"
        assert "firing" in classes(row(driver, cpu))

        # user-controlled text is shown as text, and no payload runs
        assert XSS_LABEL in row(driver, xss).text
        no_script_ran(driver)

        # silence the CPU alert from its row: the form is prefilled with its labels as matchers
        click_and_load(driver, row(driver, cpu).find_element(By.CSS_SELECTOR, "a.silence"))
        prefilled = {
            driver.find_element(By.NAME, f"m{i}_name").get_attribute("value"): driver.find_element(
                By.NAME, f"m{i}_value"
            ).get_attribute("value")
            for i in range(3)
        }
        assert prefilled == {"alertname": "HighCPUUsage", "instance_id": "prod-db-01", "region": "us-east-1"}
        driver.find_element(By.ID, "duration").clear()
        driver.find_element(By.ID, "duration").send_keys("1h")
        driver.find_element(By.ID, "comment").send_keys("kernel upgrade " + XSS_COMMENT)
        click_and_load(driver, driver.find_element(By.ID, "create-silence"))

        assert driver.find_element(By.ID, "notice").text == "Silence created."
        cpu_row = row(driver, cpu)
        assert "muted" in classes(cpu_row)
        assert "silenced" in cpu_row.find_element(By.CSS_SELECTOR, "td.status").text
        assert "firing" in classes(row(driver, xss))

        # the silence is on the control topic, by the signed-in token's name
        def on_topic() -> list[SilenceEvent]:
            return [e for e in read_all(kafka_bootstrap, topic) if isinstance(e, SilenceEvent)]

        (silence,) = wait_for("the silence on the control topic", on_topic)
        assert silence.created_by == "alice"
        assert {(m.name, m.value, m.regex, m.negate) for m in silence.matchers} == {
            ("alertname", "HighCPUUsage", False, False),
            ("instance_id", "prod-db-01", False, False),
            ("region", "us-east-1", False, False),
        }
        assert silence.ends_at - silence.starts_at == pytest.approx(3600, abs=1)

        # acknowledge it (with a payload in the comment), then withdraw the acknowledgement
        form = row(driver, cpu).find_element(By.CSS_SELECTOR, "form[action$='/ack']")
        form.find_element(By.NAME, "comment").send_keys("on it " + XSS_COMMENT)
        click_and_load(driver, form.find_element(By.CSS_SELECTOR, "button.ack"))
        status = row(driver, cpu).find_element(By.CSS_SELECTOR, "td.status").text
        assert "acknowledged by alice" in status and XSS_COMMENT in status
        no_script_ran(driver)
        click_and_load(driver, row(driver, cpu).find_element(By.CSS_SELECTOR, "button.unack"))
        assert driver.find_element(By.ID, "notice").text == "Acknowledgement withdrawn."
        assert "acknowledged" not in row(driver, cpu).find_element(By.CSS_SELECTOR, "td.status").text

        # the timeline names the ack, its withdrawal and the silence
        driver.get(f"{server.url}/console/alerts/{cpu.fingerprint}")
        timeline = driver.find_element(By.ID, "timeline").text
        assert (
            "acknowledged" in timeline and "acknowledgement withdrawn" in timeline and "silenced" in timeline
        )
        assert XSS_COMMENT in timeline
        no_script_ran(driver)

        # history, filtered by alert name
        driver.get(f"{server.url}/console/history?alertname=DiskSpaceLow")
        history = driver.find_element(By.ID, "history").text
        assert "DiskSpaceLow" in history and "HighCPUUsage" not in history and XSS_LABEL in history
        no_script_ran(driver)

        # expire the silence: the alert is no longer muted
        driver.get(f"{server.url}/console/silences")
        active = driver.find_element(By.ID, "silences-active")
        assert "kernel upgrade " + XSS_COMMENT in active.text
        no_script_ran(driver)
        click_and_load(
            driver, active.find_element(By.CSS_SELECTOR, f'tr[data-id="{silence.id}"] button.expire')
        )
        assert driver.find_element(By.ID, "notice").text == "Silence expired."
        assert silence.id in driver.find_element(By.ID, "silences-expired").text
        driver.get(f"{server.url}/console/alerts")
        assert "firing" in classes(row(driver, cpu))
        expired = wait_for(
            "the expiry on the control topic", lambda: [s for s in on_topic() if s.ends_at < silence.ends_at]
        )
        assert expired[-1].id == silence.id

        # sign out: the pages ask for a token again
        click_and_load(driver, driver.find_element(By.ID, "signout"))
        driver.get(f"{server.url}/console/alerts")
        assert "/console/signin" in driver.current_url


def test_read_token_sees_no_actions_and_forged_posts_are_refused(
    api: tuple[Api, str], pg_dsn: str, schema: str
):
    server, _ = api
    now = float(int(time.time()))
    cpu = Alert("HighCPUUsage", {"instance_id": "prod-db-01"}, 93.4, 85, "critical", now - 600)
    seed(pg_dsn, schema, [cpu])

    with chromium() as driver:
        sign_in(driver, server.url, READ_TOKEN)
        assert driver.find_element(By.ID, "user").text == "viewer (read)"
        page = row(driver, cpu)
        assert page.find_elements(By.CSS_SELECTOR, "a.silence, button, form") == []
        # a forged form (as a script or another page would post it), with the session's cookie
        driver.execute_script(
            "const f = document.createElement('form'); f.method = 'post';"
            f"f.action = '/console/alerts/{cpu.fingerprint}/ack';"
            "const i = document.createElement('input'); i.name = 'csrf'; i.value = 'forged';"
            "f.appendChild(i);"
            "document.body.appendChild(f); f.submit();"
        )
        wait_for("the refusal page", lambda: driver.find_elements(By.ID, "reason"))
        assert "CSRF" in driver.find_element(By.ID, "reason").text

    url = f"{server.url}/console/alerts/{cpu.fingerprint}/ack"

    def post(token: str | None, data: dict[str, str]) -> httpx.Response:
        with httpx.Client(timeout=10, cookies={COOKIE: token} if token else None) as http:
            return http.post(url, data=data)

    # no session
    assert post(None, {"csrf": csrf_token(WRITE_TOKEN)}).status_code == 401
    # a write session without or with a wrong CSRF token
    assert post(WRITE_TOKEN, {}).status_code == 403
    assert post(WRITE_TOKEN, {"csrf": csrf_token(READ_TOKEN)}).status_code == 403
    # a read session with its own valid CSRF token: the scope refuses it
    refused = post(READ_TOKEN, {"csrf": csrf_token(READ_TOKEN)})
    assert refused.status_code == 403 and "needs a write token" in refused.text
    # nothing was acknowledged by any of them
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    (alert,) = httpx.get(f"{server.url}/api/v1/alerts", headers=read, timeout=10).json()["alerts"]
    assert alert.get("acknowledgement") is None
    # the same write session with its CSRF token is accepted (so the refusals above were the checks)
    assert post(WRITE_TOKEN, {"csrf": csrf_token(WRITE_TOKEN), "comment": "x"}).status_code == 303


def test_sign_in_cookie_is_httponly_and_strict(api: tuple[Api, str]):
    server, _ = api
    with httpx.Client(timeout=10) as http:
        bad = http.post(f"{server.url}/console/signin", data={"token": "not-a-token-of-this-api"})
        assert bad.status_code == 401 and COOKIE not in bad.cookies
        ok = http.post(
            f"{server.url}/console/signin", data={"token": WRITE_TOKEN, "next": "//evil.example/x"}
        )
    assert ok.status_code == 303 and ok.headers["location"] == "/console/alerts"  # no open redirect
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # plain http here; https sets Secure
