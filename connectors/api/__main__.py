"""`python -m connectors.api`: the control-plane API (and the console, when installed) under
uvicorn, one worker. Settings problems are listed at start (exit 2), as the jobs do."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from starlette.routing import BaseRoute

from connectors.api.app import Auth, create_app
from connectors.api.auth import Authenticator, parse_tokens, token_entries
from connectors.api.service import ControlService
from connectors.api.store import Store
from connectors.config import ApiJobSettings, ConfigError
from connectors.control.publish import ControlPublisher
from connectors.control.reader import ControlReader

log = logging.getLogger("connectors.api")


def exit_with(problems: Sequence[str]) -> NoReturn:
    print(f"connectors.api: {ConfigError(list(problems))}", file=sys.stderr)
    raise SystemExit(2)


def load() -> tuple[ApiJobSettings, Authenticator]:
    """Settings and tokens, or exit 2 with every problem (tokens named, never shown)."""
    problems: list[str] = []
    settings = None
    try:
        settings = ApiJobSettings.from_env()
    except ConfigError as exc:
        problems += exc.problems
    if settings is None:  # the tokens' problems too, read as they are, so one start lists all
        raw_file = os.environ.get("API_TOKENS_FILE") or None
        entries, file_problems = token_entries(
            os.environ.get("API_TOKENS", ""), Path(raw_file) if raw_file else None
        )
        exit_with(problems + file_problems + parse_tokens(entries)[1])
    if not settings.pg_dsn:
        problems.append("PG_DSN: required (the alert history and the audit live in PostgreSQL)")
    if not settings.bootstrap:
        problems.append("KAFKA_BOOTSTRAP_SERVERS: required (silences and acks live on CONTROL_TOPIC)")
    entries, file_problems = token_entries(settings.api_tokens, settings.api_tokens_file)
    tokens, token_problems = parse_tokens(entries)
    problems += file_problems + token_problems
    if problems:
        exit_with(problems)
    if not tokens:
        log.warning("no API tokens (API_TOKENS, API_TOKENS_FILE): every write will be refused")
    return settings, Authenticator(tokens, anonymous_read=settings.api_anonymous_read)


def console_routes(service: ControlService, auth: Auth) -> list[BaseRoute]:
    """The console's routes, when connectors/api/console.py is installed."""
    if importlib.util.find_spec("connectors.api.console") is None:
        return []
    make = getattr(importlib.import_module("connectors.api.console"), "console_routes", None)
    if make is None:  # a console module without its routes (yet): serve the API alone
        log.warning("connectors/api/console.py has no console_routes: the console is not served")
        return []
    routes: list[BaseRoute] = list(make(service, auth))
    return routes


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, authenticator = load()
    store = Store(settings.pg_dsn, settings.pg_schema)
    topic = settings.control_topic
    publisher = ControlPublisher(settings.bootstrap, topic, settings.kafka_extra) if topic else None
    service = ControlService(store, publisher)
    auth = Auth(authenticator)
    reader: ControlReader | None = None

    def unreadable(text: str) -> None:
        service.metrics.events_unreadable.inc()
        log.warning("%s", text)

    if topic:
        reader = ControlReader(
            settings.bootstrap,
            topic,
            service.apply,
            settings.kafka_extra,
            on_error=unreadable,
        )

    async def start() -> None:
        await store.open()
        if reader is not None:
            reader.start()

    async def stop() -> None:
        if reader is not None:
            await asyncio.to_thread(reader.stop)
        if publisher is not None:
            await asyncio.to_thread(publisher.close)
        await store.close()

    async def readiness() -> list[str]:
        problems = []
        if reader is not None and not reader.ready.is_set():
            problems.append(f"control topic {topic} not read to its end yet ({reader.failure or 'reading'})")
        try:
            await asyncio.wait_for(store.ping(), 5)
        except Exception as exc:  # any failure is "not ready"; the reason helps the operator
            problems.append(f"PostgreSQL: {type(exc).__name__}")
        return problems

    app = create_app(
        service,
        auth,
        readiness=readiness,
        extra_routes=console_routes(service, auth),
        on_startup=[start],
        on_shutdown=[stop],
    )
    config: dict[str, Any] = {"log_level": "info", "access_log": True, "proxy_headers": False}
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, workers=1, **config)


if __name__ == "__main__":
    main()
