"""Load a model and serve it from a background thread (what `longrl serve` and the tests start)."""

from __future__ import annotations

from pathlib import Path

from longrl.config.model import ModelConfig
from longrl.models.loading import load_policy, load_tokenizer, resolve_device
from longrl.serve.limits import ServeLimits
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker


def start_server(model: str, host: str = "127.0.0.1", port: int = 0, name: str | None = None, device: str = "auto",
                 dtype: str = "float32", groups_per_batch: int = 8, decode: str = "auto", *, api_key: str | None = None,
                 weights_root: str | Path | None = None, limits: ServeLimits | None = None) -> ModelServer:
    """Load `model` (a folder, builtin:NAME or "random") and serve it from a background thread.

    api_key, weights_root and limits: see ModelServer (no key: anyone who reaches the port is served;
    no weights_root: reloads are refused).
    """
    cfg = ModelConfig(path=model, dtype=dtype)
    tokenizer = load_tokenizer(cfg)
    policy = load_policy(cfg, resolve_device(device))
    worker = ModelWorker(policy, tokenizer, name or model, model, groups_per_batch=groups_per_batch, decode=decode)
    try:
        return ModelServer(worker, host, port, api_key=api_key, weights_root=weights_root, limits=limits).start()
    except BaseException:
        worker.close()
        raise
