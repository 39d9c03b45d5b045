"""connectors.storage.sqlfiles: the storage DDL lives in schemas/sql/ and schemas/clickhouse/,
is read by the code, and every placeholder is filled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.storage import clickhouse, timescale
from connectors.storage.sqlfiles import SCHEMA_DIR, SchemaFileError, placeholders, render
from rules.rollup.windows import DEFAULT_RESOLUTIONS

ROOT = Path(__file__).resolve().parents[4]
STORAGE = ROOT / "connectors" / "storage"
SQL_FILES = sorted(p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.glob("*/*.sql"))


def test_the_storage_code_holds_no_ddl() -> None:
    """DDL and the write statements are files a DBA reviews, not strings in the code."""
    # DDL, and the idempotent moves out of the staging tables (ON CONFLICT); chdb's generic
    # `INSERT INTO t (...) FORMAT ...` of a data body is not a statement of the schema
    ddl = re.compile(
        r"\b(CREATE (TABLE|TEMP TABLE|INDEX|DATABASE|OR REPLACE FUNCTION)|ALTER TABLE|ON CONFLICT \()"
    )
    found = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted(STORAGE.glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if ddl.search(line)
    ]
    assert found == []


def test_every_schema_file_is_read_by_the_code() -> None:
    # the storage connectors and the control-plane API (control_audit) read the DDL files
    code = "\n".join(p.read_text() for d in (STORAGE, STORAGE.parent / "api") for p in d.glob("*.py"))
    assert {"sql/alert_events.sql", "clickhouse/rollup_table.sql"} <= set(SQL_FILES)
    unused = [f for f in SQL_FILES if Path(f).stem not in code]
    assert unused == []


@pytest.mark.parametrize("schema", ["public", "odd \"name\" with 'quotes'"])
def test_every_postgresql_statement_renders_for_any_schema_name(schema: str) -> None:
    for file in (f for f in SQL_FILES if f.startswith("sql/")):
        name = Path(file).stem
        if name == "metrics_hot_columns":  # a fragment, pasted into the two CREATE TABLEs
            continue
        values = {"compress_after_days": 2, "retention_days": 30} if "policies" in name else {}
        text = timescale._sql(name, schema, **values)
        assert "{{" not in text and "}}" not in text, file
        if "schema" in placeholders(file):
            assert timescale.qident(schema) in text


def test_the_migration_names_the_quoted_schema() -> None:
    sql = timescale.migrate_series_id("gds")
    assert sql.splitlines()[0] == 'ALTER TABLE "gds".metrics_hot ADD COLUMN IF NOT EXISTS series_id uuid;'
    assert sql.rstrip().endswith('ALTER TABLE "gds".metrics_hot ADD PRIMARY KEY (series_id, time);')


def test_rollup_tables_carry_their_ttl_and_partitioning() -> None:
    one_minute, _, one_hour = DEFAULT_RESOLUTIONS
    ddl = clickhouse.rollup_ddl("gds", one_minute, 30)
    assert "CREATE TABLE IF NOT EXISTS gds.metrics_1m (" in ddl
    assert "PARTITION BY toYYYYMMDD(window_start)" in ddl
    assert "TTL window_start + INTERVAL 30 DAY" in ddl
    assert "PARTITION BY toYYYYMM(window_start)" in clickhouse.rollup_ddl("gds", one_hour, 730)


def test_a_placeholder_without_a_value_or_a_value_without_a_placeholder_is_refused() -> None:
    with pytest.raises(SchemaFileError, match=r"without a value: \['schema'\]"):
        render("sql/alert_events.sql")
    with pytest.raises(SchemaFileError, match=r"values without a placeholder: \['shema'\]"):
        render("sql/alert_events.sql", schema='"gds"', shema="gds")


def test_a_missing_file_says_where_the_schemas_are_expected() -> None:
    with pytest.raises(SchemaFileError, match="schemas/ folder beside connectors/"):
        render("sql/no_such_file.sql")
