"""The teacher: an async client that samples K replies from an OpenAI-compatible chat server.

    teacher = TeacherClient(cfg.sft.teacher)            # base_url, model, api_key_env, samples, ...
    replies = await teacher.sample([{"role": "user", "content": prompt}])   # K reply texts
    await teacher.aclose()

K replies come from one request with `n=K` (vLLM, SGLang, OpenAI) or, with
`n_per_request: false`, from K requests of one reply each (servers without `n`, e.g. DeepSeek's
API). Requests run at most `concurrency` at a time, each attempt bounded by `timeout_s`; 429,
5xx, timeouts and connection errors are retried with exponential backoff (`backoff_s`, doubling,
capped at `max_backoff_s`, or the server's Retry-After) up to `max_attempts`; other HTTP errors
fail at once. A server that answers with fewer choices than asked raises a UserError that says
to set `n_per_request: false`.

Reasoning servers that return the thinking apart from the answer (`message.reasoning_content`
or `message.reasoning`) get it put back as `<think>...</think>` before the answer, the form SFT
trains on; a reply that closes a block its chat template opened (`...</think>answer`) gets its
`<think>` back. The API key is read from the environment variable `api_key_env`, sent as a Bearer
token, and never appears in reprs, errors or files.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from longrl.errors import UserError
from longrl.sft.config import TeacherConfig


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
    """Samples replies from `cfg.base_url`; one httpx.AsyncClient per event loop."""

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests = 0          # HTTP attempts made (for reports and tests)

    def __repr__(self) -> str:
        return f"TeacherClient(url={self.url!r}, model={self.cfg.model!r}, api_key_env={self.cfg.api_key_env!r})"

    async def sample(self, messages: list[dict[str, str]]) -> list[str]:
        """`cfg.samples` replies to `messages`, in the server's order. Raises TeacherError."""
        k = self.cfg.samples
        if self.cfg.n_per_request:
            return await self._request(messages, k)
        replies = await asyncio.gather(*(self._request(messages, 1) for _ in range(k)))
        return [text for reply in replies for text in reply]

    async def aclose(self) -> None:
        client, loop = self._client, self._loop
        self._client, self._gate, self._loop = None, None, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:   # clients belong to the loop that made them
            limits = httpx.Limits(max_connections=self.cfg.concurrency, max_keepalive_connections=self.cfg.concurrency)
            self._client, self._gate, self._loop = httpx.AsyncClient(limits=limits), asyncio.Semaphore(self.cfg.concurrency), loop
        return self._client, self._gate

    async def _request(self, messages: list[dict[str, str]], n: int) -> list[str]:
        cfg = self.cfg
        client, gate = self._session()
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                                "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        if n > 1:
            body["n"] = n
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        error = "no attempt made"
        for attempt in range(1, cfg.max_attempts + 1):
            delay = min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (attempt - 1))
            async with gate:
                self.requests += 1
                try:
                    response = await client.post(self.url, json=body, headers=headers, timeout=cfg.timeout_s)
                except httpx.TimeoutException:
                    error = f"timed out after {cfg.timeout_s:g} s"
                    response = None
                except httpx.TransportError as exc:
                    error = f"connection error ({type(exc).__name__}: {exc})"
                    response = None
            if response is not None:
                if response.status_code == 200:
                    return self._read(response, n)
                error = f"HTTP {response.status_code}: {_snippet(response.text)}"
                if response.status_code == 401 and not self._api_key:
                    error += f" (no API key sent: environment variable {cfg.api_key_env} is not set)"
                if response.status_code != 429 and response.status_code < 500:
                    raise TeacherError(self._redact(f"teacher {cfg.model!r} at {self.url}: {error}"))
                delay = min(cfg.max_backoff_s, _retry_after(response) or delay)
            if attempt < cfg.max_attempts:
                await asyncio.sleep(delay)
        raise TeacherError(self._redact(f"teacher {cfg.model!r} at {self.url}: {error} "
                                        f"(gave up after {cfg.max_attempts} attempts)"))

    def _read(self, response: httpx.Response, n: int) -> list[str]:
        try:
            choices = response.json()["choices"]
            texts = [reply_text(c["message"]) for c in sorted(choices, key=lambda c: c.get("index", 0))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TeacherError(self._redact(f"teacher at {self.url}: malformed reply (not a chat completion): "
                                            f"{_snippet(response.text)}")) from None
        if len(texts) != n:
            raise UserError(f"teacher at {self.url} returned {len(texts)} choices for n={n}; if the server ignores "
                            "`n`, set sft.teacher.n_per_request=false")
        return texts

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
