"""A real OpenAI-compatible judge server on 127.0.0.1 (the outside world the reward talks to).

Used through the `judge_server` fixture (conftest.py):

    def test_x(judge_server):
        judge_server.script = [Reply(status=429), Reply(content="ok [[YES]]")]  # consumed in order
        judge_server.decide = lambda body: Reply(content="[[NO]]")          # after the script
        judge_server.url         # http://127.0.0.1:PORT/v1
        judge_server.requests    # list of Request(path, headers, body) received
        judge_server.max_in_flight  # most requests handled at once

By default the server answers [[YES]] when the prediction field equals one of the gold lines
(case-insensitive), else [[NO]], like a sensible judge would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer



@dataclass
class Reply:
    status: int = 200
    content: str | None = "Equivalent. [[YES]]"  # the assistant message; None = use `body`
    body: str | None = None                      # raw response body (overrides content)
    delay: float = 0.0                           # seconds before answering
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict


def field_of(body: dict, name: str) -> str:
    """A tagged field (<prediction>...</prediction>) of the user message of a judge request."""
    user = body["messages"][-1]["content"]
    match = re.search(rf"<{name}>\n(.*?)\n</{name}>", user, re.DOTALL)
    return match.group(1) if match else ""


def sensible(body: dict) -> Reply:
    prediction = field_of(body, "prediction").strip().lower()
    golds = [g.removeprefix("- ").strip().lower() for g in field_of(body, "gold").split("\n")]
    verdict = "[[YES]]" if prediction in golds else "[[NO]]"
    return Reply(content=f"Comparing the two answers. {verdict}")


class JudgeServer:
    def __init__(self):
        self.requests: list[Request] = []
        self.script: list[Reply] = []
        self.decide: Callable[[dict], Reply] = sensible
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with owner.lock:
                    owner.requests.append(Request(self.path, dict(self.headers), body))
                    reply = owner.script.pop(0) if owner.script else None
                if reply is None:
                    reply = owner.decide(body)
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                time.sleep(reply.delay or 0.001)
                with owner.lock:
                    owner.in_flight -= 1
                if reply.body is not None:
                    data = reply.body.encode()
                else:
                    data = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                       "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": reply.content}}],
                                       "usage": {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100}}).encode()
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
