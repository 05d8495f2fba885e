"""The teacher: an async client that samples K replies from an OpenAI-compatible chat server.

    teacher = TeacherClient(cfg.sft.teacher)            # base_url, model, api_key_env, samples, ...
    replies = await teacher.sample([{"role": "user", "content": prompt}])   # K reply texts
    await teacher.aclose()

K replies come from one request with `n=K` (vLLM, SGLang, OpenAI) or, with
`n_per_request: false`, from K requests of one reply each (servers without `n`, e.g. DeepSeek's
API). Requests go through `longrl.http.OpenAIClient`: at most `concurrency` at a time, each
attempt bounded by `timeout_s`; 429, 5xx, timeouts and connection errors are retried with
exponential backoff (`backoff_s`, doubling, capped at `max_backoff_s`, or the server's Retry-After
under an hour, also capped) up to `max_attempts`; other HTTP errors fail at once. A server that
answers with fewer choices than asked raises a UserError that says to set `n_per_request: false`.

Reasoning servers that return the thinking apart from the answer (`message.reasoning_content`
or `message.reasoning`) get it put back as `<think>...</think>` before the answer, the form SFT
trains on; a reply that closes a block its chat template opened (`...</think>answer`) gets its
`<think>` back. The API key is read from the environment variable `api_key_env`, sent as a Bearer
token, and never appears in reprs, errors or files.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from longrl.config.sft import TeacherConfig
from longrl.errors import UserError
from longrl.http import OpenAIClient, RetryPolicy, ServerError, snippet


class TeacherError(UserError):
    """A teacher request that failed after its retries (the item is retried on the next run)."""


def reply_text(message: dict[str, Any]) -> str:
    """The reply as `<think>reasoning</think>answer` when the server split them, else its content.

    Example: {"reasoning_content": "6*7=42", "content": "Therefore, the answer is 42."}
    -> "<think>6*7=42</think>Therefore, the answer is 42."
    """
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise ValueError(f"message content is a {type(content).__name__}, not text")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() and "</think>" not in content:
        return f"<think>{reasoning.strip()}</think>{content.lstrip()}"
    if "</think>" in content and "<think>" not in content:   # the template opened the block (R1-style)
        return "<think>" + content.lstrip("\n")
    return content


class TeacherClient:
    """Samples replies from `cfg.base_url` (HTTP, retries and the key: `longrl.http.OpenAIClient`)."""

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        retry = RetryPolicy(cfg.max_attempts, cfg.backoff_s, cfg.max_backoff_s, cfg.timeout_s)
        self._client = OpenAIClient(cfg.base_url, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency, retry=retry)
        self.url = self._client.url("/chat/completions")

    def __repr__(self) -> str:
        return f"TeacherClient(url={self.url!r}, model={self.cfg.model!r}, api_key_env={self.cfg.api_key_env!r})"

    @property
    def requests(self) -> int:
        """HTTP attempts made (for reports and tests)."""
        return self._client.attempts

    async def sample(self, messages: list[dict[str, str]]) -> list[str]:
        """`cfg.samples` replies to `messages`, in the server's order. Raises TeacherError."""
        k = self.cfg.samples
        if self.cfg.n_per_request:
            return await self._request(messages, k)
        replies = await asyncio.gather(*(self._request(messages, 1) for _ in range(k)))
        return [text for reply in replies for text in reply]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, messages: list[dict[str, str]], n: int) -> list[str]:
        cfg = self.cfg
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                                "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        if n > 1:
            body["n"] = n
        try:
            payload = (await self._client.request("POST", "/chat/completions", body)).payload
        except ServerError as exc:
            raise TeacherError(self._client.redact(f"teacher {cfg.model!r} at {self.url}: {exc.problem}")) from None
        return self._read(payload, n)

    def _read(self, payload: Any, n: int) -> list[str]:
        try:
            choices = payload["choices"]
            texts = [reply_text(c["message"]) for c in sorted(choices, key=lambda c: c.get("index", 0))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TeacherError(self._client.redact(f"teacher at {self.url}: malformed reply (not a chat completion): "
                                                   f"{snippet(json.dumps(payload))}")) from None
        if len(texts) != n:
            raise UserError(f"teacher at {self.url} returned {len(texts)} choices for n={n}; if the server ignores "
                            "`n`, set sft.teacher.n_per_request=false")
        return texts
