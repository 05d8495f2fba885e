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

At most `concurrency` requests are in flight; each attempt is bounded by `timeout_s`; 429, 5xx,
timeouts and dropped connections are retried with exponential backoff (`backoff_s`, doubling, or
the server's Retry-After) up to `max_attempts`; other HTTP errors and malformed replies fail at
once with a BackendError that names the server and the item. The API key comes from the
environment variable `api_key_env`, is sent as a Bearer token and never appears in messages.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

import certifi
import httpx

from longrl.errors import UserError
from longrl.eval.backends import Completion, GenerationParams, Request

MAX_BACKOFF_S = 60.0
LANE_CONNECTIONS = 8  # connections per httpx client: its pool does work quadratic in its size on every request


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
        self.base_url = base_url.rstrip("/")
        self.model_name, self.tokenizer, self.api = model_name, tokenizer, api
        self.parallelism, self.timeout_s, self.max_attempts, self.backoff_s = concurrency, timeout_s, max_attempts, backoff_s
        self.request_n = request_n
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes: list[httpx.AsyncClient] = []
        self._slots: asyncio.Queue[int] | None = None  # one entry per request that may be in flight: its lane
        self._name_lock: asyncio.Lock | None = None

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
        self._session()
        async with self._name_lock:
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
        return self._read_choices(payload, n, request.key)

    def _read_choices(self, payload: Any, n: int, key: str) -> list[Completion]:
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            texts = [self._choice_text(c) for c in choices]
            finishes = [c.get("finish_reason") for c in choices]
        except (KeyError, TypeError, AttributeError):
            raise BackendError(f"{key}: malformed reply from {self.base_url} (no {self.api} choices): {_snippet(str(payload))}") from None
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

    def _session(self) -> asyncio.Queue[int]:
        """The clients of this event loop, made on first use: `concurrency` slots spread over lanes of
        LANE_CONNECTIONS connections (one 64-connection httpx pool spends more CPU than the requests)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            sizes = [min(LANE_CONNECTIONS, self.parallelism - start) for start in range(0, self.parallelism, LANE_CONNECTIONS)]
            tls = ssl.create_default_context(cafile=certifi.where())  # one context for all lanes (loading CAs is slow)
            self._lanes = [httpx.AsyncClient(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                                             timeout=httpx.Timeout(self.timeout_s), verify=tls) for n in sizes]
            self._slots = asyncio.Queue()
            for lane, n in enumerate(sizes):
                for _ in range(n):
                    self._slots.put_nowait(lane)
            self._name_lock = asyncio.Lock()
            self._loop = loop
        return self._slots

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    async def _send(self, method: str, path: str, body: dict | None, what: str) -> Any:
        slots = self._session()
        url = self.base_url + path
        error = "no attempt made"
        lane = await slots.get()
        client = self._lanes[lane]
        try:
            for attempt in range(1, self.max_attempts + 1):
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                try:
                    response = await client.request(method, url, json=body, headers=self._headers())
                except httpx.TimeoutException:
                    error = f"timed out after {self.timeout_s:g} s"
                except httpx.TransportError as exc:
                    error = f"connection error ({type(exc).__name__})"
                else:
                    if response.status_code == 200:
                        try:
                            return response.json()
                        except ValueError:
                            raise self._error(what, url, f"reply is not JSON: {_snippet(response.text)}") from None
                    error = f"HTTP {response.status_code}: {_snippet(response.text)}"
                    if response.status_code == 401 and not self._api_key:
                        error += f" (no API key sent: environment variable {self.api_key_env} is not set)"
                    if response.status_code != 429 and response.status_code < 500:
                        raise self._error(what, url, error)
                    delay = min(MAX_BACKOFF_S, _retry_after(response) or delay)
                if attempt < self.max_attempts:
                    await asyncio.sleep(delay)
        finally:
            slots.put_nowait(lane)
        raise self._error(what, url, f"{error} (gave up after {self.max_attempts} attempts)")

    def _error(self, what: str, url: str, problem: str) -> BackendError:
        text = f"{what}: model server {url}: {problem}"
        return BackendError(text.replace(self._api_key, "***") if self._api_key else text)

    async def aclose(self) -> None:
        lanes, self._lanes, self._slots, self._loop = self._lanes, [], None, None
        for client in lanes:
            await client.aclose()


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None
