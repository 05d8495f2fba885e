"""The server backend: any OpenAI-compatible `/chat/completions` or `/completions` endpoint.

    backend = OpenAIBackend("http://127.0.0.1:8000/v1", model_name="QwenLong-L1-32B", tokenizer=tok)
    completions = await backend.complete([request], n=4, params)

What `vllm serve`, SGLang and hosted APIs expose. `api="chat"` sends the user turn and lets the
server apply its chat template; `api="completions"` sends the prompt longrl rendered with the
tokenizer's template. One request asks for all n samples (`"n"`, one prefill on vLLM/SGLang)
unless `request_n` is off (APIs without `n`: n requests with seeds seed+0..seed+n-1). A reply
whose reasoning comes apart (`reasoning_content` or `reasoning`, as vLLM's reasoning parsers and
DeepSeek return it) is put back together as `<think>reasoning</think>answer`, so verification
sees the reply the model wrote.

Requests go through `longrl.http.OpenAIClient` (connections in lanes of 8 per httpx client: one
64-connection pool spends more CPU than the requests): at most `concurrency` in flight; each
attempt is bounded by `timeout_s`; 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (`backoff_s`, doubling, capped at MAX_BACKOFF_S, or the server's Retry-After
under an hour) up to `max_attempts`; other HTTP errors and malformed replies fail at once with a
BackendError that names the server and the item. The API key comes from the environment variable
`api_key_env`, is sent as a Bearer token and never appears in messages.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from longrl.errors import UserError
from longrl.eval.protocol import Completion, GenerationParams, Request
from longrl.eval.server_tokenizer import ServerTokenizer
from longrl.http import OpenAIClient, RetryPolicy, ServerError, snippet

MAX_BACKOFF_S = 60.0  # cap on one wait between attempts (EvalConfig has no knob for it)


class BackendError(UserError):
    """A model server failed for good on a request (after retries) or answered something unusable."""


class OpenAIBackend:
    batch_size = 1
    needs_ids = False

    def __init__(self, base_url: str, model_name: str | None = None, tokenizer=None, api: str = "chat",
                 concurrency: int = 64, timeout_s: float = 600.0, max_attempts: int = 3, backoff_s: float = 1.0,
                 request_n: bool = True, api_key_env: str | None = "LONGRL_API_KEY"):
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        self.model_name, self.tokenizer, self.api = model_name, tokenizer, api
        self.parallelism, self.request_n, self.api_key_env = concurrency, request_n, api_key_env
        retry = RetryPolicy(max_attempts, backoff_s, MAX_BACKOFF_S, timeout_s)
        self._client = OpenAIClient(base_url, api_key_env=api_key_env, concurrency=concurrency, retry=retry)
        self.base_url = self._client.base_url  # shown in messages: URL credentials replaced by ***
        self._name_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None  # per event loop

    @classmethod
    def from_config(cls, cfg, tokenizer) -> OpenAIBackend:
        """From an EvalConfig whose `model` is the server's base URL."""
        return cls(cfg.model, cfg.model_name, tokenizer, cfg.api, cfg.concurrency, cfg.timeout_s, cfg.max_attempts,
                   cfg.backoff_s, cfg.request_n, cfg.api_key_env)

    @property
    def name(self) -> str:
        """The served model's name: what identifies results (the server may move to another address)."""
        return self.model_name or "?"

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.base_url!r}, model={self.model_name!r}, api_key_env={self.api_key_env!r})"

    async def complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]:
        await self.resolve_model_name()
        return list(await asyncio.gather(*(self._complete_one(r, n, params) for r in requests)))

    async def resolve_model_name(self) -> str:
        """`model_name`, or the first model id the server lists at GET /models."""
        if self.model_name is not None:
            return self.model_name
        loop = asyncio.get_running_loop()
        if self._name_lock is None or self._name_lock[0] is not loop:
            self._name_lock = (loop, asyncio.Lock())
        async with self._name_lock[1]:
            if self.model_name is None:
                payload = await self._send("GET", "/models", None, "listing models")
                try:
                    self.model_name = str(payload["data"][0]["id"])
                except (KeyError, IndexError, TypeError):
                    raise BackendError(f"{self.base_url}/models lists no model; pass --model-name NAME") from None
        return self.model_name

    async def _complete_one(self, request: Request, n: int, params: GenerationParams) -> list[Completion]:
        if self.request_n or n == 1:
            return await self._call(request, n, request.seed, params)
        parts = await asyncio.gather(*(self._call(request, 1, request.seed + j, params) for j in range(n)))
        return [c for part in parts for c in part]

    async def _call(self, request: Request, n: int, seed: int, params: GenerationParams) -> list[Completion]:
        body: dict[str, Any] = {"model": self.model_name, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "top_p": params.top_p, "n": n, "seed": seed}
        if params.top_k > 0:
            body["top_k"] = params.top_k  # a vLLM / SGLang extension
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt.user}]
            path = "/chat/completions"
        else:
            body["prompt"] = request.prompt.text
            path = "/completions"
        payload = await self._send("POST", path, body, request.key)
        if isinstance(self.tokenizer, ServerTokenizer):   # counting tokens is an HTTP call: off the event loop
            return await asyncio.to_thread(self._read_choices, payload, n, request.key)
        return self._read_choices(payload, n, request.key)

    def _read_choices(self, payload: Any, n: int, key: str) -> list[Completion]:
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            texts = [self._choice_text(c) for c in choices]
            finishes = [c.get("finish_reason") for c in choices]
        except (KeyError, TypeError, AttributeError):
            raise BackendError(f"{key}: malformed reply from {self.base_url} (no {self.api} choices): {snippet(json.dumps(payload))}") from None
        if len(texts) != n:
            raise BackendError(f"{key}: asked {self.base_url} for {n} samples, got {len(texts)}; "
                               "if the server ignores `n`, set eval.request_n=false")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        reported = usage.get("completion_tokens")
        completions = []
        for text, finish in zip(texts, finishes):
            if n == 1 and isinstance(reported, int) and not isinstance(reported, bool):
                tokens = reported
            else:
                tokens = self._count(text)
            completions.append(Completion(text, tokens, finish == "length"))
        return completions

    def _choice_text(self, choice: dict) -> str:
        if self.api == "completions":
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("text")
            return text
        message = choice["message"]
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if not isinstance(content, str) or (reasoning is not None and not isinstance(reasoning, str)):
            raise TypeError("content")
        if reasoning:
            return f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"
        return content

    def _count(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.split())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            return len(backend.encode_batch_fast([text], add_special_tokens=False)[0]) if hasattr(backend, "encode_batch_fast") \
                else len(backend.encode(text, add_special_tokens=False))
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    async def _send(self, method: str, path: str, body: dict | None, what: str) -> Any:
        try:
            return (await self._client.request(method, path, body)).payload
        except ServerError as exc:
            raise BackendError(self._client.redact(f"{what}: model server {exc.url}: {exc.problem}")) from None

    async def aclose(self) -> None:
        await self._client.aclose()
