"""Retrying JSON requests to an OpenAI-compatible server: the HTTP layer under the LLM judge
(`rewards/judge.py`), the eval model backend (`eval/remote.py`) and the SFT teacher (`sft/teacher.py`).

    client = OpenAIClient("http://127.0.0.1:8000/v1", api_key_env="LONGRL_API_KEY", concurrency=32,
                          retry=RetryPolicy(max_attempts=3, backoff_s=1.0, max_backoff_s=60.0, timeout_s=600.0))
    reply = await client.request("POST", "/chat/completions", {"model": "m", "messages": [...]})
    reply.payload["choices"], reply.attempts       # the parsed JSON body; HTTP attempts it took
    await client.aclose()

What `vllm serve`, SGLang and hosted APIs expose. At most `concurrency` requests are in flight
(a request waiting out its backoff holds no slot); each attempt is bounded by `timeout_s`; 429,
5xx, timeouts and connection errors are retried with exponential backoff (`backoff_s`, doubling,
capped at `max_backoff_s`), or after the server's Retry-After when it gives one under an hour (also
capped), up to `max_attempts`. Other HTTP statuses and a 200 whose body is not JSON fail at once.
Failures raise ServerError, whose `problem` the callers put in their own words.

The API key is read from the environment variable `api_key_env` (unset: no key is sent, and a 401
says which variable to set, so keyless local servers work with the default config), sent as a
Bearer token, and replaced by "***" in every error text, in any encoding a server may echo it in
(raw, JSON-escaped, percent-encoded: `longrl.secrets`); reprs never hold it. Credentials in the
base URL (`http://user:key@host/v1`) are used for the requests but shown as `http://***@host/v1`
(`base_url`, `url()`, errors) and redacted like the key. A reply's lone UTF-16 surrogates (`"\\ud800"`, half
a character, which no UTF-8 file takes) become U+FFFD: a server's text is output to keep, not input to refuse.

Connections: `concurrency` slots spread over lanes of LANE_CONNECTIONS keep-alive connections, one
httpx.AsyncClient per lane, sharing one TLS context. A single httpx pool rescans all its connections
(and, for each idle one, all of them again) on every request: one client with 64 connections spent
more CPU than everything else in an evaluation (2.5-3.3x slower; benchmarks/eval.md). Clients belong
to the event loop that made them; a new loop gets new ones.

Run its tests: `python -m pytest tests/test_http.py -q`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from longrl.errors import UserError
from longrl.limits import replace_lone_surrogates
from longrl.secrets import display_url, redact, url_secrets

LANE_CONNECTIONS = 8        # connections per httpx client: its pool does work quadratic in its size on every request
MAX_RETRY_AFTER_S = 3600.0  # a Retry-After of an hour or more is not a retry hint: ignored (exponential backoff instead)


class ServerError(UserError):
    """A request that failed for good: `problem` says why (no secrets), after `attempts` HTTP attempts;
    `status` is the last HTTP status (None when there was no reply)."""

    def __init__(self, url: str, problem: str, attempts: int, status: int | None = None):
        self.url, self.problem, self.attempts, self.status = url, problem, attempts, status
        super().__init__(f"{url}: {problem}")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3        # tries per request; 429 / 5xx / timeouts / connection errors are retried
    backoff_s: float = 1.0       # wait before the 2nd attempt; doubles each attempt
    max_backoff_s: float = 60.0  # cap on one wait (the server's Retry-After included)
    timeout_s: float = 600.0     # per attempt


@dataclass(frozen=True)
class Reply:
    payload: Any   # the parsed JSON body of the 200 reply
    attempts: int  # HTTP attempts it took (1 = the first)


def backoff_delay(attempt: int, backoff_s: float, max_backoff_s: float, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one.

    The server's Retry-After when it gave one, else backoff_s * 2^(attempt-1); either capped at max_backoff_s.
    Example: backoff_s=0.5, max_backoff_s=30 -> 0.5, 1, 2, 4, ... 16, 30, 30; Retry-After 3 -> 3; 120 -> 30.
    """
    wait = retry_after if retry_after is not None else backoff_s * 2.0 ** min(attempt - 1, 64)
    return min(max_backoff_s, wait)


def is_retryable(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 429 (rate limited) and 5xx (server trouble)."""
    return status == 429 or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header value; None when absent, not a number, negative or >= 1 hour.

    "2" -> 2.0, "0.5" -> 0.5, "0" -> 0.0, "-1" -> None, "7200" -> None, "Wed, 21 Oct 2026 07:28:00 GMT" -> None.
    """
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < MAX_RETRY_AFTER_S else None  # nan fails both


def snippet(text: str, limit: int = 200) -> str:
    """`text` on one line (whitespace runs collapsed), cut to `limit` characters plus "..." when longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def api_key_from_env(name: str | None) -> str:
    """The API key in environment variable `name`, surrounding whitespace removed; "" when name is None or unset.

    Raises UserError (naming the variable, never the value) when the key holds characters an HTTP
    header cannot carry, rather than failing later with the key inside a transport error.
    """
    key = os.environ.get(name, "").strip() if name else ""
    if any(not 32 <= ord(c) < 127 for c in key):
        raise UserError(f"environment variable {name} holds characters an API key cannot have "
                        "(control or non-ASCII characters); set it to the key alone")
    return key


def tls_context() -> ssl.SSLContext:
    """The system's trust store plus certifi's (building one costs ~30 ms: make one, share it)."""
    context = ssl.create_default_context()
    try:
        import certifi  # optional: an extra trust store when installed

        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return context


class OpenAIClient:
    """Retrying JSON requests to one server; `attempts` counts the HTTP attempts made."""

    def __init__(self, base_url: str, *, api_key_env: str | None, concurrency: int, retry: RetryPolicy,
                 lane_connections: int = LANE_CONNECTIONS):
        if concurrency < 1 or lane_connections < 1:
            raise ValueError(f"concurrency and lane_connections must be >= 1, got {concurrency} and {lane_connections}")
        self._base_url = base_url.rstrip("/")           # what requests go to (credentials included)
        self.base_url = display_url(self._base_url)     # what is shown: credentials replaced by ***
        self.api_key_env, self.concurrency, self.retry, self.lane_connections = api_key_env, concurrency, retry, lane_connections
        self._api_key = api_key_from_env(api_key_env)
        self._secrets = [self._api_key, *url_secrets(self._base_url)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes: list[httpx.AsyncClient] = []
        self._slots: asyncio.Queue[int] | None = None  # one entry per request that may be in flight: its lane
        self._tls: ssl.SSLContext | None = None
        self.attempts = 0

    def __repr__(self) -> str:
        return f"OpenAIClient(url={self.base_url!r}, api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"

    def url(self, path: str) -> str:
        """The full URL of `path` ("/chat/completions") on this server, as shown (no credentials)."""
        return self.base_url + path

    def redact(self, text: str) -> str:
        """`text` with the API key and the URL's credentials replaced by "***", in any encoding."""
        return redact(text, self._secrets)

    async def request(self, method: str, path: str, body: dict | None = None) -> Reply:
        """Send `body` as JSON to `path`, retrying as the policy says; the parsed 200 reply.

        Raises:
            ServerError: a non-retryable status, a 200 that is not JSON, or the last failure once
                `max_attempts` are spent ("... (gave up after N attempts)").
        """
        url, retry = self._base_url + path, self.retry
        problem, status = "no attempt made", None
        for attempt in range(1, retry.max_attempts + 1):
            retry_after, status = None, None
            try:
                response = await self._send(method, url, body)
            except httpx.TimeoutException:
                problem = f"timed out after {retry.timeout_s:g} s"
            except httpx.TransportError as exc:
                problem = f"connection error ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return Reply(replace_lone_surrogates(response.json()), attempt)   # model text: U+FFFD
                    except ValueError:
                        raise self._error(url, f"malformed reply (not JSON): {snippet(response.text)}", attempt, status) from None
                problem = self._status_problem(response)
                if not is_retryable(status):
                    raise self._error(url, problem, attempt, status)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt < retry.max_attempts:
                await asyncio.sleep(backoff_delay(attempt, retry.backoff_s, retry.max_backoff_s, retry_after))
        raise self._error(url, f"{problem} (gave up after {retry.max_attempts} attempts)", retry.max_attempts, status)

    async def aclose(self) -> None:
        """Close the connections (those of an earlier, finished event loop are only dropped)."""
        lanes, loop = self._lanes, self._loop
        self._lanes, self._slots, self._loop = [], None, None
        if loop is asyncio.get_running_loop():
            for client in lanes:
                await client.aclose()

    async def _send(self, method: str, url: str, body: dict | None) -> httpx.Response:
        """One attempt, in a slot (the reply body is read before the slot is given back)."""
        slots = self._session()
        lane = await slots.get()
        try:
            self.attempts += 1
            return await self._lanes[lane].request(method, url, json=body, headers=self._headers(), timeout=self.retry.timeout_s)
        finally:
            slots.put_nowait(lane)

    def _session(self) -> asyncio.Queue[int]:
        """The slots of this event loop, with their lanes made on first use."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:  # clients belong to the loop that made them
            if self._tls is None:
                self._tls = tls_context()
            per_lane = self.lane_connections
            sizes = [min(per_lane, self.concurrency - start) for start in range(0, self.concurrency, per_lane)]
            self._lanes = [httpx.AsyncClient(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                                             verify=self._tls) for n in sizes]
            self._slots = asyncio.Queue()
            for lane, n in enumerate(sizes):
                for _ in range(n):
                    self._slots.put_nowait(lane)
            self._loop = loop
        return self._slots

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _status_problem(self, response: httpx.Response) -> str:
        problem = f"HTTP {response.status_code}: {snippet(response.text)}"
        if response.status_code == 401 and not self._api_key:
            problem += (f" (no API key sent: environment variable {self.api_key_env} is not set)" if self.api_key_env
                        else " (no API key sent: no api_key_env is configured)")
        return problem

    def _error(self, url: str, problem: str, attempts: int, status: int | None = None) -> ServerError:
        return ServerError(self.redact(display_url(url)), self.redact(problem), attempts, status)
