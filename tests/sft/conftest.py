"""Fixtures of the SFT tests: a real OpenAI-compatible teacher server on 127.0.0.1 (the outside world).

    def test_x(teachers):
        server = teachers.start(answer)     # answer(body, question) -> list of reply texts, or teachers.Fail(...)
        server.url                          # http://127.0.0.1:PORT/v1
        server.requests                     # [(question, body, headers)] in arrival order
                                            # every server started is closed after the test

`question` is the item's question, read back from the method.md prompt in the user message, so
a test can script replies per item. A handler returning `Fail(status, retry_after)` answers with
that HTTP status instead. Everything is reached through the fixture (no test-directory imports).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Fail:
    status: int
    retry_after: str | None = None


def question_of(body: dict) -> str:
    user = body["messages"][-1]["content"]
    match = re.search(r"</text>\n\n(.*?)\n\n(?:\([A-J]\) |Format your response)", user, re.DOTALL)
    return match.group(1) if match else ""


class TeacherServer:
    def __init__(self, answer: Callable[[dict, str], list[str] | Fail]):
        self.answer = answer
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                question = question_of(body)
                with owner.lock:
                    owner.requests.append((question, body, dict(self.headers)))
                reply = owner.answer(body, question)
                if isinstance(reply, Fail):
                    payload = json.dumps({"error": {"message": "scripted failure"}}).encode()
                    self.send_response(reply.status)
                    if reply.retry_after is not None:
                        self.send_header("Retry-After", reply.retry_after)
                else:
                    choices = [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                               for i, text in enumerate(reply)]
                    payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                          "choices": choices, "usage": {"total_tokens": 10}}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def questions(self) -> list[str]:
        with self.lock:
            return [q for q, _, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Teachers:
    Fail = Fail

    def __init__(self):
        self.servers: list[TeacherServer] = []

    def start(self, answer: Callable[[dict, str], list[str] | Fail]) -> TeacherServer:
        server = TeacherServer(answer)
        self.servers.append(server)
        return server


@pytest.fixture()
def teachers():
    found = Teachers()
    yield found
    for server in found.servers:
        server.close()
