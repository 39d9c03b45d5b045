"""Configuration from environment variables, validated once at start.

Every problem is reported, one line each, before anything connects: a pod with three
typos fails once with three lines, not three times in a crash loop. The README has the
table of variables; `ENV_VARS` below is its source.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from connectors.errors import ConnectorError

DEFAULT_METRIC_TOPICS = r"^gds\.metrics\.(?!dlq$).+"
SAMPLE_PATH = Path(__file__).resolve().parent.parent / "flows" / "sample" / "metrics.jsonl"
BUNDLED_RULES = Path(__file__).resolve().parent.parent / "rules" / "bundled"
CHDB_PATH = Path(__file__).resolve().parent.parent / ".local" / "chdb"
RECOVERY_PATH = Path(__file__).resolve().parent.parent / ".local" / "recovery"

# name -> (default, description); the README table mirrors this.
ENV_VARS: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": (
        "",
        "Kafka brokers `host:port,...`. Unset: replay the bundled sample and exit.",
    ),
    "METRIC_TOPICS": (
        DEFAULT_METRIC_TOPICS,
        "Regex (leading `^`) or comma list of metric topics to consume.",
    ),
    "KAFKA_START": ("earliest", "Where a first start (no recovery state) begins: `earliest` or `latest`."),
    "KAFKA_TAIL": ("true", "`false`: stop at the end of the topics (bounded run, flushes all windows)."),
    "KAFKA_EXTRA_CONFIG": ("", "Extra librdkafka settings `key=value;key=value` (security, etc.)."),
    "INPUT_FORMAT": ("auto", "`json`, `avro` (Confluent wire format) or `auto` (by first byte)."),
    "SCHEMA_REGISTRY_URL": ("", "Schema registry URL; required for `avro`/`auto` with Avro data."),
    "DLQ_TOPIC": ("gds.metrics.dlq", "Dead-letter topic for messages that cannot be decoded."),
    "ALERTS_TOPIC": ("alerts", "Every alert transition is produced here (JSON)."),
    "ALERTS_DLQ_TOPIC": ("gds.alerts.dlq", "Notifications that could not be delivered."),
    "RULES_PATH": (str(BUNDLED_RULES), "Rule files or directories, comma separated."),
    "SAMPLE_PATH": (str(SAMPLE_PATH), "JSONL replayed when no Kafka is configured."),
    "NOTIFY_URL": ("", "Notification service base URL (`POST {NOTIFY_URL}/alerts`). Unset: print."),
    "NOTIFY_TIMEOUT_S": ("5", "Per-request timeout in seconds."),
    "NOTIFY_MAX_IN_FLIGHT": ("8", "Concurrent notification requests per worker."),
    "NOTIFY_MAX_ATTEMPTS": ("10", "Attempts before a notification goes to ALERTS_DLQ_TOPIC."),
    "NOTIFY_DEADLINE_S": ("120", "Retry budget per notification (s); then it goes to ALERTS_DLQ_TOPIC."),
    "NOTIFY_BREAKER_COOLDOWN_S": ("10", "How long the circuit stays open after repeated failures (s)."),
    "REDIS_URL": ("", "Redis for `maintenance:{instance_id}` keys and latest values."),
    "PG_DSN": ("", "PostgreSQL / TimescaleDB DSN (storage flow)."),
    "CLICKHOUSE_URL": ("", "ClickHouse server URL (rollups); unset: embedded chdb."),
    "ALERT_SHARDS": ("64", "Key-space shards of the alert state (>= total workers)."),
    "MAX_FUTURE_S": ("600", "Messages stamped further than this in the future go to the DLQ."),
    "PG_SCHEMA": ("public", "PostgreSQL schema of `metrics_hot` and `alert_events` (storage flow)."),
    "PG_BATCH_ROWS": ("5000", "Rows per COPY + INSERT transaction (storage flow)."),
    "PG_RETENTION_DAYS": ("30", "Days of raw samples kept in `metrics_hot`."),
    "PG_COMPRESS_AFTER_DAYS": ("2", "TimescaleDB only: compress `metrics_hot` chunks older than this."),
    "REDIS_LATEST_TTL_S": ("86400", "TTL of the `latest:*` keys (s)."),
    "STORAGE_RETRY_DEADLINE_S": (
        "600",
        "How long a storage sink retries one batch through an outage before it stops the flow (s).",
    ),
    "CLICKHOUSE_PATH": (str(CHDB_PATH), "Data directory of the embedded chdb engine (no CLICKHOUSE_URL)."),
    "CLICKHOUSE_DATABASE": ("gds", "ClickHouse database of the rollup tables."),
    "ROLLUP_LATENESS_S": ("60", "Rollups: a window closes this long after its end (event time)."),
    "ROLLUP_TTL_DAYS": ("30,180,730", "TTL of `metrics_1m`, `metrics_5m`, `metrics_1h` (days)."),
    "AGGREGATED_TOPIC": ("metrics-aggregated", "Rollups are also produced here (JSON)."),
    "RECOVERY_DIR": (
        str(RECOVERY_PATH),
        "A tailing Kafka job run without `-r` snapshots its state and offsets under `{RECOVERY_DIR}/{job}` "
        "(initialised on first start) and resumes from there; `off`: no recovery (a restart re-reads "
        "from KAFKA_START and re-posts).",
    ),
    "RECOVERY_SNAPSHOT_S": ("10", "Snapshot interval of that default recovery (s); also Bytewax's epoch."),
}


# `scheme://user:password@host`: keep the user (it helps), hide the password
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'\"]*):[^/@\s'\"]*@")
# `password=...` in a DSN or query string, `sasl.password=...` in KAFKA_EXTRA_CONFIG, tokens
_KEY_SECRET = re.compile(
    r"(?P<key>[\w.-]*(?:password|passwd|pwd|secret|token|api[_.-]?key)[\w.-]*)(?P<eq>\s*=\s*)[^\s&;,'\"]+",
    re.IGNORECASE,
)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the credentials of any URL or `key=value` secret replaced by `***`.

    Configuration errors quote the value they reject, and those land in pod logs: a typo in
    the scheme of `NOTIFY_URL` must not publish its password.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return _KEY_SECRET.sub(lambda m: f"{m['key']}{m['eq']}{REDACTED}", text)


class ConfigError(ConnectorError):
    """Every configuration problem, one line each, with credentials redacted."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [redact(p) for p in problems]
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap: tuple[str, ...] = ()
    metric_topics: str = DEFAULT_METRIC_TOPICS
    kafka_start: str = "earliest"
    kafka_extra: Mapping[str, str] = field(default_factory=dict)
    kafka_tail: bool = True
    input_format: str = "auto"
    schema_registry_url: str = ""
    dlq_topic: str = "gds.metrics.dlq"
    alerts_topic: str = "alerts"
    alerts_dlq_topic: str = "gds.alerts.dlq"
    rules_paths: tuple[Path, ...] = (BUNDLED_RULES,)
    sample_path: Path = SAMPLE_PATH
    notify_url: str = ""
    notify_timeout_s: float = 5.0
    notify_max_in_flight: int = 8
    notify_max_attempts: int = 10
    notify_deadline_s: float = 120.0
    notify_breaker_cooldown_s: float = 10.0
    redis_url: str = ""
    pg_dsn: str = ""
    clickhouse_url: str = ""
    shards: int = 64
    max_future_s: float = 600.0
    pg_schema: str = "public"
    pg_batch_rows: int = 5000
    pg_retention_days: int = 30
    pg_compress_after_days: int = 2
    redis_latest_ttl_s: int = 86400
    storage_retry_deadline_s: float = 600.0
    clickhouse_path: Path = CHDB_PATH
    clickhouse_database: str = "gds"
    rollup_lateness_s: float = 60.0
    rollup_ttl_days: tuple[int, int, int] = (30, 180, 730)
    aggregated_topic: str = "metrics-aggregated"
    recovery_dir: Path | None = RECOVERY_PATH
    recovery_snapshot_s: float = 10.0

    @property
    def embedded(self) -> bool:
        """No Kafka configured: replay the bundled sample and exit."""
        return not self.bootstrap

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> Settings:
        return parse(dict(os.environ) if env is None else env)


def _url(problems: list[str], name: str, value: str, schemes: tuple[str, ...]) -> str:
    if not value:
        return ""
    u = urlparse(value)
    if u.scheme not in schemes or not (u.netloc or u.scheme == "mock"):
        problems.append(f"{name}={redact(value)!r}: expected a URL with scheme {' or '.join(schemes)}")
    return value.rstrip("/")


def _number(problems: list[str], env: Mapping[str, str], name: str, cast: type, low: float) -> float:
    """A finite number > 0 and >= `low`: `nan`, `inf`, 0 and negatives are refused for every
    setting (a `nan` timeout or deadline silently disables what it bounds)."""
    raw = (env.get(name) or "").strip() or ENV_VARS[name][0]
    default = cast(ENV_VARS[name][0])
    try:
        value = cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        problems.append(f"{name}={raw!r}: not {kind}")
        return default
    if not math.isfinite(value):
        problems.append(f"{name}={raw!r}: must be a finite number")
        return default
    if value <= 0:
        problems.append(f"{name}={raw!r}: must be > 0")
        return default
    if value < low:
        problems.append(f"{name}={raw!r}: must be >= {low:g}")
    return value


def rules_paths(env: Mapping[str, str]) -> tuple[Path, ...]:
    """RULES_PATH as paths (also read on its own, to report rule problems with bad settings)."""
    raw = env.get("RULES_PATH", "").strip() or ENV_VARS["RULES_PATH"][0]
    return tuple(Path(p.strip()) for p in raw.split(",") if p.strip())


_QUIET = logging.getLogger("connectors.config.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # librdkafka's warnings about the throwaway client are not news


def kafka_config_problems(extra: Mapping[str, str]) -> list[str]:
    """One line per KAFKA_EXTRA_CONFIG entry librdkafka refuses (unknown key, bad value).

    Checked by building a throwaway client that connects to nothing: the flows' own
    clients are built later, inside Bytewax, where the same error is a traceback.
    """
    from confluent_kafka import KafkaException, Producer

    def refused(config: Mapping[str, str]) -> str | None:
        try:
            Producer({"bootstrap.servers": "", "logger": _QUIET, **config})
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            return str(err.str() if hasattr(err, "str") else err)
        return None

    if not extra or refused(extra) is None:
        return []
    problems = []
    for key, value in extra.items():
        reason = refused({key: value})
        if reason is not None:
            problems.append(f"KAFKA_EXTRA_CONFIG: {key}: {reason}")  # values may be secrets
    return problems or [f"KAFKA_EXTRA_CONFIG: {refused(extra)}"]


def parse(env: Mapping[str, str]) -> Settings:
    problems: list[str] = []

    def get(name: str) -> str:
        return env.get(name, "").strip() or ENV_VARS[name][0]

    bootstrap = tuple(b.strip() for b in env.get("KAFKA_BOOTSTRAP_SERVERS", "").split(",") if b.strip())
    for b in bootstrap:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"KAFKA_BOOTSTRAP_SERVERS: {b!r} is not host:port")
    topics = get("METRIC_TOPICS")
    if topics.startswith("^"):
        try:
            re.compile(topics)
        except re.error as exc:
            problems.append(f"METRIC_TOPICS={topics!r}: bad regular expression: {exc}")
    start = get("KAFKA_START")
    if start not in ("earliest", "latest"):
        problems.append(f"KAFKA_START={start!r}: expected earliest or latest")
    tail = get("KAFKA_TAIL").lower()
    if tail not in ("true", "false", "1", "0", "yes", "no"):
        problems.append(f"KAFKA_TAIL={tail!r}: expected true or false")
    extra: dict[str, str] = {}
    items = filter(None, (s.strip() for s in env.get("KAFKA_EXTRA_CONFIG", "").split(";")))
    for n, item in enumerate(items, 1):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():  # not echoed: it may be a password without its key
            problems.append(f"KAFKA_EXTRA_CONFIG: entry {n} is not key=value (entries are ;-separated)")
        else:
            extra[k.strip()] = v.strip()
    problems += kafka_config_problems(extra)
    fmt = get("INPUT_FORMAT")
    if fmt not in ("json", "avro", "auto"):
        problems.append(f"INPUT_FORMAT={fmt!r}: expected json, avro or auto")
    registry = _url(
        problems, "SCHEMA_REGISTRY_URL", env.get("SCHEMA_REGISTRY_URL", ""), ("http", "https", "mock")
    )
    if fmt == "avro" and not registry:
        problems.append("INPUT_FORMAT=avro needs SCHEMA_REGISTRY_URL")
    rules = rules_paths(env)
    for p in rules:
        if not p.exists():
            problems.append(f"RULES_PATH: {str(p)!r} does not exist")
    sample = Path(get("SAMPLE_PATH"))
    if not bootstrap and not sample.is_file():
        problems.append(
            f"SAMPLE_PATH: {str(sample)!r} is not a file (needed when KAFKA_BOOTSTRAP_SERVERS is unset)"
        )
    for name in ("DLQ_TOPIC", "ALERTS_TOPIC", "ALERTS_DLQ_TOPIC", "AGGREGATED_TOPIC"):
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", get(name)):
            problems.append(f"{name}={get(name)!r}: not a valid Kafka topic name")
    settings = Settings(
        bootstrap=bootstrap,
        metric_topics=topics,
        kafka_start=start,
        kafka_extra=extra,
        kafka_tail=tail in ("true", "1", "yes"),
        input_format=fmt,
        schema_registry_url=registry,
        dlq_topic=get("DLQ_TOPIC"),
        alerts_topic=get("ALERTS_TOPIC"),
        alerts_dlq_topic=get("ALERTS_DLQ_TOPIC"),
        rules_paths=rules,
        sample_path=sample,
        notify_url=_url(problems, "NOTIFY_URL", env.get("NOTIFY_URL", ""), ("http", "https")),
        notify_timeout_s=_number(problems, env, "NOTIFY_TIMEOUT_S", float, 0.01),
        notify_max_in_flight=int(_number(problems, env, "NOTIFY_MAX_IN_FLIGHT", int, 1)),
        notify_max_attempts=int(_number(problems, env, "NOTIFY_MAX_ATTEMPTS", int, 1)),
        notify_deadline_s=_number(problems, env, "NOTIFY_DEADLINE_S", float, 0.1),
        notify_breaker_cooldown_s=_number(problems, env, "NOTIFY_BREAKER_COOLDOWN_S", float, 0),
        redis_url=_url(problems, "REDIS_URL", env.get("REDIS_URL", ""), ("redis", "rediss", "unix")),
        pg_dsn=_url(problems, "PG_DSN", env.get("PG_DSN", ""), ("postgresql", "postgres")),
        clickhouse_url=_url(problems, "CLICKHOUSE_URL", env.get("CLICKHOUSE_URL", ""), ("http", "https")),
        shards=int(_number(problems, env, "ALERT_SHARDS", int, 1)),
        max_future_s=_number(problems, env, "MAX_FUTURE_S", float, 0),
        recovery_dir=None
        if get("RECOVERY_DIR").lower() in ("off", "none", "false")
        else Path(get("RECOVERY_DIR")),
        recovery_snapshot_s=_number(problems, env, "RECOVERY_SNAPSHOT_S", float, 0.1),
        **_storage_settings(problems, env, get),
    )
    if problems:
        raise ConfigError(problems)
    return settings


def _storage_settings(
    problems: list[str], env: Mapping[str, str], get: Callable[[str], str]
) -> dict[str, Any]:
    """The storage and rollup flows' variables (PG_*, REDIS_LATEST_TTL_S, CLICKHOUSE_*, ROLLUP_*)."""
    schema = get("PG_SCHEMA")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        problems.append(f"PG_SCHEMA={schema!r}: expected a plain identifier (letters, digits, _)")
    database = get("CLICKHOUSE_DATABASE")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", database):
        problems.append(f"CLICKHOUSE_DATABASE={database!r}: expected a plain identifier (letters, digits, _)")
    ttl_raw = get("ROLLUP_TTL_DAYS")
    ttl: tuple[int, int, int] = (30, 180, 730)
    try:
        parts = tuple(int(x) for x in ttl_raw.split(","))
        if len(parts) != 3 or min(parts) < 1:
            raise ValueError
        ttl = (parts[0], parts[1], parts[2])
    except ValueError:
        problems.append(f"ROLLUP_TTL_DAYS={ttl_raw!r}: expected three day counts >= 1, e.g. 30,180,730")
    return {
        "pg_schema": schema,
        "pg_batch_rows": int(_number(problems, env, "PG_BATCH_ROWS", int, 1)),
        "pg_retention_days": int(_number(problems, env, "PG_RETENTION_DAYS", int, 1)),
        "pg_compress_after_days": int(_number(problems, env, "PG_COMPRESS_AFTER_DAYS", int, 1)),
        "redis_latest_ttl_s": int(_number(problems, env, "REDIS_LATEST_TTL_S", int, 1)),
        "storage_retry_deadline_s": _number(problems, env, "STORAGE_RETRY_DEADLINE_S", float, 1),
        "clickhouse_path": Path(get("CLICKHOUSE_PATH")),
        "clickhouse_database": database,
        "rollup_lateness_s": _number(problems, env, "ROLLUP_LATENESS_S", float, 0),
        "rollup_ttl_days": ttl,
        "aggregated_topic": get("AGGREGATED_TOPIC"),
    }
