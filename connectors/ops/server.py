"""Self-monitoring of a flow process: Prometheus metrics, `/healthz`, `/readyz`, heartbeats.

Why a server of our own next to Bytewax's: Bytewax 0.21.1 only serves `/metrics` and
`/dataflow` (its "dataflow API", on when `BYTEWAX_DATAFLOW_API_ENABLED` is set to *any* value,
port `BYTEWAX_DATAFLOW_API_PORT`, default 3030); it has no health endpoints, and a Kubernetes
probe needs one that fails when the worker thread is stuck. Both endpoints read the same
prometheus_client default registry, so `gds_*` and Bytewax's own Python-side gauge
`bytewax_kafka_consumer_lag{step_id,topic,partition}` (set by `KafkaSource` from librdkafka
statistics, `bytewax/connectors/kafka/__init__.py`) appear on ours too; the engine's Rust-side
metrics (`bytewax_item_inp_count_total`, `..._next_batch_duration_seconds`, ...) only appear on
Bytewax's. `/metrics` is prometheus_client's own exposition: the Prometheus text format, or
OpenMetrics when the scraper asks for it (`Accept: application/openmetrics-text`), gzipped when
it accepts gzip.

Liveness is fed from the worker threads: `record_batch` after each batch and the heartbeat
source on every worker (`HeartbeatSource`), so a thread blocked in a sink or a callback stops
reporting and `/healthz` turns 503 after `HEALTH_STALE_S`, while an idle process keeps passing.

The metrics themselves are `connectors.ops.metrics.Metrics`, built once per process on the
default registry (`METRICS`, imported here so a server always has them to serve, even in a
process that records none yet); a server serves whichever registry it is given (tests: one of
their own).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from connectors.config import ConfigError, MonitoringSettings, env_vars
from connectors.errors import ConnectorError
from connectors.ops.health import _PROCESS, HEALTH, Health
from connectors.ops.metrics import METRICS

log = logging.getLogger(__name__)


# the monitoring section of the settings model (connectors.config), derived from it
ENV_VARS: dict[str, tuple[str, str]] = env_vars((MonitoringSettings,))

# -- metrics ------------------------------------------------------------------------------


# -- health -------------------------------------------------------------------------------


"""(flow, topic, partition) -> consumer lag in messages."""


# -- helpers the flows call ---------------------------------------------------------------


# -- heartbeat ----------------------------------------------------------------------------


# -- HTTP server --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    health: Health
    registry: CollectorRegistry

    def __init__(self, address: tuple[str, int], health: Health, registry: CollectorRegistry) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.health = health
        self.registry = registry
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "gds-monitoring"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        server = cast(_HTTPServer, self.server)
        if path == "/metrics":
            # prometheus_client's exposition, as its own MetricsHandler answers: the format the
            # Accept header asks for (OpenMetrics or text), gzip if accepted, `name[]` filters
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            names = parse_qs(url.query).get("name[]")
            body = encoder(server.registry.restricted_registry(names) if names else server.registry)
            headers = [("Content-Type", content_type)]
            if gzip_accepted(self.headers.get("Accept-Encoding", "")):
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            self._send(200, body, content_type, headers)
            return
        if path in ("/healthz", "/readyz"):
            live, ready, details = server.health.report()
            ok = live if path == "/healthz" else ready
            details["status"] = "ok" if ok else ("stale" if not live else "not ready")
            body = json.dumps(details, sort_keys=True).encode()
            self._send(200 if ok else 503, body, "application/json")
            return
        self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers or [("Content-Type", content_type)]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes hit this every few seconds: keep stderr for the flow's own messages."""


class MonitoringServer:
    """`/metrics` (of `registry`), `/healthz`, `/readyz` (of `health`) on a daemon thread;
    `port` is the bound one (0 picks)."""

    def __init__(
        self, host: str, port: int, health: Health, registry: CollectorRegistry = METRICS.registry
    ) -> None:
        self._httpd = _HTTPServer((host, port), health, registry)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"gds-monitoring:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(
    host: str, port: int, health: Health | None = None, registry: CollectorRegistry = METRICS.registry
) -> MonitoringServer:
    """A server of its own (tests, tools); flows call `start` for the per-process one."""
    return MonitoringServer(host, port, health or HEALTH, registry)


def start(flow: str, settings: MonitoringSettings | None = None) -> MonitoringServer | None:
    """Register `flow` and start this process's server once; the call flows make at start.

    Idempotent and thread-safe: a second flow or worker gets the running server. A port that
    cannot be bound raises `ConfigError` (one line): the job must not run with its probes and
    metrics answered by whatever else holds the port. `METRICS_PORT=0` runs without a server.
    """
    settings = settings or MonitoringSettings.from_env()
    with _PROCESS.lock:
        HEALTH.stale_s = settings.health_stale_s
        HEALTH.ready_stall_s = settings.ready_stall_s
        HEALTH.register(flow)
        if _PROCESS.server is not None or not settings.enabled:
            return _PROCESS.server
        try:
            _PROCESS.server = MonitoringServer(settings.host, settings.port, HEALTH)
        except OSError as exc:
            raise ConfigError(
                [
                    f"METRICS_PORT={settings.port}: cannot serve on {settings.host}:{settings.port} "
                    f"({exc.strerror or exc}); choose a free port, or METRICS_PORT=0 to run without it"
                ]
            ) from exc
        log.info("monitoring: serving /metrics /healthz /readyz on %s:%d", settings.host, settings.port)
        return _PROCESS.server


def await_dependency(
    flow: str,
    what: str,
    probe: Callable[[], Any],
    *,
    retry_s: float = 5.0,
    health: Health | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`probe()`'s result once it stops raising `ConnectorError`; until then the flow is not ready.

    For what a flow cannot even be built without (the Kafka metadata its sources read at
    build time): the process stays up, `/readyz` says why it is not ready, and one line is
    logged when the dependency fails and one when it answers, not one per attempt.
    """
    h = health or HEALTH
    try:
        return probe()
    except ConnectorError as exc:
        log.error("%s: %s is unreachable (%s); waiting for it, /readyz is 503 meanwhile", flow, what, exc)
        h.block(flow, f"{what} unreachable: {exc}")
    while True:
        sleep(retry_s)
        try:
            result = probe()
        except ConnectorError as exc:
            h.block(flow, f"{what} unreachable: {exc}")
            continue
        h.block(flow, None)
        log.info("%s: %s answers, starting", flow, what)
        return result
