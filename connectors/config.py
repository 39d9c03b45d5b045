"""The settings of every job: one typed model, read from environment variables, checked once at start.

Sections (one class each, one default and one description per variable): `kafka`, `rules`,
`notify`, `storage`, `monitoring`, `collect`, `api`, `gateway`. A job composes the sections it
reads: `Settings` (alerting, storage and rollup jobs: kafka + rules + notify + storage), `MonitoringSettings`
(every live job, beside it), `CollectJobSettings` (the collector: kafka + collect) and
`ApiJobSettings` (the control-plane API: kafka + storage + api) and `GatewayJobSettings`
(the metrics gateway: kafka + gateway).

Every problem is reported, one line each, before anything connects: a pod with three typos
fails once with three lines, not three times in a crash loop. The README's configuration table
is generated from these classes: `python -m connectors.config --markdown`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from connectors.errors import ConnectorError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_METRIC_TOPICS = r"^gds\.metrics\.(?!dlq$).+"
SAMPLE_PATH = ROOT / "flows" / "sample" / "metrics.jsonl"
BUNDLED_RULES = ROOT / "rules" / "bundled"
CHDB_PATH = ROOT / ".local" / "chdb"
RECOVERY_PATH = ROOT / ".local" / "recovery"
SPOOL_PATH = ROOT / ".local" / "spool"
DEFAULT_TARGETS = ROOT / "deploy" / "local" / "targets.yml"

# -- redaction and the error ----------------------------------------------------------------

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


def _problem(*lines: str) -> PydanticCustomError:
    """A rejected value: each line is what follows the variable's name (`='x': not a number`)."""
    return PydanticCustomError("gds_config", "{text}", {"lines": lines, "text": "; ".join(lines)})


def _problems(exc: ValidationError, model: type[BaseSettings]) -> list[str]:
    """pydantic's errors as our lines: `NAME<what follows>`, one per problem."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = str(err["loc"][0]) if err["loc"] else ""
        field = model.model_fields.get(loc)
        name = str(field.validation_alias) if field is not None and field.validation_alias else loc
        lines = (err.get("ctx") or {}).get("lines")
        if lines is None:  # pydantic's own (a value of the wrong type passed in code)
            out.append(f"{name}: {err['msg']}")
        else:
            out.extend(f"{name}{line}" for line in lines)
    return out


# -- the environment, injectable for tests -----------------------------------------------------

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("gds_environ", default=None)


@contextlib.contextmanager
def _reading(env: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(env)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _environ() -> dict[str, str]:
    """The environment being read, blank values dropped (blank means: the default)."""
    env = _ENVIRON.get()
    return {k: v.strip() for k, v in (env or {}).items() if isinstance(v, str) and v.strip()}


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping `from_env` was given.

    Only `from_env` reads an environment: `Settings()` alone is the defaults, like a dataclass.
    """

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(_environ(), self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _peek(section: type[BaseSettings], name: str) -> Any:
    """Another variable's value for a check across variables; None when it is itself invalid
    (its own problem is reported by its section)."""
    field = section.model_fields[name]
    raw = _environ().get(str(field.validation_alias))
    if raw is None:
        return field.default
    try:
        kind: Any = Annotated[field.annotation, *field.metadata]  # the field's type with its parser
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError:
        return None


# -- value parsers (`BeforeValidator`s: the environment gives strings, code may give values) -----


def _number(
    low: float, *, integer: bool = False, zero_ok: bool = False, high: float | None = None, hint: str = ""
) -> BeforeValidator:
    """A finite number >= `low` and > 0 (`zero_ok`: 0 too, it turns something off): `nan`, `inf`
    and negatives are refused for every setting (a `nan` timeout silently disables what it bounds)."""

    def parse(raw: Any) -> float:
        try:
            value = int(raw) if integer else float(raw)
        except (TypeError, ValueError):
            raise _problem(f"={raw!r}: not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value):
            raise _problem(f"={raw!r}: must be a finite number")
        if zero_ok and value == 0:
            return value
        if value < low:
            raise _problem(f"={raw!r}: must be >= {low:g}{hint}")
        if value <= 0:
            raise _problem(f"={raw!r}: must be > 0")
        if high is not None and value > high:
            raise _problem(f"={value:g}: must be <= {high:g}{hint}")
        return value

    return BeforeValidator(parse)


def _choice(*allowed: str, lower: bool = False) -> BeforeValidator:
    def parse(raw: Any) -> str:
        value = str(raw).lower() if lower else str(raw)
        if value not in allowed:
            raise _problem(f"={value!r}: expected {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    return BeforeValidator(parse)


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise _problem(f"={value!r}: expected true or false")
    return value in ("true", "1", "yes")


def _url(*schemes: str) -> BeforeValidator:
    def parse(raw: Any) -> str:
        value = str(raw)
        if not value:
            return ""
        u = urlparse(value)
        if u.scheme not in schemes or not (u.netloc or u.scheme == "mock"):
            raise _problem(f"={redact(value)!r}: expected a URL with scheme {' or '.join(schemes)}")
        return value.rstrip("/")

    return BeforeValidator(parse)


def _bootstrap(raw: Any) -> tuple[str, ...]:
    servers = tuple(b.strip() for b in raw.split(",") if b.strip()) if isinstance(raw, str) else tuple(raw)
    bad = []
    for b in servers:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            bad.append(f": {b!r} is not host:port")
    if bad:
        raise _problem(*bad)
    return servers


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


def _kafka_extra(raw: Any) -> dict[str, str]:
    if not isinstance(raw, str):
        return dict(raw)
    extra: dict[str, str] = {}
    bad: list[str] = []
    for n, item in enumerate(filter(None, (s.strip() for s in raw.split(";"))), 1):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():  # not echoed: it may be a password without its key
            bad.append(f": entry {n} is not key=value (entries are ;-separated)")
        else:
            extra[k.strip()] = v.strip()
    bad += [p.removeprefix("KAFKA_EXTRA_CONFIG") for p in kafka_config_problems(extra)]
    if bad:
        raise _problem(*bad)
    return extra


def _topic(raw: Any) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", str(raw)):
        raise _problem(f"={raw!r}: not a valid Kafka topic name")
    return str(raw)


def _optional_topic(raw: Any) -> str:
    """A topic name, or `off` / empty for none."""
    if raw is None or str(raw).strip().lower() in ("", "off", "none"):
        return ""
    return _topic(str(raw).strip())


def _identifier(raw: Any) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", str(raw)):
        raise _problem(f"={raw!r}: expected a plain identifier (letters, digits, _)")
    return str(raw)


def _paths(raw: Any) -> tuple[Path, ...]:
    if isinstance(raw, str):
        return tuple(Path(p.strip()) for p in raw.split(",") if p.strip())
    return tuple(Path(p) for p in raw)


def _recovery_dir(raw: Any) -> Path | None:
    if raw is None or str(raw).lower() in ("off", "none", "false"):
        return None
    return Path(raw)


def _ttl_days(raw: Any) -> tuple[int, int, int]:
    try:
        parts = tuple(int(x) for x in raw.split(",")) if isinstance(raw, str) else tuple(int(x) for x in raw)
        if len(parts) != 3 or min(parts) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise _problem(f"={raw!r}: expected three day counts >= 1, e.g. 30,180,730") from None
    return (parts[0], parts[1], parts[2])


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")


def _host(raw: Any) -> str:
    host = str(raw)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise _problem(f"={host!r}: not an IP address or host name") from None
    return host


def _avro_needs_registry(value: str) -> str:
    """INPUT_FORMAT or OUTPUT_FORMAT: Avro means a schema registry (invalid: reported on its own)."""
    if value == "avro" and _peek(KafkaSettings, "schema_registry_url") == "":
        raise _problem("=avro needs SCHEMA_REGISTRY_URL")
    return value


def _env(name: str, default: Any, description: str) -> Any:
    """A field read from variable `name` (also settable by its Python name in code)."""
    return Field(default, validation_alias=name, description=description)


# -- sections ---------------------------------------------------------------------------------

_Seconds = Annotated[float, _number(0)]
_Count = Annotated[int, _number(1, integer=True)]
_Topic = Annotated[str, BeforeValidator(_topic)]


class Section(BaseSettings):
    """One group of variables; `from_env(env)` reads them (the process environment by default)."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, extra="ignore", populate_by_name=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_problems(exc, type(self))) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environment(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Validated settings; `ConfigError` lists every problem, one line each."""
        with _reading(os.environ if env is None else env):
            return cls()


class KafkaSettings(Section):
    section = "kafka"

    bootstrap: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_bootstrap)] = _env(
        "KAFKA_BOOTSTRAP_SERVERS",
        (),
        "Kafka brokers `host:port,...`. Unset: the alerting job replays the bundled sample and exits, "
        "the collector prints its messages.",
    )
    metric_topics: str = _env(
        "METRIC_TOPICS",
        DEFAULT_METRIC_TOPICS,
        "Regex (leading `^`) or comma list of metric topics to consume.",
    )
    kafka_start: Annotated[str, _choice("earliest", "latest")] = _env(
        "KAFKA_START", "earliest", "Where a first start (no recovery state) begins: `earliest` or `latest`."
    )
    kafka_tail: Annotated[bool, BeforeValidator(_flag)] = _env(
        "KAFKA_TAIL", True, "`false`: stop at the end of the topics (bounded run, flushes all windows)."
    )
    kafka_extra: Annotated[dict[str, str], NoDecode, BeforeValidator(_kafka_extra)] = _env(
        "KAFKA_EXTRA_CONFIG",
        {},
        "Extra librdkafka settings `key=value;key=value` (security, etc.), checked against librdkafka.",
    )
    input_format: Annotated[str, _choice("json", "avro", "auto"), AfterValidator(_avro_needs_registry)] = (
        _env("INPUT_FORMAT", "auto", "`json`, `avro` (Confluent wire format) or `auto` (by first byte).")
    )
    schema_registry_url: Annotated[str, _url("http", "https", "mock")] = _env(
        "SCHEMA_REGISTRY_URL",
        "",
        "Schema registry URL; required for `avro`/`auto` with Avro data and for `OUTPUT_FORMAT=avro`.",
    )
    dlq_topic: _Topic = _env(
        "DLQ_TOPIC", "gds.metrics.dlq", "Dead-letter topic for messages that cannot be decoded."
    )
    alerts_topic: _Topic = _env("ALERTS_TOPIC", "alerts", "Every alert transition is produced here (JSON).")
    alerts_dlq_topic: _Topic = _env(
        "ALERTS_DLQ_TOPIC", "gds.alerts.dlq", "Notifications that could not be delivered."
    )
    control_topic: Annotated[str, BeforeValidator(_optional_topic)] = _env(
        "CONTROL_TOPIC",
        "gds.control",
        "Compacted topic of the control plane (silences, maintenance windows, acknowledgements, "
        "rule-set reloads), read live by the alerting and delivery jobs and written by the API; `off`: none.",
    )
    aggregated_topic: _Topic = _env(
        "AGGREGATED_TOPIC", "metrics-aggregated", "Rollups are also produced here."
    )
    recorded_topic: _Topic = _env(
        "RECORDED_TOPIC",
        "gds.metrics.recorded",
        "Recording rules' output (Prometheus rule groups), in the seed message format; the groups do"
        " not read it back.",
    )
    max_future_s: _Seconds = _env(
        "MAX_FUTURE_S", 600.0, "Messages stamped further than this in the future go to the DLQ."
    )
    sample_path: Path = _env("SAMPLE_PATH", SAMPLE_PATH, "JSONL replayed when no Kafka is configured.")
    recovery_dir: Annotated[Path | None, BeforeValidator(_recovery_dir)] = _env(
        "RECOVERY_DIR",
        RECOVERY_PATH,
        "A tailing Kafka job started without `-r` snapshots state and offsets under `{RECOVERY_DIR}/{job}` "
        "(initialised on first start) and resumes from there; `off`: no recovery (a restart re-reads "
        "from `KAFKA_START` and re-posts).",
    )
    recovery_snapshot_s: Annotated[float, _number(0.1)] = _env(
        "RECOVERY_SNAPSHOT_S",
        10.0,
        "Snapshot interval of that default recovery (s); also Bytewax's epoch length.",
    )
    spool_dir: Path = _env(
        "SPOOL_DIR",
        SPOOL_PATH,
        "Local spool of the collector and the gateway while Kafka is unreachable (`{SPOOL_DIR}/{job}`),"
        " drained in order when it returns.",
    )
    spool_max_bytes: Annotated[int, _number(1 << 20, integer=True)] = _env(
        "SPOOL_MAX_BYTES",
        256 << 20,
        "Most bytes a spool holds (per collector worker); beyond it new samples are refused (gateway: 503)"
        " or dropped and counted (collector: `gds_spool_dropped_total`), never silently.",
    )

    @property
    def embedded(self) -> bool:
        """No Kafka configured: replay the bundled sample and exit."""
        return not self.bootstrap

    @field_validator("metric_topics")
    @classmethod
    def _topics_regex(cls, value: str) -> str:
        if value.startswith("^"):
            try:
                re.compile(value)
            except re.error as exc:
                raise _problem(f"={value!r}: bad regular expression: {exc}") from None
        return value

    @field_validator("sample_path")
    @classmethod
    def _sample_exists(cls, value: Path) -> Path:
        if _peek(KafkaSettings, "bootstrap") == () and not value.is_file():
            raise _problem(f": {str(value)!r} is not a file (needed when KAFKA_BOOTSTRAP_SERVERS is unset)")
        return value


class RulesSettings(Section):
    section = "rules"

    rules_paths: Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_paths)] = _env(
        "RULES_PATH", (BUNDLED_RULES,), "Rule files or directories, comma separated."
    )
    shards: _Count = _env("ALERT_SHARDS", 64, "Key-space shards of the alert state (>= total workers).")
    shard_names: Annotated[str, _choice("balanced", "legacy")] = _env(
        "ALERT_SHARD_NAMES",
        "balanced",
        "Names of those shards, also their recovery keys: `balanced` spreads them evenly over 2-8 "
        "workers; `legacy` keeps the names of recovery stores written before 2026-11-29. A job "
        "refuses to resume a store of the other kind.",
    )
    rules_reload_s: Annotated[float, _number(0, zero_ok=True)] = _env(
        "RULES_RELOAD_S",
        10.0,
        "How often a tailing job looks for changed rule files and loads them without a restart "
        "(SIGHUP: at once); `0`: only on SIGHUP.",
    )

    @field_validator("rules_paths")
    @classmethod
    def _rules_exist(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        missing = [f": {str(p)!r} does not exist" for p in value if not p.exists()]
        if missing:
            raise _problem(*missing)
        return value


class NotifySettings(Section):
    section = "notify"

    notify_url: Annotated[str, _url("http", "https")] = _env(
        "NOTIFY_URL",
        "",
        "Notification service base URL (`POST {NOTIFY_URL}/alerts`), `http://` or `https://` (checked"
        " against SSL_CERT_FILE, else certifi's CAs; `user:password@` goes as Basic auth); HTTP_PROXY /"
        " HTTPS_PROXY / NO_PROXY are honoured. Unset: print.",
    )
    notify_timeout_s: Annotated[float, _number(0.01)] = _env(
        "NOTIFY_TIMEOUT_S", 5.0, "Per-request timeout in seconds."
    )
    notify_max_in_flight: _Count = _env(
        "NOTIFY_MAX_IN_FLIGHT", 8, "Concurrent notification requests per worker."
    )
    notify_max_attempts: _Count = _env(
        "NOTIFY_MAX_ATTEMPTS", 10, "Attempts before a notification goes to ALERTS_DLQ_TOPIC."
    )
    notify_deadline_s: Annotated[float, _number(0.1)] = _env(
        "NOTIFY_DEADLINE_S", 120.0, "Retry budget per notification (s); then it goes to ALERTS_DLQ_TOPIC."
    )
    notify_breaker_cooldown_s: _Seconds = _env(
        "NOTIFY_BREAKER_COOLDOWN_S", 10.0, "How long the circuit stays open after repeated failures (s)."
    )
    notify_dead_letter_transient: Annotated[bool, BeforeValidator(_flag)] = _env(
        "NOTIFY_DEAD_LETTER_TRANSIENT",
        False,
        "`false`: a notification keeps being retried while its receiver fails transiently (down, 5xx,"
        " 429, timeouts): an outage leaves a backlog, never a loss, and only permanent rejections go to"
        " ALERTS_DLQ_TOPIC. `true`: NOTIFY_MAX_ATTEMPTS / NOTIFY_DEADLINE_S bound the retries, then the DLQ.",
    )
    notify_delivery: Annotated[str, _choice("inline", "separate")] = _env(
        "NOTIFY_DELIVERY",
        "inline",
        "`inline`: the alerting job delivers what it evaluates; `separate`: it only writes ALERTS_TOPIC"
        " and `python -m bytewax.run flows.notify` delivers from there (its own pods).",
    )
    notify_routes: str = _env(
        "NOTIFY_ROUTES",
        "",
        "An alertmanager.yml-style file (`route:`, `receivers:`): notifications are routed, grouped and"
        " sent to its receivers (webhook, slack, pagerduty, email, alertmanager, notification_service)."
        " Unset: one POST per alert to NOTIFY_URL.",
    )
    notify_start: Annotated[str, _choice("earliest", "latest")] = _env(
        "NOTIFY_START",
        "latest",
        "Where `flows.notify` starts reading ALERTS_TOPIC on a first start (no recovery state).",
    )


class StorageSettings(Section):
    section = "storage"

    redis_url: Annotated[str, _url("redis", "rediss", "unix")] = _env(
        "REDIS_URL", "", "Redis for `maintenance:{instance_id}` keys and latest values."
    )
    pg_dsn: Annotated[str, _url("postgresql", "postgres")] = _env(
        "PG_DSN", "", "PostgreSQL / TimescaleDB DSN (storage flow)."
    )
    clickhouse_url: Annotated[str, _url("http", "https")] = _env(
        "CLICKHOUSE_URL", "", "ClickHouse server URL (rollups); unset: embedded chdb."
    )
    pg_schema: Annotated[str, BeforeValidator(_identifier)] = _env(
        "PG_SCHEMA", "public", "PostgreSQL schema of `metrics_hot` and `alert_events`."
    )
    pg_batch_rows: _Count = _env("PG_BATCH_ROWS", 5000, "Rows per COPY + INSERT transaction.")
    pg_retention_days: _Count = _env("PG_RETENTION_DAYS", 30, "Days of raw samples kept in `metrics_hot`.")
    pg_compress_after_days: _Count = _env(
        "PG_COMPRESS_AFTER_DAYS", 2, "TimescaleDB only: compress chunks older than this."
    )
    redis_latest_ttl_s: _Count = _env("REDIS_LATEST_TTL_S", 86400, "TTL of the `latest:*` keys.")
    storage_retry_deadline_s: Annotated[float, _number(1)] = _env(
        "STORAGE_RETRY_DEADLINE_S",
        600.0,
        "How long a sink retries one batch through an outage before it stops the flow.",
    )
    clickhouse_path: Path = _env(
        "CLICKHOUSE_PATH", CHDB_PATH, "Data directory of the embedded engine (no `CLICKHOUSE_URL`)."
    )
    clickhouse_database: Annotated[str, BeforeValidator(_identifier)] = _env(
        "CLICKHOUSE_DATABASE", "gds", "Database of the rollup tables."
    )
    rollup_lateness_s: _Seconds = _env(
        "ROLLUP_LATENESS_S", 60.0, "A window closes this long (event time) after its end."
    )
    rollup_ttl_days: Annotated[tuple[int, int, int], NoDecode, BeforeValidator(_ttl_days)] = _env(
        "ROLLUP_TTL_DAYS", (30, 180, 730), "TTL of `metrics_1m`, `metrics_5m`, `metrics_1h` (days)."
    )


# Retry budgets during which a sink legitimately blocks its worker thread.
BLOCKING_DEADLINES: tuple[tuple[type[Section], str], ...] = (
    (NotifySettings, "notify_deadline_s"),
    (StorageSettings, "storage_retry_deadline_s"),
)


class MonitoringSettings(Section):
    section = "monitoring"

    port: Annotated[
        int, _number(0, integer=True, zero_ok=True, high=65535, hint=" (0 disables the server)")
    ] = _env(
        "METRICS_PORT",
        8490,
        "Port of `/metrics`, `/healthz` and `/readyz`; `0` disables the server. A port that is taken "
        "stops the job at start.",
    )
    host: Annotated[str, BeforeValidator(_host)] = _env(
        "METRICS_HOST", "127.0.0.1", "Address that server binds to (`0.0.0.0` for pods, so probes reach it)."
    )
    heartbeat_interval_s: Annotated[float, _number(0.1)] = _env(
        "HEARTBEAT_INTERVAL_S",
        30.0,
        'Seconds between heartbeats: a `{"type": "heartbeat"}` record on ALERTS_TOPIC per worker, '
        "and the idle liveness tick.",
    )
    health_stale_s: Annotated[float, _number(1)] = _env(
        "HEALTH_STALE_S",
        900.0,
        "`/healthz` fails when a flow reported no batch or heartbeat for this long (s), or its input "
        "waited that long without progress; must exceed HEARTBEAT_INTERVAL_S, NOTIFY_DEADLINE_S and "
        "STORAGE_RETRY_DEADLINE_S.",
    )
    ready_stall_s: Annotated[float, _number(1)] = _env(
        "READY_STALL_S",
        60.0,
        "`/readyz` fails when a flow's input waits (Kafka consumer lag > 0) and it consumed nothing "
        "for this long (s).",
    )
    self_metrics_interval_s: Annotated[float, _number(0, zero_ok=True)] = _env(
        "SELF_METRICS_INTERVAL_S",
        30.0,
        "Seconds between the pipeline's own health metrics (`up`, consumer lag per partition, "
        "`timescaledb_up`, error and DLQ rates) on `gds.metrics.pipeline.{env}`, which the bundled "
        "self-monitoring rules watch; `0`: off.",
    )
    self_metrics_environment: Annotated[str, BeforeValidator(_topic)] = _env(
        "SELF_METRICS_ENVIRONMENT", "production", "The `{env}` of that topic and the `environment` tag."
    )

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @field_validator("health_stale_s")
    @classmethod
    def _stale_exceeds_what_blocks(cls, stale: float, info: ValidationInfo) -> float:
        lines = []
        heartbeat = info.data.get("heartbeat_interval_s")
        if heartbeat is not None and stale <= heartbeat:
            lines.append(
                f"={stale:g} must be greater than HEARTBEAT_INTERVAL_S={heartbeat:g}: "
                "an idle flow only reports its heartbeats"
            )
        for section, name in BLOCKING_DEADLINES:
            deadline = _peek(section, name)
            if deadline is not None and stale <= deadline:
                alias = section.model_fields[name].validation_alias
                lines.append(
                    f"={stale:g} must be greater than {alias}={deadline:g}: a sink retrying "
                    "through an outage blocks the worker thread that long without being stuck"
                )
        if lines:
            raise _problem(*lines)
        return stale


class CollectSettings(Section):
    section = "collect"

    targets_path: Path = _env(
        "COLLECT_TARGETS", DEFAULT_TARGETS, "Targets file (YAML) of the collector flow."
    )
    output_format: Annotated[
        str, _choice("json", "avro", lower=True), AfterValidator(_avro_needs_registry)
    ] = _env("OUTPUT_FORMAT", "json", "Collector output: `json` (seed format) or `avro` (Confluent framing).")
    create_topics: Annotated[bool, BeforeValidator(_flag)] = _env(
        "COLLECT_CREATE_TOPICS", True, "Create missing `gds.metrics.*` topics of the targets at start."
    )

    @field_validator("targets_path")
    @classmethod
    def _targets_exist(cls, value: Path) -> Path:
        if not value.is_file():
            raise _problem(f": {str(value)!r} is not a file")
        return value


class ApiSettings(Section):
    section = "api"

    api_host: Annotated[str, BeforeValidator(_host)] = _env(
        "API_HOST", "127.0.0.1", "Address the control-plane API and console bind to (`0.0.0.0` in pods)."
    )
    api_port: Annotated[int, _number(1, integer=True, high=65535)] = _env(
        "API_PORT", 9093, "Port of the control-plane API and console (Alertmanager's, so amtool habits fit)."
    )
    api_tokens: str = _env(
        "API_TOKENS",
        "",
        "Bearer tokens, comma separated `name:scope:token` (scope `read` or `write`; write includes read). "
        "Prefer API_TOKENS_FILE (a mounted Secret).",
    )
    api_tokens_file: Path | None = _env(
        "API_TOKENS_FILE", None, "File with one `name:scope:token` per line (`#` comments), e.g. a Secret."
    )
    api_anonymous_read: Annotated[bool, BeforeValidator(_flag)] = _env(
        "API_ANONYMOUS_READ", False, "`true`: reads need no token (writes always do)."
    )


class GatewaySettings(Section):
    section = "gateway"

    gateway_host: Annotated[str, BeforeValidator(_host)] = _env(
        "GATEWAY_HOST", "127.0.0.1", "Address the metrics gateway binds to (`0.0.0.0` in pods)."
    )
    gateway_port: Annotated[int, _number(1, integer=True, high=65535)] = _env(
        "GATEWAY_PORT", 9201, "Port of the metrics gateway (seed `/metrics`, remote_write, OTLP)."
    )
    gateway_tokens: str = _env(
        "GATEWAY_TOKENS",
        "",
        "Bearer tokens of the gateway's writers, comma separated `name:token`; unset: no auth "
        "(bind to 127.0.0.1 or put it behind a network policy).",
    )
    gateway_max_body_bytes: Annotated[int, _number(1024, integer=True)] = _env(
        "GATEWAY_MAX_BODY_BYTES",
        8 * 1024 * 1024,
        "Largest request body (after decompression for remote_write); larger ones get a 413.",
    )
    gateway_output_format: Annotated[
        str, _choice("json", "avro", lower=True), AfterValidator(_avro_needs_registry)
    ] = _env(
        "GATEWAY_OUTPUT_FORMAT",
        "json",
        "What the gateway produces: `json` (seed format) or `avro` (Confluent).",
    )
    gateway_default_environment: Annotated[str, BeforeValidator(_identifier)] = _env(
        "GATEWAY_DEFAULT_ENVIRONMENT",
        "production",
        "Environment (topic part and `environment` tag) of samples whose labels have none.",
    )
    gateway_default_database_type: Annotated[str, BeforeValidator(_identifier)] = _env(
        "GATEWAY_DEFAULT_DATABASE_TYPE",
        "os",
        "database_type (topic part) of samples whose labels have no `database_type`.",
    )
    gateway_ack_timeout_s: Annotated[float, _number(0.1)] = _env(
        "GATEWAY_ACK_TIMEOUT_S",
        10.0,
        "Produce deadline of a request's records; those Kafka did not confirm by then are spooled "
        "(GATEWAY_SPOOL), or the request gets 503 with Retry-After.",
    )
    gateway_spool: Annotated[bool, BeforeValidator(_flag)] = _env(
        "GATEWAY_SPOOL",
        True,
        "Keep what Kafka does not confirm in the local spool (`{SPOOL_DIR}/gateway`, SPOOL_MAX_BYTES) and "
        "answer 2xx once it is fsynced there; `false`: answer 503 with Retry-After instead.",
    )
    gateway_create_topics: Annotated[bool, BeforeValidator(_flag)] = _env(
        "GATEWAY_CREATE_TOPICS",
        True,
        "Create a missing `gds.metrics.{database_type}.{environment}` topic on first use "
        "(the local broker does not auto-create).",
    )


SECTIONS: tuple[type[Section], ...] = (
    KafkaSettings,
    RulesSettings,
    NotifySettings,
    StorageSettings,
    MonitoringSettings,
    CollectSettings,
    ApiSettings,
    GatewaySettings,
)


# -- jobs -------------------------------------------------------------------------------------


# Bases in reverse: pydantic orders fields from the last base, and problems are listed in field order.
class Settings(StorageSettings, NotifySettings, RulesSettings, KafkaSettings):
    """The Kafka jobs' settings (alerting, storage, rollups); `MonitoringSettings` goes beside it."""

    section = "kafka+rules+notify+storage"


class CollectJobSettings(CollectSettings, KafkaSettings):
    """The collector's settings; `MonitoringSettings` goes beside it."""

    section = "kafka+collect"


class ApiJobSettings(ApiSettings, StorageSettings, KafkaSettings):
    """The control-plane API's settings (connectors/api): kafka + storage (PG_DSN) + api."""

    section = "kafka+storage+api"


class GatewayJobSettings(GatewaySettings, KafkaSettings):
    """The metrics gateway's settings (connectors/gateway): kafka + gateway."""

    section = "kafka+gateway"


def parse(env: Mapping[str, str]) -> Settings:
    return Settings.from_env(env)


def rules_paths(env: Mapping[str, str]) -> tuple[Path, ...]:
    """RULES_PATH as paths (also read on its own, to report rule problems with bad settings)."""
    raw = env.get("RULES_PATH", "").strip()
    return _paths(raw) if raw else RulesSettings().rules_paths


# -- the README table -------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A default as it would be written in the environment."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Path):
        return str(value.relative_to(ROOT)) if value.is_relative_to(ROOT) else str(value)
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def variables(
    sections: tuple[type[Section], ...] = SECTIONS,
) -> dict[str, tuple[str, FieldInfo, type[Section]]]:
    """Every variable: name -> (its default as text, its field, its section)."""
    out = {}
    for section in sections:
        for name, field in section.model_fields.items():
            out[str(field.validation_alias or name)] = (_shown(field.default), field, section)
    return out


def env_vars(sections: tuple[type[Section], ...] = SECTIONS) -> dict[str, tuple[str, str]]:
    """name -> (default, description), derived from the model."""
    return {
        name: (default, field.description or "") for name, (default, field, _) in variables(sections).items()
    }


ENV_VARS: dict[str, tuple[str, str]] = env_vars()


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | section | default | meaning |", "|---|---|---|---|"]
    for name, (default, field, section) in variables().items():
        shown = f"`{default}`" if default else ""
        rows.append(f"| `{name}` | {section.section} | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str], out: Callable[[str], Any] = sys.stdout.write) -> int:
    if argv != ["--markdown"]:
        out("usage: python -m connectors.config --markdown   (prints the README's configuration table)\n")
        return 2
    out(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
