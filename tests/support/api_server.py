"""The control-plane API as a subprocess on a free loopback port, with its own PostgreSQL schema
and control topic (tests/integration/test_api_*.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.jobs import stop

ROOT = Path(__file__).resolve().parents[2]
WRITE_TOKEN = "w-" + uuid.uuid4().hex  # fresh per run: the log check looks for these exact strings
READ_TOKEN = "r-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    url: str
    schema: str
    topic: str
    log: Path
    process: subprocess.Popen[bytes]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = WRITE_TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body or text) of one request."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until(cond: Any, what: str, api: Api | None = None, bound_s: float = 30.0) -> Any:
    """Poll `cond()` until it is truthy; fail with the API's log when it never is."""
    deadline = time.monotonic() + bound_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not seen within {bound_s:g}s: {what}\n" + (api.output()[-3000:] if api else "")
            )
        time.sleep(0.2)


@contextlib.contextmanager
def running_api(kafka_bootstrap: str, pg_dsn: str, topic: str, tmp: Path, **env: str) -> Iterator[Api]:
    """Start `python -m connectors.api`; stop it and drop its schema afterwards."""
    port = free_port()
    schema = "t_api_" + uuid.uuid4().hex[:10]
    log = tmp / f"api-{port}.log"
    full_env: Mapping[str, str] = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PG_DSN": pg_dsn,
        "PG_SCHEMA": schema,
        "CONTROL_TOPIC": topic,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_TOKENS": f"ops:write:{WRITE_TOKEN},viewer:read:{READ_TOKEN}",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "connectors.api"], cwd=ROOT, env=dict(full_env), stdout=out, stderr=out
        )
    api = Api(f"http://127.0.0.1:{port}", schema, topic, log, process)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the API exited ({process.returncode}):\n{api.output()}")
            with contextlib.suppress(OSError):
                return api.request("GET", "/readyz", token=None)[0] == 200
            return False

        wait_until(ready, "the API ready", api, 60)
        yield api
    finally:
        stop(process)
        with contextlib.suppress(Exception):
            drop_schema(pg_dsn, schema)


def psql(pg_dsn: str, sql: str, *args: Any) -> list[Any]:
    """Run one statement with asyncpg (parameters as $n); the rows."""
    import asyncio

    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def drop_schema(pg_dsn: str, schema: str) -> None:
    psql(pg_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def insert_event(
    pg_dsn: str,
    schema: str,
    *,
    fingerprint: str,
    alert_name: str,
    state: str,
    labels: Mapping[str, str],
    at: str = "now",
    active_at: str | None = None,
    message_id: str | None = None,
    severity: str = "critical",
) -> None:
    """One alert_events row, as the storage flow writes it (times as SQL expressions of now())."""
    when = "now()" if at == "now" else f"now() - interval '{at}'"
    active = when if active_at is None else f"now() - interval '{active_at}'"
    psql(
        pg_dsn,
        f'INSERT INTO "{schema}".alert_events (message_id, fingerprint, alert_name, state, at, active_at,'
        f" labels, annotations, severity) VALUES ($1, $2, $3, $4, {when}, {active}, $5::text::jsonb,"
        ' \'{"summary": "s"}\', $6)',
        message_id or uuid.uuid4().hex,
        fingerprint,
        alert_name,
        state,
        json.dumps({"alertname": alert_name, **labels}),
        severity,
    )


def amtool(api: Api, tmp: Path, *args: str) -> str:
    """Debian's amtool against the API, authenticated by an http config file (never on the command line)."""
    path = shutil.which("amtool")
    assert path, "amtool missing: deploy/local/alertmanager.sh install"
    config = tmp / "amtool-http.yml"
    config.write_text(f"authorization:\n  type: Bearer\n  credentials: {WRITE_TOKEN}\n")
    r = subprocess.run(
        [path, f"--alertmanager.url={api.url}", f"--http.config.file={config}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, f"amtool {' '.join(args)}: {r.stderr}\n{api.output()[-2000:]}"
    return r.stdout
