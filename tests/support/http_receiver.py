"""A real HTTP notification receiver on 127.0.0.1 for integration tests.

It records every POST it processes and answers from a per-message script (500, 503, 422,
429, hang, slow, ok), so tests assert on what the receiver saw, never on timing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer

HANG_S = 1.0  # longer than the tests' client timeouts: the client gives up, the server still processes
SLOW_S = 0.05  # slower than usual but inside the timeout (unless the machine is very busy)
SLUGGISH_S = 2.0  # a receiver that takes seconds per request ("sluggish" action)


@dataclass
class Post:
    message_id: str
    status: int
    body: dict[str, Any]
    idempotency_key: str


@dataclass
class Recorder:
    """Shared by the handler threads: the failure script and what was processed."""

    script: dict[str, list[str]] = field(default_factory=dict)  # message_id -> actions per attempt
    # (message_id, attempt) -> action for ids without a script: faults for ids not known in advance
    fallback: Callable[[str, int], str] | None = None
    posts: list[Post] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tries: Counter[str] = field(default_factory=Counter)

    def next_action(self, message_id: str) -> str:
        with self.lock:
            n = self._tries[message_id]
            self._tries[message_id] += 1
        actions = self.script.get(message_id)
        if actions is None and self.fallback is not None:
            return self.fallback(message_id, n)
        actions = actions or []
        return actions[n] if n < len(actions) else "ok"

    def record(self, post: Post) -> None:
        with self.lock:
            self.posts.append(post)

    def ok_ids(self) -> list[str]:
        with self.lock:
            return [p.message_id for p in self.posts if 200 <= p.status < 300]

    def all_ids(self) -> set[str]:
        with self.lock:
            return {p.message_id for p in self.posts}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers.get("Idempotency-Key", "")
        action = self.server.recorder.next_action(key)
        headers: dict[str, str] = {}
        if action in ("500", "503", "422"):
            status = int(action)
        elif action == "429":
            status, headers = 429, {"Retry-After": "0"}
        else:
            status = 202
        # Recorded on arrival, before any delay: a hung request was processed by the receiver
        # even though the client never sees the answer.
        self.server.recorder.record(Post(body.get("message_id", ""), status, body, key))
        if action == "hang":
            time.sleep(HANG_S)
        elif action == "slow":
            time.sleep(SLOW_S)
        elif action == "sluggish":
            time.sleep(SLUGGISH_S)
        text = json.dumps({"status": status, "action": action}).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away

    def log_message(self, format: str, *args: Any) -> None:
        return


class RecordingServer(LoopbackServer):
    def __init__(self, port: int, recorder: Recorder) -> None:
        self.recorder = recorder  # before serving: the handler reads it
        super().__init__(port, Handler, "notify-test-server")
