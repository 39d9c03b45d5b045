"""The console's test rig: the real API process (`python -m connectors.api`) on a private control
topic and PostgreSQL schema, firing alerts seeded into its `alert_events`, and Debian's headless
Chromium driven by Selenium through /usr/bin/chromedriver (never a downloaded driver).

`python -m tests.support.console docs/console.png` takes the README's screenshot with the same
rig (needs the local services: `deploy/local/services.sh up; . deploy/local/env.sh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from selenium import webdriver

from tests.support.browser import chromium
from tests.support.jobs import stop

ROOT = Path(__file__).resolve().parents[2]
WRITE_TOKEN = "w-" + "a1b2c3d4e5f6a7b8c9d0"
READ_TOKEN = "r-" + "0f9e8d7c6b5a4f3e2d1c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


@dataclass(frozen=True)
class Alert:
    """One firing alert as the alerting job's storage flow writes it into alert_events."""

    name: str
    labels: Mapping[str, str]
    value: float
    threshold: float
    severity: str
    active_at: float
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, self.name + json.dumps(dict(self.labels), sort_keys=True)).hex[
            :16
        ]


def seed(dsn: str, schema: str, alerts: list[Alert]) -> None:
    """A pending then a firing event per alert (the newest is firing, so the API lists it)."""
    rows = []
    for a in alerts:
        for state, at in (("pending", a.active_at), ("firing", a.active_at + 60)):
            rows.append(
                (
                    f"{a.fingerprint}:{state}",
                    a.fingerprint,
                    a.name,
                    state,
                    datetime.fromtimestamp(at, UTC),
                    datetime.fromtimestamp(a.active_at, UTC),
                    a.value,
                    a.threshold,
                    json.dumps(dict(a.labels)),
                    json.dumps({"summary": a.summary} if a.summary else {}),
                    a.severity,
                )
            )

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(
                f'INSERT INTO "{schema}".alert_events (message_id, fingerprint, alert_name, state, at,'
                " active_at, value, threshold, labels, annotations, severity)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11)",
                rows,
            )
        finally:
            await conn.close()

    asyncio.run(run())


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def api_process(
    *, brokers: str, dsn: str, schema: str, control_topic: str, log_dir: Path, extra: Mapping[str, str] = {}
) -> Iterator[Api]:
    """`python -m connectors.api` on a free port, ready (/readyz 200) or failing with its log."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": brokers,
        "PG_DSN": dsn,
        "PG_SCHEMA": schema,
        "CONTROL_TOPIC": control_topic,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_TOKENS": f"alice:write:{WRITE_TOKEN},viewer:read:{READ_TOKEN}",
        **extra,
    }
    log = log_dir / f"api-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.api"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    api = Api(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the API exited with {proc.returncode}:\n{api.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"the API was not ready within 30 s:\n{api.output()}")
            time.sleep(0.2)
        yield api
    finally:
        stop(proc)


def create_schema(dsn: str) -> str:
    schema = f"test_console_{uuid.uuid4().hex[:8]}"
    pg(dsn, f'CREATE SCHEMA "{schema}"')
    return schema


def drop_schema(dsn: str, schema: str) -> None:
    pg(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def create_topic(brokers: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.console.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)
    return name


def delete_topic(brokers: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.delete_topics([name]).values():
        with contextlib.suppress(Exception):
            fut.result(timeout=30)


def sign_in(driver: webdriver.Chrome, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/console/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    click_and_load(driver, driver.find_element(By.ID, "signin"))


def click_and_load(driver: webdriver.Chrome, element: Any) -> None:
    """Click a link or a form button and wait for the page it leads to: a click returns before the
    navigation completes, and the old page's elements would be read (or missed) meanwhile.

    The old page is marked with a window property that only it has; the wait never touches its
    elements, because Chrome answers a query on a node torn down mid-navigation with an "unknown
    error" (not Selenium's stale-element error), and `staleness_of` let that through.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__gdsOldPage = true")
    element.click()
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.__gdsOldPage && document.readyState === 'complete'")
    )


def realistic(now: float) -> list[Alert]:
    """A few alerts of a database fleet, for the screenshot."""

    def labels(instance: str, env: str, region: str, **more: str) -> dict[str, str]:
        return {
            "instance_id": instance,
            "environment": env,
            "region": region,
            "database_type": "postgresql",
            **more,
        }

    return [
        Alert(
            "HighCPUUsage",
            labels("prod-db-01", "production", "us-east-1"),
            93.4,
            85,
            "critical",
            now - 1260,
            "CPU at 93.4 % on prod-db-01 for 5m",
        ),
        Alert(
            "ReplicationLagHigh",
            labels("prod-db-03", "production", "eu-west-1", role="replica"),
            48.2,
            30,
            "warning",
            now - 3480,
            "Replica prod-db-03 is 48 s behind its primary",
        ),
        Alert(
            "DiskSpaceLow",
            labels("prod-db-02", "production", "us-east-1", mount="/var/lib/postgresql"),
            91.7,
            90,
            "warning",
            now - 7300,
            "Disk 91.7 % full on prod-db-02",
        ),
        Alert(
            "ConnectionsSaturated",
            labels("stg-db-01", "staging", "us-east-1"),
            187,
            180,
            "info",
            now - 540,
            "187 of 200 connections in use",
        ),
    ]


def screenshot(path: Path) -> None:
    """The firing-alerts page with a few alerts, one silenced and one acknowledged, as a PNG."""
    from selenium.webdriver.common.by import By

    brokers, dsn = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["PG_DSN"]
    schema, topic = create_schema(dsn), create_topic(brokers)
    try:
        with tempfile.TemporaryDirectory() as logs, api_process(
            brokers=brokers, dsn=dsn, schema=schema, control_topic=topic, log_dir=Path(logs)
        ) as api:  # fmt: skip
            alerts = realistic(float(int(time.time())))
            seed(dsn, schema, alerts)
            auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
            lag = alerts[1]
            matchers = [{"name": k, "value": v, "isRegex": False} for k, v in lag.labels.items()]
            body = {"matchers": matchers, "startsAt": datetime.now(UTC).isoformat(), "createdBy": "alice",
                    "endsAt": datetime.fromtimestamp(time.time() + 7200, UTC).isoformat(),
                    "comment": "Rebuilding the replica (CHG-2291)"}  # fmt: skip
            httpx.post(f"{api.url}/api/v2/silences", json=body, headers=auth, timeout=10).raise_for_status()
            httpx.post(
                f"{api.url}/api/v1/alerts/{alerts[0].fingerprint}/ack",
                json={"comment": "looking at the slow query log"},
                headers=auth,
                timeout=10,
            ).raise_for_status()
            with chromium(1360, 640) as driver:
                sign_in(driver, api.url, WRITE_TOKEN)
                driver.find_element(By.ID, "alerts")
                driver.save_screenshot(str(path))
    finally:
        drop_schema(dsn, schema)
        delete_topic(brokers, topic)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.png")
    screenshot(out)
    print(f"{out}: {out.stat().st_size} bytes")
