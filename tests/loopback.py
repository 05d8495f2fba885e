"""A scripted HTTP server on 127.0.0.1: the outside world for tests of longrl's server clients.

    from loopback import Answer, ScriptedServer

    with ScriptedServer(lambda seen: Answer(json={"choices": []})) as server:   # the default answer
        server.script = [Answer(429, headers={"Retry-After": "0"}), Answer(delay=1.0)]  # consumed first, in order
        server.url             # http://127.0.0.1:PORT/v1
        server.requests        # [Seen(method, path, headers, body, at)] in arrival order (body: parsed JSON)
        server.max_in_flight   # most requests being answered at once

One thread per connection (keep-alive HTTP/1.1), so delays overlap as on a real inference server.
Used by tests/test_http.py and tests/rewards/judge_server.py (imported as `loopback`: tests/ is on
sys.path under pytest's default import mode).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    json: Any = None              # JSON body (used when `body` is None)
    body: str | None = None       # raw body, sent as is
    delay: float = 0.0            # seconds before answering
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str                     # as requested, e.g. /v1/chat/completions
    headers: dict[str, str]
    body: Any                     # parsed JSON; the raw text when it is not JSON; None for GET
    at: float                     # time.monotonic() on arrival


class ScriptedServer:
    """Answers each request with the next `script` entry, else `decide(seen)`."""

    def __init__(self, decide: Callable[[Seen], Answer] = lambda seen: Answer(json={})):
        self.decide = decide
        self.script: list[Answer] = []
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall

            def do_GET(self):  # noqa: N802 (http.server's naming)
                owner._serve(self, None)

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8", "replace")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                owner._serve(self, body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _serve(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        seen = Seen(handler.command, handler.path, dict(handler.headers), body, time.monotonic())
        with self.lock:
            self.requests.append(seen)
            answer = self.script.pop(0) if self.script else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if answer is None:
            answer = self.respond(seen)
        time.sleep(answer.delay or 0.001)
        with self.lock:
            self.in_flight -= 1
        data = (answer.body if answer.body is not None else json.dumps(answer.json)).encode()
        try:
            handler.send_response(answer.status)
            for key, value in answer.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away

    def respond(self, seen: Seen) -> Answer:
        """The answer once the script is spent (subclasses may read the request their own way)."""
        return self.decide(seen)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
