"""docs/storage.md's SQL, run as written on the bundled sample (so the page cannot rot).

Every ```sql block of the page is split into statements; DDL is skipped, queries on
`gds.metrics_*` run in embedded ClickHouse (chdb) after `flows.rollups` replayed the sample,
the others in PostgreSQL after the storage flow wrote the sample and its alert transitions.
Each must return rows. The rollups run in a subprocess with the variables of the page's
"Loading history" block: chdb allows one data directory per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.kafka.replay import FileSource
from connectors.kafka.serde import make_decoder
from connectors.storage.retry import STORAGE_RETRY
from connectors.storage.timescale import AlertEventsSink, MetricsHotSink, PgConfig
from flows import backtest
from flows.storage import StorageOutputs, build_flow
from rules.loader import BUNDLED, load_rules

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "storage.md"
SAMPLE = ROOT / "flows" / "sample" / "metrics.jsonl"


def sql_statements(markdown: str) -> list[str]:
    """The queries of every ```sql block (comments stripped, DDL left out)."""
    out = []
    for block in re.findall(r"```sql\n(.*?)```", markdown, re.S):
        for chunk in block.split(";"):
            code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
            if code and not code.upper().startswith(("CREATE", "ALTER", "DROP")):
                out.append(code)
    return out


def history_env(markdown: str) -> dict[str, str]:
    """The variables of the page's `export ...` line (the historical-load settings)."""
    (line,) = [ln for ln in markdown.splitlines() if ln.startswith("export ") and "ROLLUP_TTL_DAYS" in ln]
    return dict(item.split("=", 1) for item in shlex.split(line)[1:])


def is_clickhouse(sql: str) -> bool:
    return "gds.metrics_" in sql


def pg_fetch(dsn: str, schema: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture()
def schema(pg_dsn: str) -> Iterator[str]:
    name = f"test_docs_{uuid.uuid4().hex[:10]}"
    yield name
    pg_fetch(pg_dsn, "public", f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_the_page_has_queries_for_both_stores() -> None:
    stmts = sql_statements(DOC.read_text())
    assert sum(map(is_clickhouse, stmts)) >= 2
    assert sum(not is_clickhouse(s) for s in stmts) >= 4
    assert all("now()" not in s for s in stmts), "write the examples relative to the data (max(time))"


def test_postgresql_queries_return_rows_on_the_sample(pg_dsn: str, schema: str) -> None:
    env = history_env(DOC.read_text())
    cfg = PgConfig(
        pg_dsn,
        schema=schema,
        retention_days=int(env["PG_RETENTION_DAYS"]),
        retry=replace(STORAGE_RETRY, deadline_s=60.0),
    )
    # the alerts topic carries every transition of the sample's incident
    records, _ = backtest.run(load_rules([BUNDLED]), [SAMPLE], all_states=True)
    alerts = [
        KafkaSourceMessage(str(r["fingerprint"]).encode(), json.dumps(r).encode(), topic="alerts", offset=i)
        for i, r in enumerate(records)
    ]
    dlq: list[Any] = []
    flow = build_flow(
        FileSource([SAMPLE]),
        StorageOutputs(MetricsHotSink(cfg), AlertEventsSink(cfg), TestingSink(dlq)),
        make_decoder("json", max_future_s=float("inf")),
        alerts_source=TestingSource(alerts),
        wall=None,
    )
    run_main(flow)
    assert dlq == []
    empty = []
    for sql in sql_statements(DOC.read_text()):
        if not is_clickhouse(sql) and not pg_fetch(pg_dsn, schema, sql):
            empty.append(sql)
    assert empty == [], "queries of docs/storage.md that return nothing on the sample"


CH_QUERIES = """
import json, sys
from connectors.storage.clickhouse import EmbeddedClickHouse
ch = EmbeddedClickHouse(sys.argv[1])
print(json.dumps([len(ch.query(q)) for q in json.load(sys.stdin)]))
ch.close()
"""


def test_clickhouse_queries_return_rows_on_the_sample(tmp_path: Path) -> None:
    doc = DOC.read_text()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # replay the sample
    env.update(history_env(doc))
    env.update({"CLICKHOUSE_PATH": str(tmp_path / "chdb"), "METRICS_PORT": "0", "SAMPLE_PATH": str(SAMPLE)})
    env.pop("CLICKHOUSE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.rollups"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    queries = [q for q in sql_statements(doc) if is_clickhouse(q)]
    got = subprocess.run(
        [sys.executable, "-c", CH_QUERIES, str(tmp_path / "chdb")],
        cwd=ROOT,
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr[-3000:]
    counts = json.loads(got.stdout.strip().splitlines()[-1])
    assert [q for q, n in zip(queries, counts, strict=True) if n == 0] == []
