"""A real HTTP receiver on 127.0.0.1 that records any JSON POST and answers from a script.

Unlike `http_receiver` (which keys its script on the seeds' message_id), this one serves every
receiver kind (webhook, Slack, PagerDuty, Alertmanager's list body): the script is one queue of
actions consumed in arrival order, then `default` for every later request. Actions: "ok"
(200), any status code as text ("500", "503", "408", "400", ...), and "429:N" / "503:N" (that
status with `Retry-After: N`). Tests assert on what was received, never on timing.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer


@dataclass(frozen=True)
class Received:
    path: str
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    actions: deque[str] = field(default_factory=deque)
    default: str = "ok"
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # when set, each request waits for it before answering: tests hold requests in flight
    gate: threading.Event | None = None
    in_flight: int = 0
    max_in_flight: int = 0

    def next(self) -> str:
        with self.lock:
            return self.actions.popleft() if self.actions else self.default

    def record(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def bodies(self, status: int | None = 200) -> list[Any]:
        """Bodies of the requests answered with `status` (None: all), in arrival order."""
        with self.lock:
            return [r.body for r in self.received if status is None or r.status == status]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CaptureServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        action = self.server.script.next()
        code, _, retry_after = action.partition(":")
        status = 200 if code == "ok" else int(code)
        script = self.server.script
        script.record(Received(self.path, status, dict(self.headers.items()), body))
        if script.gate is not None:
            script.enter()
            try:
                script.gate.wait(timeout=30)
            finally:
                script.leave()
        text = json.dumps({"status": "success" if status == 200 else "error"}).encode()
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        return


class CaptureServer(LoopbackServer):
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()  # before serving: the handler reads it
        super().__init__(0, _Handler, "capture-server")
