"""The HTTP side of `longrl serve`: routes, JSON in and out, authentication, admission and cancellation.

    server = ModelServer(worker, host="127.0.0.1", port=0).start()   # port 0: any free port
    server.url                                                       # http://127.0.0.1:PORT/v1
    server.close()
    ModelServer(worker, api_key=os.environ["KEY"], weights_root="runs", limits=ServeLimits(max_connections=200))

Routes (SGLang's names where SGLang has one, so longrl's rollout client speaks one protocol to both):
    GET  /v1/models                     the served model (id, root path, context window)
    POST /v1/completions                prompt as text or token ids; n; token ids out (return_token_ids)
    POST /v1/chat/completions           messages through the tokenizer's chat template
    POST /update_weights_from_disk      {model_path, weight_version?}: load a safetensors folder under the weights root
    GET  /model_info, /get_weight_version   the weight version (and model path)
    GET  /health                        never needs the API key
Errors are OpenAI-style JSON (`{"error": {"message", "type", "code"}}`): 400 (bad request, or a
request over the work cap), 401 (API key missing or wrong), 404 (unknown route or model), 408 / 411 /
413 / 431 (the transport's bounds: `serve/transport.py`), 429 + Retry-After (too many prompts
queued), 503 (connections or bodies at their cap, or shutting down), 500 (the model failed). A refused
reload answers `{"success": false, "message": ...}` as SGLang does: 400 (a bad folder), 403 (outside
the weights root, or no root: reloads off), 429 (another reload is running).

Connections live on one asyncio event loop (`serve/transport.py`); request bodies are parsed, and
replies built, on a small thread pool (IO_THREADS), generation runs on the model thread
(`serve/worker.py`). A request whose client goes away while it waits or decodes is cancelled: taken
out of the queue, or its batch stopped at the next decode step once none of its requests has a
client left. Access (API key, weights root, server-named versions): `serve/access.py`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from longrl.engine.generate import stop_token_ids
from longrl.limits import LimitError, load_json
from longrl.models.weights import WeightsError
from longrl.serve.access import Forbidden, check_key, new_version, weights_folder
from longrl.serve.limits import ServeLimits
from longrl.serve.protocol import RequestError, Served, build_reply, parse_chat, parse_completion
from longrl.serve.transport import HttpTransport, Request, Response, error, error_body
from longrl.serve.worker import ModelWorker, QueueFull

CHAT_MAX_TOKENS = 512          # max_tokens of a chat request that gives none (capped by the context window)
IO_THREADS = 4                 # threads that parse request bodies and build replies
MAX_BODY_BYTES = ServeLimits().max_body_bytes


class ModelServer:
    """An OpenAI-compatible HTTP server in front of a ModelWorker.

    Args:
        worker: the model thread.
        host, port: where to listen (port 0: any free port).
        chat_max_tokens: max_tokens of a chat request that gives none.
        api_key: when set, every route but GET /health needs `Authorization: Bearer <api_key>`.
        weights_root: reloads load folders inside it only; None: reloads are refused (403).
        limits: connection, size, time and queue bounds (`serve/limits.py`).
    """

    def __init__(self, worker: ModelWorker, host: str = "127.0.0.1", port: int = 8000,
                 chat_max_tokens: int = CHAT_MAX_TOKENS, *, api_key: str | None = None,
                 weights_root: str | Path | None = None, limits: ServeLimits | None = None):
        self.worker, self.chat_max_tokens = worker, chat_max_tokens
        self.limits = limits or ServeLimits()
        self.api_key = api_key or None
        self.weights_root = Path(weights_root).resolve() if weights_root is not None else None
        if self.weights_root is not None and not self.weights_root.is_dir():
            raise ValueError(f"the weights root {weights_root} is not a folder")
        worker.max_queued_prompts = self.limits.max_queued_prompts
        model, tokenizer = worker.model, worker.tokenizer
        self.served = Served(name=worker.name, tokenizer=tokenizer, stops=stop_token_ids(tokenizer, model),
                             vocab_size=int(model.config.vocab_size),
                             context=int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30),
                             max_request_tokens=self.limits.max_request_tokens)
        self.cancelled = 0                       # generation requests dropped because their client left
        self._reloading = threading.Lock()
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="longrl-serve-io")
        self.transport = HttpTransport(host, port, self, self.limits)
        self.host, self.port = host, self.transport.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ModelServer:
        """Serve from a background thread; returns at once (`running` says whether it still serves)."""
        self.transport.start()
        return self

    def running(self) -> bool:
        """Whether the serving thread is up (started and not closed)."""
        return self.transport.running()

    def close(self) -> None:
        self.transport.close()
        self.worker.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the transport's application interface -------------------------------------------------
    def admit(self, request: Request) -> Response | None:
        """On the request head, before any body is read: the API key."""
        if self.api_key is None or (request.method == "GET" and _route_path(request.path) == "/health"):
            return None
        if check_key(request.headers.get("authorization"), self.api_key):
            return None
        return error(401, "missing or wrong API key: send `Authorization: Bearer <key>` with the key this server "
                          "was started with (longrl serve --api-key-env)", www_authenticate="Bearer")

    async def respond(self, request: Request) -> Response | None:
        method, path = request.method, _route_path(request.path)
        route = ROUTES.get((method, path))
        loop = asyncio.get_running_loop()
        try:
            if route is None:
                return _json(*self.handle(method, path, None))
            if method == "GET":                   # cheap: answered on the loop, never behind a busy pool
                return _json(*self.handle(method, path, None))
            body = await loop.run_in_executor(self._pool, _parse_body, request.body)
            if route in GENERATE:
                return await self._generate(route, body, request)
            return _json(*await loop.run_in_executor(self._pool, self.handle, method, path, body))
        except RequestError as exc:
            return error(exc.status, exc.message)
        except Exception as exc:  # a server bug must still answer (the client would retry a dropped connection)
            return error(500, f"{type(exc).__name__}: {exc}")

    # -- routes: each returns (status, payload) --------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path = _route_path(path)
        route = ROUTES.get((method, path))
        if route is None:
            known = sorted({p for _, p in ROUTES})
            return 404, _error(404, f"no route {method} {path}; this server has {', '.join(known)}")
        try:
            return getattr(self, route)(body)
        except RequestError as exc:
            return exc.status, _error(exc.status, exc.message)
        except Exception as exc:  # a server bug must still answer (the client would retry a dropped connection)
            return 500, _error(500, f"{type(exc).__name__}: {exc}")

    def models(self, body) -> tuple[int, Any]:
        card = {"id": self.served.name, "object": "model", "owned_by": "longrl", "root": self.worker.path,
                "max_model_len": self.served.context}
        return 200, {"object": "list", "data": [card]}

    def completions(self, body) -> tuple[int, Any]:
        """Blocking form (tests, tools); HTTP requests take `_generate`, which cancels when the client leaves."""
        return self._generate_now(parse_completion(body, self.served))

    def chat(self, body) -> tuple[int, Any]:
        return self._generate_now(parse_chat(body, self.served, self.chat_max_tokens))

    def _generate_now(self, job) -> tuple[int, Any]:
        try:
            groups, version = self.worker.generate(job)
        except Exception as exc:  # the model failed on this request: HTTP 500, the server keeps going
            return 500, _error(500, f"generation failed: {type(exc).__name__}: {exc}")
        return 200, build_reply(job, groups, self.served, version)

    def reload(self, body) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("model_path"), str):
            return 400, {"success": False, "message": "`model_path` (a folder of safetensors weights) is required"}
        proposed = body.get("weight_version")
        if proposed is not None and not isinstance(proposed, str):
            return 400, {"success": False, "message": "`weight_version` must be a string"}
        try:
            folder = weights_folder(self.weights_root, body["model_path"])
            version = new_version(proposed)
        except Forbidden as exc:
            return 403, {"success": False, "message": exc.message}
        except ValueError as exc:
            return 400, {"success": False, "message": str(exc)}
        if not self._reloading.acquire(blocking=False):
            return 429, {"success": False, "message": "another reload is running; retry when it is done"}
        try:
            now = self.worker.reload(str(folder), version)
        except WeightsError as exc:
            return 400, {"success": False, "message": str(exc)}
        except Exception as exc:  # an I/O or device error while loading: reported, old weights kept
            return 500, {"success": False, "message": f"{type(exc).__name__}: {exc}"}
        finally:
            self._reloading.release()
        return 200, {"success": True, "message": f"loaded {folder}", "num_paused_requests": 0, "weight_version": now}

    def model_info(self, body) -> tuple[int, Any]:
        return 200, {"model_path": self.worker.path, "tokenizer_path": self.worker.source, "is_generation": True,
                     "weight_version": self.worker.version}

    def weight_version(self, body) -> tuple[int, Any]:
        return 200, {"weight_version": self.worker.version}

    def health(self, body) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    # -- generation: admitted, waited for, cancelled when the client leaves ----------------------
    async def _generate(self, route: str, body: Any, request: Request) -> Response | None:
        loop = asyncio.get_running_loop()
        job = await loop.run_in_executor(self._pool, self._parse_job, route, body)
        try:
            task = self.worker.submit(job)
        except QueueFull as exc:
            return error(429, f"the server is busy: {exc}", retry_after="1")
        except RuntimeError as exc:               # the worker is closed
            return error(503, f"the server is shutting down ({exc})", close=True)
        done = asyncio.wrap_future(task.future)
        done.add_done_callback(_retrieve)
        gone = asyncio.ensure_future(request.gone.wait())
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not done.done():                   # the client left (or the server closes): drop the work
                self.worker.cancel(task)
                self.cancelled += 1
            gone.cancel()
        if not done.done():
            return None
        try:
            groups, version = done.result()
        except Exception as exc:  # the model failed on this request: HTTP 500, the server keeps going
            return error(500, f"generation failed: {type(exc).__name__}: {exc}")
        payload = await loop.run_in_executor(self._pool, self._reply_bytes, job, groups, version)
        return Response(200, payload)

    def _parse_job(self, route: str, body: Any):
        return parse_completion(body, self.served) if route == "completions" else \
            parse_chat(body, self.served, self.chat_max_tokens)

    def _reply_bytes(self, job, groups, version: str) -> bytes:
        return json.dumps(build_reply(job, groups, self.served, version)).encode()


# (method, path) -> the ModelServer method answering it
ROUTES = {
    ("GET", "/v1/models"): "models",
    ("POST", "/v1/completions"): "completions",
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/update_weights_from_disk"): "reload",
    ("GET", "/model_info"): "model_info",
    ("GET", "/get_weight_version"): "weight_version",
    ("GET", "/health"): "health",
}
GENERATE = {"completions", "chat"}


def _route_path(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def _parse_body(raw: bytes) -> Any:
    """The JSON body (depth-bounded); RequestError 400 when it is not JSON."""
    if not raw:
        return {}
    try:
        return load_json(raw)
    except LimitError as exc:
        raise RequestError(400, f"the request body is not usable JSON: {exc}") from None
    except ValueError:
        raise RequestError(400, "the request body is not JSON") from None


def _error(status: int, message: str) -> dict[str, Any]:
    return json.loads(error_body(status, message))


def _json(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


def _retrieve(future: asyncio.Future) -> None:
    """Mark a result nobody may read (its client left) as seen, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
