"""Configuration: defaults work, every problem is listed at once, the README documents all."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import (
    ENV_VARS,
    SECTIONS,
    ApiJobSettings,
    ApiSettings,
    CollectJobSettings,
    CollectSettings,
    ConfigError,
    KafkaSettings,
    MonitoringSettings,
    NotifySettings,
    RulesSettings,
    Settings,
    StorageSettings,
    env_vars,
    main,
    markdown_table,
    redact,
    rules_paths,
)

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_run_the_embedded_sample() -> None:
    s = Settings.from_env({})
    assert s.embedded and s.sample_path.is_file() and s.alerts_topic == "alerts"


def test_kafka_settings_parse() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092, 127.0.0.1:19093",
            "KAFKA_EXTRA_CONFIG": "client.id=gds; socket.keepalive.enable=true",
            "NOTIFY_URL": "http://127.0.0.1:8080/",
            "ALERT_SHARDS": "8",
        }
    )
    assert s.bootstrap == ("127.0.0.1:19092", "127.0.0.1:19093") and not s.embedded
    assert s.kafka_extra == {"client.id": "gds", "socket.keepalive.enable": "true"}
    assert s.notify_url == "http://127.0.0.1:8080" and s.shards == 8


def test_every_problem_is_reported_once() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "localhost",
                "INPUT_FORMAT": "xml",
                "NOTIFY_URL": "ftp://x",
                "NOTIFY_TIMEOUT_S": "soon",
                "ALERT_SHARDS": "0",
                "RULES_PATH": "/nope",
                "METRIC_TOPICS": "^gds(",
                "DLQ_TOPIC": "bad topic",
            }
        )
    problems = err.value.problems
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "INPUT_FORMAT",
        "NOTIFY_URL",
        "NOTIFY_TIMEOUT_S",
        "ALERT_SHARDS",
        "RULES_PATH",
        "METRIC_TOPICS",
        "DLQ_TOPIC",
    ):
        assert sum(p.startswith(name) for p in problems) == 1, (name, problems)


def test_avro_needs_a_registry() -> None:
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_URL"):
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "INPUT_FORMAT": "avro"})


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in readme]
    assert missing == []


NUMERIC = (
    "NOTIFY_TIMEOUT_S",
    "NOTIFY_MAX_IN_FLIGHT",
    "NOTIFY_MAX_ATTEMPTS",
    "NOTIFY_DEADLINE_S",
    "NOTIFY_BREAKER_COOLDOWN_S",
    "ALERT_SHARDS",
    "MAX_FUTURE_S",
    "PG_BATCH_ROWS",
    "PG_RETENTION_DAYS",
    "PG_COMPRESS_AFTER_DAYS",
    "REDIS_LATEST_TTL_S",
    "STORAGE_RETRY_DEADLINE_S",
    "ROLLUP_LATENESS_S",
)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "0", " nan "])
def test_every_numeric_setting_refuses_non_finite_negative_and_zero(value: str) -> None:
    """`NOTIFY_TIMEOUT_S=nan` made every notification undeliverable; `MAX_FUTURE_S=nan` let 2100 in."""
    with pytest.raises(ConfigError) as err:
        Settings.from_env(dict.fromkeys(NUMERIC, value))
    problems = err.value.problems
    for name in NUMERIC:
        assert sum(p.startswith(f"{name}=") for p in problems) == 1, (name, problems)


def test_numeric_settings_still_accept_positive_values() -> None:
    s = Settings.from_env({"NOTIFY_TIMEOUT_S": "0.5", "MAX_FUTURE_S": "1e3", "ROLLUP_LATENESS_S": "1"})
    assert (s.notify_timeout_s, s.max_future_s, s.rollup_lateness_s) == (0.5, 1000.0, 1.0)


SECRET = "S3cret-pw"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOTIFY_URL", f"ftp://user:{SECRET}@127.0.0.1:1"),
        ("PG_DSN", f"mysql://gds:{SECRET}@127.0.0.1/gds"),
        ("PG_DSN", f"host=127.0.0.1 user=gds password={SECRET}"),
        ("REDIS_URL", f"http://:{SECRET}@127.0.0.1:6379/0"),
        ("SCHEMA_REGISTRY_URL", f"ftp://u:{SECRET}@registry"),
        ("CLICKHOUSE_URL", f"clickhouse://default:{SECRET}@127.0.0.1:9000"),
        ("KAFKA_EXTRA_CONFIG", f"sasl.pasword={SECRET}"),  # a typo in the key: refused, not echoed
        ("KAFKA_EXTRA_CONFIG", f"sasl.password {SECRET}"),  # not key=value
    ],
)
def test_configuration_errors_never_print_credentials(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", name: value})
    assert any(p.startswith(name) for p in err.value.problems), err.value.problems
    assert SECRET not in str(err.value)
    if name != "KAFKA_EXTRA_CONFIG":  # its values are never echoed at all
        assert "***" in str(err.value)  # the rest of the value is, to find the typo


def test_redact_keeps_what_helps_and_hides_passwords() -> None:
    assert redact("ftp://user:pw@host:1/x") == "ftp://user:***@host:1/x"
    assert redact("postgresql://u@h/db?sslmode=require&password=pw") == (
        "postgresql://u@h/db?sslmode=require&password=***"
    )
    assert redact("sasl.password=pw;client.id=x") == "sasl.password=***;client.id=x"
    assert redact("https://hooks.example/x?token=abc&a=1") == "https://hooks.example/x?token=***&a=1"
    assert redact("127.0.0.1:9092 is not host:port") == "127.0.0.1:9092 is not host:port"


def test_a_config_error_redacts_every_problem_whoever_raises_it() -> None:
    err = ConfigError([f"X='redis://:{SECRET}@h': nope"])
    assert SECRET not in str(err) and SECRET not in err.problems[0]


def test_unknown_or_invalid_kafka_extra_config_is_one_line_each() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                "KAFKA_EXTRA_CONFIG": "securty.protocol=SSL; linger.ms=soon; client.id=ok",
            }
        )
    problems = err.value.problems
    assert problems == [
        'KAFKA_EXTRA_CONFIG: securty.protocol: No such configuration property: "securty.protocol"',
        'KAFKA_EXTRA_CONFIG: linger.ms: Invalid value for configuration property "queue.buffering.max.ms"',
    ]


def test_rules_paths_read_alone() -> None:
    assert rules_paths({"RULES_PATH": "a.yml, b/"}) == (Path("a.yml"), Path("b"))
    assert rules_paths({}) == Settings().rules_paths


def _readme_table() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| variable | section | default | meaning |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end]) + "\n"


def test_readme_configuration_table_is_the_generated_one() -> None:
    """Regenerate with `python -m connectors.config --markdown` when this fails."""
    assert _readme_table() == markdown_table()


def test_markdown_table_has_one_row_per_variable_with_its_default() -> None:
    rows = markdown_table().splitlines()[2:]
    assert len(rows) == len(ENV_VARS) == len({r.split("|")[1] for r in rows})
    assert "| `NOTIFY_TIMEOUT_S` | notify | `5` |" in markdown_table()
    assert "| `RULES_PATH` | rules | `rules/bundled` |" in markdown_table()
    assert "| `RECOVERY_DIR` | kafka | `.local/recovery` |" in markdown_table()


def test_the_markdown_command_prints_the_table() -> None:
    out: list[str] = []
    assert main(["--markdown"], out.append) == 0 and out == [markdown_table()]
    assert main([], out.append) == 2


def test_every_default_is_what_the_environment_default_parses_to() -> None:
    """One default per field: writing a default into the environment changes nothing."""
    written = {name: default for name, (default, _) in ENV_VARS.items() if default and name != "RECOVERY_DIR"}
    written["RECOVERY_DIR"] = str(ROOT / ".local" / "recovery")
    with_paths = {k: str(ROOT / v) if k in PATHS else v for k, v in written.items()}
    assert Settings.from_env(with_paths) == Settings()
    assert MonitoringSettings.from_env(with_paths) == MonitoringSettings()
    assert CollectJobSettings.from_env(with_paths) == CollectJobSettings()


PATHS = ("SAMPLE_PATH", "RULES_PATH", "CLICKHOUSE_PATH", "COLLECT_TARGETS", "SPOOL_DIR")


def test_sections_compose_into_the_jobs_settings() -> None:
    assert {s.section for s in SECTIONS} == {
        "kafka",
        "rules",
        "notify",
        "storage",
        "monitoring",
        "collect",
        "api",
        "gateway",
    }
    names = [set(ENV_VARS) & set(env_vars((s,))) for s in SECTIONS]
    assert sum(len(n) for n in names) == len(ENV_VARS)  # each variable in exactly one section
    assert set(Settings.model_fields) == {
        f for s in (KafkaSettings, RulesSettings, NotifySettings, StorageSettings) for f in s.model_fields
    }
    assert set(CollectJobSettings.model_fields) == set(KafkaSettings.model_fields) | set(
        CollectSettings.model_fields
    )
    assert set(ApiJobSettings.model_fields) == {
        f for s in (KafkaSettings, StorageSettings, ApiSettings) for f in s.model_fields
    }


def test_the_process_environment_is_read_only_by_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_TIMEOUT_S", "7")
    assert Settings().notify_timeout_s == 5.0  # constructed in code: the defaults
    assert Settings.from_env().notify_timeout_s == 7.0
    assert Settings.from_env({}).notify_timeout_s == 5.0  # an injected environment replaces it


def test_values_given_in_code_are_checked_like_the_environment() -> None:
    assert MonitoringSettings(port=9200, host="127.0.0.1").port == 9200
    with pytest.raises(ConfigError) as err:
        MonitoringSettings(port=70000, heartbeat_interval_s=float("nan"))
    assert err.value.problems[0].startswith("METRICS_PORT=70000: must be <= 65535")
    assert err.value.problems[1] == "HEARTBEAT_INTERVAL_S=nan: must be a finite number"


def test_cross_section_checks_are_listed_with_the_other_problems() -> None:
    """A field that fails does not hide a check between variables (pydantic's model validators would)."""
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "INPUT_FORMAT": "avro", "NOTIFY_TIMEOUT_S": "x"}
        )
    assert err.value.problems == [
        "INPUT_FORMAT=avro needs SCHEMA_REGISTRY_URL",
        "NOTIFY_TIMEOUT_S='x': not a number",
    ]


def test_rules_reload_zero_means_only_on_sighup() -> None:
    assert Settings.from_env({"RULES_RELOAD_S": "0"}).rules_reload_s == 0
    with pytest.raises(ConfigError, match="RULES_RELOAD_S"):
        Settings.from_env({"RULES_RELOAD_S": "-1"})
