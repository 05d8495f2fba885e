"""A real OpenAI-compatible judge server on 127.0.0.1 (the outside world the reward talks to).

Used through the `judge_server` fixture (conftest.py):

    def test_x(judge_server):
        judge_server.script = [Reply(status=429), Reply(content="ok [[YES]]")]  # consumed in order
        judge_server.decide = lambda body: Reply(content="[[NO]]")          # after the script
        judge_server.url         # http://127.0.0.1:PORT/v1
        judge_server.requests    # list of requests received (.path, .headers, .body)
        judge_server.max_in_flight  # most requests handled at once

By default the server answers [[YES]] when the prediction field equals one of the gold lines
(case-insensitive), else [[NO]], like a sensible judge would; it reads longrl's prompt (a JSON object) and the
published one ("Answer 1" the prediction, "Answer 2" the gold). The HTTP side is tests/loopback.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from loopback import Answer, ScriptedServer, Seen


@dataclass
class Reply(Answer):
    content: str | None = "Equivalent. [[YES]]"  # the assistant message (unless `body` or `json` is given)

    def __post_init__(self):
        if self.body is None and self.json is None:
            self.json = {"id": "x", "object": "chat.completion",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": self.content}}],
                         "usage": {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100}}


def field_of(body: dict, name: str) -> str:
    """A field ("question", "prediction", "gold") of the JSON object in the user message of a longrl judge request."""
    user = body["messages"][-1]["content"]
    start = user.find("{")
    if start < 0:
        return ""
    try:
        fields, _ = json.JSONDecoder().raw_decode(user, start)
    except ValueError:
        return ""
    return fields.get(name, "") if isinstance(fields, dict) else ""


PUBLISHED_USER_RE = re.compile(r"\nProblem: (.*)\nAnswer 1: (.*)\nAnswer 2: (.*)\n", re.DOTALL)


def published_fields(body: dict) -> dict[str, str] | None:
    """question, prediction and gold of a request in the published prompt's shape; None for another prompt."""
    match = PUBLISHED_USER_RE.fullmatch(body["messages"][-1]["content"])
    return None if match is None else dict(zip(("question", "prediction", "gold"), match.groups()))


def sensible(body: dict) -> Reply:
    fields = published_fields(body) or {name: field_of(body, name) for name in ("prediction", "gold")}
    prediction = fields["prediction"].strip().lower()
    golds = [g.removeprefix("- ").strip().lower() for g in fields["gold"].split("\n")]
    verdict = "[[YES]]" if prediction in golds else "[[NO]]"
    return Reply(content=f"Comparing the two answers. {verdict}")


class JudgeServer(ScriptedServer):
    """`decide(body) -> Reply` answers once the script is spent (body: the parsed request JSON)."""

    def __init__(self, decide: Callable[[dict], Reply] = sensible):
        super().__init__()
        self.decide = decide

    def respond(self, seen: Seen) -> Answer:
        return self.decide(seen.body)
