"""The part every loopback test server shares: bind 127.0.0.1, serve in a daemon thread, stop."""

from __future__ import annotations

import socketserver
import threading
from http.server import ThreadingHTTPServer


class _Loopback(socketserver.TCPServer):
    """Bound to 127.0.0.1 (`port` 0: an ephemeral one), served from a daemon thread at once."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[socketserver.BaseRequestHandler], name: str) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


class LoopbackServer(_Loopback, ThreadingHTTPServer):
    """An HTTP server (its handler a `BaseHTTPRequestHandler`)."""


class LoopbackTCPServer(_Loopback, socketserver.ThreadingTCPServer):
    """A raw TCP server, for a test whose other side must say what no HTTP server would."""
