"""Targets file: validation of every problem at once, ${ENV} expansion, redaction, plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.collectors import BaseCollector, base, create_collector, redact, register, registered_types
from connectors.collectors.base import CollectorError, Target, error_class
from connectors.collectors.redact import password_of, redact_text
from connectors.collectors.targets import (
    DEFAULT_TARGETS,
    TargetFileError,
    expand_env,
    load_targets,
    parse_targets,
)
from connectors.config import CollectJobSettings, ConfigError
from rules.collect.policy import DEFAULT_TAG_ALLOWLIST
from rules.metric import Metric


def doc(text: str) -> Any:
    return yaml.safe_load(text)


GOOD = """
settings:
  environment: production
  interval: 30s
  tag_allowlist: [environment, region, mount]
  max_series_per_metric: 10
  max_future: 2m
targets:
  - name: pg-main
    type: postgresql
    instance_id: prod-db-01
    tags: {region: us-east-1}
    dsn: postgresql://monitor:${PG_PASSWORD}@db1:5432/postgres
  - name: host
    type: os
    instance_id: prod-db-01
    database_type: postgresql
    environment: staging
    interval: 10s
    mounts: [/, /data]
"""


def test_good_file_loads_with_defaults_and_expanded_secret() -> None:
    cfg = parse_targets(doc(GOOD), {"PG_PASSWORD": "s3cr#t"})
    pg, host = cfg.targets
    assert (pg.name, pg.type, pg.instance_id, pg.database_type, pg.environment) == (
        "pg-main",
        "postgresql",
        "prod-db-01",
        "postgresql",
        "production",
    )
    assert (pg.interval_s, pg.timeout_s) == (30.0, 5.0)
    assert pg.tags == {"region": "us-east-1", "environment": "production"}
    assert pg.options["dsn"] == "postgresql://monitor:s3cr#t@db1:5432/postgres"
    assert pg.topic == "gds.metrics.postgresql.production"
    assert (host.database_type, host.environment, host.interval_s, host.timeout_s) == (
        "postgresql",
        "staging",
        10.0,
        5.0,
    )
    assert host.topic == "gds.metrics.postgresql.staging"
    assert cfg.policy.tag_allowlist == frozenset({"environment", "region", "mount"})
    assert (cfg.policy.max_series_per_metric, cfg.policy.max_future_s) == (10, 120.0)
    # the secret never shows in a repr (logs, tracebacks)
    assert "s3cr#t" not in repr(pg) and "s3cr#t" not in repr(cfg)


def test_every_problem_is_listed_and_no_value_is_echoed() -> None:
    bad = """
settings: {interval: soon, tag_allowlist: 7, max_series_per_metric: 0, colour: red}
targets:
  - name: a
    type: postgresql
    dsn: postgresql://u:${MISSING_PW}@h/db
    timeout: 1m
    interval: 10s
    bogus: 1
  - name: a
    type: mongodb
  - type: os
    environment: prod.eu
    mounts: relative
  - 42
"""
    with pytest.raises(TargetFileError) as err:
        parse_targets(doc(bad), {}, "t.yml")
    text = str(err.value)
    expected = [
        "targets[0].dsn: environment variable MISSING_PW is not set",
        "settings.interval: not a duration",
        "settings.tag_allowlist: must be a list",
        "settings.max_series_per_metric: must be an integer >= 1",
        "settings: unknown setting 'colour'",
        "targets[0] 'a': unknown option 'bogus' for type postgresql",
        "targets[0] 'a': timeout: longer than the interval",
        "targets[1] 'a': name: duplicate",
        "targets[1] 'a': type: 'mongodb' is not a registered collector type (known: os, postgresql",
        "targets[2]: name: required",
        "targets[2]: environment (or settings.environment): required",
        "targets[2]: mounts: must be a list of absolute paths",
        "targets[3]: must be a mapping",
    ]
    for line in expected:
        assert line in text, line
    assert all(p.startswith("t.yml: ") for p in err.value.problems)
    assert len(err.value.problems) >= len(expected)


def test_env_expansion_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("x${A}y", env) == ("x1y", [])
    assert expand_env("${B:-dflt}", env) == ("dflt", [])
    assert expand_env("${EMPTY:-dflt}", env) == ("dflt", [])  # like the shell's :-
    assert expand_env("${EMPTY}", env) == ("", [])
    assert expand_env("$${A} costs $5", env) == ("${A} costs $5", [])
    assert expand_env("${B}${C}", env) == ("", ["B", "C"])


def test_expansion_is_on_values_only_so_env_cannot_inject_yaml() -> None:
    text = "targets:\n  - {name: h, type: os, environment: '${E}'}\n"
    with pytest.raises(TargetFileError) as err:
        parse_targets(doc(text), {"E": "x\n  - {name: evil, type: os}"})
    assert "environment" in str(err.value) and len(err.value.problems) == 1


def test_top_level_must_have_targets() -> None:
    with pytest.raises(TargetFileError, match="`targets:` list"):
        parse_targets(doc("rules: []"), {})
    with pytest.raises(TargetFileError, match="empty"):
        parse_targets(doc("targets: []"), {})


def test_allowlist_star_lets_everything_through_and_default_applies() -> None:
    base = "targets:\n  - {name: h, type: os, environment: p}\n"
    assert parse_targets(doc(base), {}).policy.tag_allowlist == DEFAULT_TAG_ALLOWLIST
    star = "settings: {tag_allowlist: '*'}\n" + base
    assert parse_targets(doc(star), {}).policy.tag_allowlist is None


def test_load_targets_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(TargetFileError, match="cannot read"):
        load_targets(tmp_path / "nope.yml", {})
    bad = tmp_path / "bad.yml"
    bad.write_text("targets: [\n")
    with pytest.raises(TargetFileError, match="invalid YAML"):
        load_targets(bad, {})


def test_bundled_local_targets_load() -> None:
    cfg = load_targets(DEFAULT_TARGETS, {"PG_DSN": "postgresql://gds@127.0.0.1:15432/gds"})
    assert {t.type for t in cfg.targets} == {"postgresql", "os"}
    assert cfg.targets[0].options["dsn"] == "postgresql://gds@127.0.0.1:15432/gds"
    assert load_targets(DEFAULT_TARGETS, {}).targets[0].options["dsn"].endswith(":15432/gds")


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://monitor:s3cret@db1:5432/postgres", "postgresql://monitor:***@db1:5432/postgres"),
        ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://u:pa@ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://h/db?user=u&password=s3cret&sslmode=x",
            "postgresql://h/db?user=u&password=***&sslmode=x",
        ),
        ("host=db1 user=u password=s3cret dbname=x", "host=db1 user=u password=*** dbname=x"),
        ("host=db1 password = 'se cret' dbname=x", "host=db1 password = *** dbname=x"),
        ("mongodb+srv://u:pw@cluster0/x", "mongodb+srv://u:***@cluster0/x"),
        ("http://host:8080/path", "http://host:8080/path"),
    ],
)
def test_redact(dsn: str, expected: str) -> None:
    assert redact(dsn) == expected


def test_redact_text_scrubs_known_secrets_and_embedded_dsns() -> None:
    msg = "could not connect to postgresql://u:hunter22@h/db: auth failed for hunter22"
    out = redact_text(msg, [password_of("postgresql://u:hunter22@h/db")])
    assert "hunter22" not in out and "u:***@h/db" in out
    assert password_of("host=h password='a b c'") == "a b c"
    assert password_of("postgresql://u@h/db") is None


def test_settings_from_env_lists_every_problem_without_secrets(tmp_path: Path) -> None:
    f = tmp_path / "t.yml"
    f.write_text("targets: []")
    ok = CollectJobSettings.from_env(
        {"COLLECT_TARGETS": str(f), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
    )
    assert ok.output_format == "json" and ok.bootstrap == ("127.0.0.1:19092",) and ok.create_topics
    with pytest.raises(ConfigError) as err:
        CollectJobSettings.from_env(
            {
                "COLLECT_TARGETS": str(tmp_path / "missing.yml"),
                "OUTPUT_FORMAT": "avro",
                "KAFKA_BOOTSTRAP_SERVERS": "nohost",
                "KAFKA_EXTRA_CONFIG": "sasl.password:hunter22",
            }
        )
    text = str(err.value)
    for part in ("COLLECT_TARGETS", "avro needs SCHEMA_REGISTRY_URL", "'nohost' is not host:port", "EXTRA"):
        assert part in text
    assert "hunter22" not in text


def test_a_new_type_registers_and_validates_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # keep the test's type out of others

    @register("fake-db")
    class FakeCollector(BaseCollector):
        default_database_type = "fakedb"

        @classmethod
        def check_options(cls, options: Any) -> list[str]:
            return [] if "url" in options else ["url: required"]

        def collect(self, now: float) -> list[Metric]:
            return [self.target.sample(now, "up_like", 1.0)]

    assert "fake-db" in registered_types()
    text = (
        "targets:\n  - {name: f, type: fake-db, environment: p, url: x}\n"
        "  - {name: g, type: fake-db, environment: p}"
    )
    with pytest.raises(TargetFileError, match="'g': url: required"):
        parse_targets(doc(text), {})
    cfg = parse_targets(doc(text.rsplit("\n", 1)[0]), {})
    c = create_collector(cfg.targets[0])
    assert c.database_type == "fakedb" and c.name == "f"
    assert c.collect(5.0) == [Metric(5.0, "fakedb", "f", "up_like", 1.0, {"environment": "p"})]
    with pytest.raises(ValueError, match="already registered"):
        register("fake-db")(type("Other", (FakeCollector,), {}))
    with pytest.raises(CollectorError, match="no collector registered"):
        create_collector(Target("x", "nope", "x", "x", "p", 1.0, 1.0))


def test_error_class_is_the_innermost_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as exc:
            raise CollectorError("target 'x': refused") from exc
    except CollectorError as exc:
        assert error_class(exc) == "ConnectionRefusedError"
    assert error_class(TimeoutError()) == "TimeoutError"
