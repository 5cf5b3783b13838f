"""A local HTTP stand-in for a provider's API, for end-to-end tests and benchmarks.

A real HTTP server on 127.0.0.1 (threads, one per connection) that answers through a Python
function. The function gets each request and returns ``(status, json_body)``, an
``(status, json_body, headers)`` triple, or ``None`` to never answer (a provider that
hangs). Every request is recorded. ``latency`` delays every answer by that many seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec


class StandInRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]] | None
Responder = Callable[[StandInRequest], Answer]


class StandIn:
    def __init__(self, respond: Responder, *, latency: float = 0.0) -> None:
        self.respond = respond
        self.latency = latency
        self.requests: list[StandInRequest] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def requests_matching(
        self, predicate: Callable[[StandInRequest], bool]
    ) -> list[StandInRequest]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the
            # client's delayed ACK (about 40 ms on Linux) on every kept-alive request.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = StandInRequest(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with stand_in._lock:
                    stand_in.requests.append(request)
                answer = stand_in.respond(request)
                if answer is None:  # hang until the stand-in stops
                    stand_in._release.wait()
                    self.close_connection = True
                    return
                if stand_in.latency:
                    time.sleep(stand_in.latency)
                status, payload, *rest = answer
                headers = rest[0] if rest else {}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog, which the constructor passes to listen(): the default of 5 drops
    # the SYNs of a burst of new connections, and each dropped one waits a whole second
    # for its retransmission, a stall no real provider would show.
    request_queue_size = 256


@contextmanager
def stand_in(respond: Responder, *, latency: float = 0.0) -> Iterator[StandIn]:
    server = StandIn(respond, latency=latency).start()
    try:
        yield server
    finally:
        server.stop()
