"""A canned OpenAI-compatible server on 127.0.0.1, for benchmarks and tests of the server backend.

    def answer(path, body):                                # -> (HTTP status, JSON payload)
        return 200, chat_reply(["<think>...</think> Therefore, the answer is 42."])

    with LoopbackServer(answer, latency_s=0.2) as server:  # server.url = "http://127.0.0.1:PORT/v1"
        ...
    server.requests                                        # [(path, body), ...] in arrival order
    server.headers                                         # their headers (dicts), same order

One thread per connection (keep-alive HTTP/1.1), so `latency_s` is paid concurrently, as by a
real inference server. It stands in for `vllm serve`; it never leaves the loopback interface.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[str, Any], tuple[int, Any]]


def chat_reply(texts: list[str], finish: str = "stop", completion_tokens: int | None = None) -> dict[str, Any]:
    """A /chat/completions payload with one choice per text."""
    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish} for i, t in enumerate(texts)]
    usage = {"completion_tokens": completion_tokens} if completion_tokens is not None else {}
    return {"object": "chat.completion", "choices": choices, "usage": usage}


def completion_reply(texts: list[str], finish: str = "stop") -> dict[str, Any]:
    """A /completions payload with one choice per text."""
    return {"object": "text_completion", "choices": [{"index": i, "text": t, "finish_reason": finish} for i, t in enumerate(texts)]}


class LoopbackServer:
    """`handler(path, body)` answers every request after `latency_s`; GET requests get body None."""

    def __init__(self, handler: Handler, latency_s: float = 0.0):
        self.handler, self.latency_s = handler, latency_s
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""  # set on start: http://127.0.0.1:PORT/v1

    def __enter__(self) -> LoopbackServer:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return None

            def _serve(self, body: Any) -> None:
                path = self.path[3:] if self.path.startswith("/v1") else self.path
                with server._lock:
                    server.requests.append((path, body))
                    server.headers.append(dict(self.headers.items()))
                if server.latency_s:
                    time.sleep(server.latency_s)
                status, payload = server.handler(path, body)
                data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._serve(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                self._serve(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = Server(("127.0.0.1", 0), RequestHandler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
