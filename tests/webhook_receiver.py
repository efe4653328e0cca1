"""A real HTTP receiver for outgoing webhooks: a stdlib server on a free loopback port, in a
thread, answering each POST with what the test scripts and keeping what it got."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """`answer(received)` gives (status, extra headers, seconds to wait before answering)."""

    port: int = 0
    got: list[Received] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, dict[str, str], float]] = lambda r: (200, {}, 0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, then 200."""
        queue = list(statuses)

        def answer(received: Received) -> tuple[int, dict[str, str], float]:
            return (queue.pop(0) if queue else 200), {}, 0.0

        self.answer = answer

    def kinds(self) -> list[str]:
        return [r.event["kind"] for r in self.got]


@contextmanager
def receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """Plain HTTP, or HTTPS with `tls` (a server context holding the certificate)."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            received = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
            state.got.append(received)
            status, headers, delay = state.answer(received)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
