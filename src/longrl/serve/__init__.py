"""`longrl serve`: an OpenAI-compatible server on longrl's own engine (no GPU, no vLLM needed).

    longrl serve --model builtin:tiny-base --port 8000        # http://127.0.0.1:8000/v1

    from longrl.serve import start_server                      # in a test or a notebook
    with start_server("builtin:tiny-base", port=0) as server:
        server.url                                             # point rollout.server.base_url, eval, the judge here

It serves what a rollout server must for `rollout.backend: server` (token ids in and out, `n`
samples per prompt with the request's seed, a weight reload with a version to check), and what
evaluation, the LLM judge and the SFT teacher send (`/v1/chat/completions`). Modules:
`protocol.py` (request checks, reply format), `worker.py` (the model thread: batching, reloads),
`server.py` (HTTP routes). Decoding is `engine/generate.py`'s shared-prefix generator, so a group
served with seed s has the same tokens as the in-process engine gives group seed s.
"""

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


__all__ = ["ModelServer", "ModelWorker", "start_server"]
