"""The storage connectors' DDL and statements, read from `schemas/sql/` (PostgreSQL /
TimescaleDB) and `schemas/clickhouse/` rather than kept as strings in the code, so a DBA
reads and reviews them as SQL.

A file names what varies with `{{name}}` placeholders (`{{schema}}`, `{{ttl_days}}`, ...);
`render` fills every one of them and refuses a missing or an unexpected value, so a typo
cannot send a statement with a placeholder left in it. Values are pasted verbatim: callers
pass quoted identifiers (`qident`), SQL literals or integers, never raw configuration text.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final

from connectors.errors import ConnectorError

# Next to connectors/, as connectors/kafka/serde.py reads the Avro schemas (deploy/Containerfile
# copies schemas/ into the image).
SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "schemas"

_PLACEHOLDER: Final = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class SchemaFileError(ConnectorError):
    """A schema file is missing, or a placeholder of it has no value (a bug or a broken install)."""


@functools.cache
def read(name: str) -> str:
    """The text of `schemas/{name}` (e.g. `sql/alert_events.sql`), read once per process."""
    path = SCHEMA_DIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaFileError(
            f"cannot read {path}: {exc.strerror or exc}; the storage connectors need the repository's"
            " schemas/ folder beside connectors/ (deploy/Containerfile copies it)"
        ) from None


def placeholders(name: str) -> set[str]:
    """The placeholder names a file uses."""
    return set(_PLACEHOLDER.findall(read(name)))


def render(name: str, **values: str | int) -> str:
    """`schemas/{name}` with every `{{placeholder}}` replaced by its value."""
    text = read(name)
    wanted = placeholders(name)
    missing, unexpected = wanted - set(values), set(values) - wanted
    if missing or unexpected:
        raise SchemaFileError(
            f"schemas/{name}: placeholders without a value: {sorted(missing)},"
            f" values without a placeholder: {sorted(unexpected)}"
        )
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
