"""Load a model and serve it from a background thread (what `longrl serve` and the tests start)."""

from __future__ import annotations

from longrl.config.model import ModelConfig
from longrl.models.loading import load_policy, load_tokenizer, resolve_device
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker


def start_server(model: str, host: str = "127.0.0.1", port: int = 0, name: str | None = None, device: str = "auto",
                 dtype: str = "float32", groups_per_batch: int = 8, decode: str = "auto") -> ModelServer:
    """Load `model` (a folder, builtin:NAME or "random") and serve it from a background thread."""
    cfg = ModelConfig(path=model, dtype=dtype)
    tokenizer = load_tokenizer(cfg)
    policy = load_policy(cfg, resolve_device(device))
    worker = ModelWorker(policy, tokenizer, name or model, model, groups_per_batch=groups_per_batch, decode=decode)
    return ModelServer(worker, host, port).start()

