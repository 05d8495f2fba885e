"""The HTTP side of `longrl serve`: routes, JSON in and out, one thread per connection.

    server = ModelServer(worker, host="127.0.0.1", port=0).start()   # port 0: any free port
    server.url                                                       # http://127.0.0.1:PORT/v1
    server.close()

Routes (SGLang's names where SGLang has one, so longrl's rollout client speaks one protocol to both):
    GET  /v1/models                     the served model (id, root path, context window)
    POST /v1/completions                prompt as text or token ids; n; token ids out (return_token_ids)
    POST /v1/chat/completions           messages through the tokenizer's chat template
    POST /update_weights_from_disk      {model_path, weight_version?}: load a safetensors folder
    GET  /model_info, /get_weight_version   the weight version (and model path)
    GET  /health
Errors are OpenAI-style JSON (`{"error": {"message", "type", "code"}}`) with HTTP 400 (bad request),
404 (unknown route or model) or 500 (the model failed); a refused reload answers HTTP 400 with
`{"success": false, "message": ...}` as SGLang does. Anyone who can reach the port can replace the
weights: bind to loopback (the default) or a private network.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from longrl.engine.generate import stop_token_ids
from longrl.limits import LimitError, load_json
from longrl.models.weights import WeightsError
from longrl.serve.protocol import RequestError, Served, build_reply, parse_chat, parse_completion
from longrl.serve.worker import ModelWorker

MAX_BODY_BYTES = 256 << 20     # a 128K-token prompt as JSON ids is ~1 MB
CHAT_MAX_TOKENS = 512          # max_tokens of a chat request that gives none (capped by the context window)


class ModelServer:
    """An OpenAI-compatible HTTP server in front of a ModelWorker."""

    def __init__(self, worker: ModelWorker, host: str = "127.0.0.1", port: int = 8000,
                 chat_max_tokens: int = CHAT_MAX_TOKENS):
        self.worker, self.chat_max_tokens = worker, chat_max_tokens
        model, tokenizer = worker.model, worker.tokenizer
        self.served = Served(name=worker.name, tokenizer=tokenizer, stops=stop_token_ids(tokenizer, model),
                             vocab_size=int(model.config.vocab_size),
                             context=int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30))
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.app = self
        self.host, self.port = host, int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ModelServer:
        """Serve from a background thread; returns at once (`running` says whether it still serves)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def running(self) -> bool:
        """Whether the serving thread is up (started and not closed)."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.worker.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- routes: each returns (status, payload) --------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path = path.split("?", 1)[0].rstrip("/") or "/"
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
        return self._generate(parse_completion(body, self.served))

    def chat(self, body) -> tuple[int, Any]:
        return self._generate(parse_chat(body, self.served, self.chat_max_tokens))

    def _generate(self, job) -> tuple[int, Any]:
        try:
            groups, version = self.worker.generate(job)
        except Exception as exc:  # the model failed on this request: HTTP 500, the server keeps going
            return 500, _error(500, f"generation failed: {type(exc).__name__}: {exc}")
        return 200, build_reply(job, groups, self.served, version)

    def reload(self, body) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("model_path"), str):
            return 400, {"success": False, "message": "`model_path` (a folder of safetensors weights) is required"}
        version = body.get("weight_version")
        if version is not None and not isinstance(version, str):
            return 400, {"success": False, "message": "`weight_version` must be a string"}
        try:
            now = self.worker.reload(body["model_path"], version)
        except WeightsError as exc:
            return 400, {"success": False, "message": str(exc)}
        except Exception as exc:  # an I/O or device error while loading: reported, old weights kept
            return 500, {"success": False, "message": f"{type(exc).__name__}: {exc}"}
        return 200, {"success": True, "message": f"loaded {body['model_path']}", "num_paused_requests": 0,
                     "weight_version": now}

    def model_info(self, body) -> tuple[int, Any]:
        return 200, {"model_path": self.worker.path, "tokenizer_path": self.worker.source, "is_generation": True,
                     "weight_version": self.worker.version}

    def weight_version(self, body) -> tuple[int, Any]:
        return 200, {"weight_version": self.worker.version}

    def health(self, body) -> tuple[int, Any]:
        return 200, {"status": "ok"}


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


def _error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "code": status}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    app: ModelServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, *args) -> None:
        return None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._reply(*self.server.app.handle("GET", self.path, None))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(400, _error(400, f"request body of {length} bytes is over {MAX_BODY_BYTES}"))
            return
        raw = self.rfile.read(length)
        try:
            body = load_json(raw) if raw else {}
        except LimitError as exc:       # too deep, or a lone surrogate ("\ud800": no text can hold it)
            self._reply(400, _error(400, f"the request body is refused: its JSON {exc}"))
            return
        except ValueError:
            self._reply(400, _error(400, "the request body is not JSON"))
            return
        self._reply(*self.server.app.handle("POST", self.path, body))

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) and went away
