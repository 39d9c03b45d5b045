"""Configuration: defaults work, every problem is listed at once, the README documents all."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import ENV_VARS, ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_run_the_embedded_sample() -> None:
    s = Settings.from_env({})
    assert s.embedded and s.sample_path.is_file() and s.alerts_topic == "alerts"


def test_kafka_settings_parse() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092, 127.0.0.1:19093",
            "KAFKA_EXTRA_CONFIG": "security.protocol=SSL; ssl.ca.location=/x",
            "NOTIFY_URL": "http://127.0.0.1:8080/",
            "ALERT_SHARDS": "8",
        }
    )
    assert s.bootstrap == ("127.0.0.1:19092", "127.0.0.1:19093") and not s.embedded
    assert s.kafka_extra == {"security.protocol": "SSL", "ssl.ca.location": "/x"}
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
