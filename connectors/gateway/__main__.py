"""`python -m connectors.gateway`: the metrics gateway under uvicorn, one worker. Settings
problems are listed at start (exit 2), as the jobs do."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import uvicorn

from connectors.api.auth import Authenticator, Token, parse_tokens
from connectors.config import ConfigError, GatewayJobSettings
from connectors.gateway.app import create_app
from connectors.gateway.metrics import GatewayMetrics
from connectors.gateway.parse import Defaults
from connectors.gateway.producer import SPOOL_JOB, Encode, GatewayProducer
from connectors.kafka.spool import Spool, SpoolMetrics

log = logging.getLogger("connectors.gateway")


def exit_with(problems: Sequence[str]) -> NoReturn:
    print(f"connectors.gateway: {ConfigError(list(problems))}", file=sys.stderr)
    raise SystemExit(2)


def gateway_tokens(raw: str) -> tuple[tuple[Token, ...], list[str]]:
    """GATEWAY_TOKENS `name:token,...` -> tokens (every writer may write) and problems (no secret)."""
    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    for i, entry in enumerate(e for e in raw.split(",") if e.strip()):
        name, sep, secret = entry.strip().partition(":")
        if not sep:
            problems.append(f"GATEWAY_TOKENS entry {i + 1}: expected name:token")
            continue
        entries.append((f"GATEWAY_TOKENS entry {i + 1}", f"{name}:write:{secret}"))
    tokens, token_problems = parse_tokens(entries)
    return tokens, problems + token_problems


def encoder(settings: GatewayJobSettings) -> Encode:
    if settings.gateway_output_format == "avro":
        from confluent_kafka.schema_registry import SchemaRegistryClient

        from connectors.kafka.serde import AvroCodec

        codec = AvroCodec(SchemaRegistryClient({"url": settings.schema_registry_url}))
        return lambda metric, topic: codec.encode(metric, f"{topic}-value")
    from connectors.kafka.serde import encode_json

    return lambda metric, _topic: encode_json(metric)


def open_spool(settings: GatewayJobSettings) -> Spool:
    """`{SPOOL_DIR}/gateway`, locked for this process: two gateways sharing a spool would mix
    their order and drain each other's records."""
    path = settings.spool_dir / SPOOL_JOB
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        exit_with([f"SPOOL_DIR: {path} is in use by another gateway; give each gateway its own SPOOL_DIR"])
    return Spool(path, settings.spool_max_bytes)  # the lock fd stays open for the process' life


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problems: list[str] = []
    settings = None
    try:
        settings = GatewayJobSettings.from_env()
    except ConfigError as exc:
        problems += exc.problems
    if settings is None:
        exit_with(problems)
    if not settings.bootstrap:
        problems.append("KAFKA_BOOTSTRAP_SERVERS: required (the gateway produces to the metric topics)")
    tokens, token_problems = gateway_tokens(settings.gateway_tokens)
    problems += token_problems
    if problems:
        exit_with(problems)
    if not tokens:
        log.warning("no GATEWAY_TOKENS: any client that reaches %s may write", settings.gateway_host)
    metrics = GatewayMetrics()
    producer = GatewayProducer(
        settings.bootstrap,
        encoder(settings),
        ack_timeout_s=settings.gateway_ack_timeout_s,
        create_topics=settings.gateway_create_topics,
        extra=settings.kafka_extra,
        spool=open_spool(settings) if settings.gateway_spool else None,
        spool_metrics=SpoolMetrics(metrics.registry),
        renewals=metrics.producer_renewals,
        found=metrics.spool_found,
    )

    async def start() -> None:
        producer.start()

    async def stop() -> None:
        await producer.aclose()

    app = create_app(
        producer,
        defaults=Defaults(
            settings.gateway_default_environment,
            settings.gateway_default_database_type,
            settings.max_future_s,
        ),
        max_body_bytes=settings.gateway_max_body_bytes,
        metrics=metrics,
        authenticator=Authenticator(tokens) if tokens else None,
        readiness=producer.problems,
        on_startup=[start],
        on_shutdown=[stop],
    )
    config: dict[str, Any] = {"log_level": "info", "access_log": False, "proxy_headers": False}
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port, workers=1, **config)


if __name__ == "__main__":
    main()
