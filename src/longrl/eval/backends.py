"""Model backends of the evaluation harness (`eval/protocol.py`): a local model, or a server.

    tokenizer = eval_tokenizer(cfg)              # --tokenizer, the local model's, or the server's /tokenize
    backend = build_backend(cfg, tokenizer)                                       # from eval.model
    backend = LocalBackend(model, tokenizer, name="runs/x/final", batch_size=8)   # in-process, CPU or CUDA
    completions = await backend.complete(requests, n=4, params=GenerationParams(...))  # [len(requests)][4]

`LocalBackend` runs the RL engine's shared-prefix sampler (`longrl.engine.generate`): each prompt is
prefilled once and its n samples decode against it, with sampling seeded per request, so a
result does not depend on batch composition or on resuming. `build_backend(cfg, tokenizer)` picks the
backend from `eval.model` (an http(s) URL = server; else a local folder / builtin:NAME).
"""

from __future__ import annotations

import asyncio
import threading

import torch

from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, stop_token_ids
from longrl.eval.protocol import (
    Completion,
    GenerationParams,
    ModelBackend,
    Request,
    is_url,
)
from longrl.eval.remote import OpenAIBackend
from longrl.eval.server_tokenizer import ServerTokenizer
from longrl.models.loading import load_policy, load_tokenizer, resolve_device


class LocalBackend:
    """An in-process Hugging Face causal LM, sampled with the engine's shared-prefix generator."""

    needs_ids = True
    parallelism = 2  # one batch generates while the next batch's prompts are tokenized

    def __init__(self, model, tokenizer, name: str = "local", batch_size: int = 8, device=None):
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.generator = SharedPrefixGenerator(model, pad_token_id=pad, groups_per_batch=batch_size, device=self.device)
        self.stop_ids = list(stop_token_ids(tokenizer, model))
        self._lock = threading.Lock()  # one generation at a time on the model

    async def complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]:
        return await asyncio.to_thread(self._complete, requests, n, params)

    def _complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]:
        sampling = SamplingParams(max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                  top_p=params.top_p, top_k=params.top_k, stop_token_ids=tuple(self.stop_ids))
        prompts = []
        for r in requests:
            if r.prompt.ids is None:
                raise ValueError(f"{r.key}: the local backend needs token ids (prepare prompts with with_ids=True)")
            prompts.append(list(r.prompt.ids))
        with self._lock, torch.no_grad():
            groups = self.generator.generate(prompts, group_size=n, params=sampling, seeds=[r.seed for r in requests])
        return [[self._completion(tokens, bool(cut)) for tokens, cut in zip(g.completions, g.truncated)] for g in groups]

    def _completion(self, tokens: list[int], truncated: bool) -> Completion:
        tokens = list(tokens)
        length = len(tokens)
        while tokens and tokens[-1] in self.stop_ids:  # the end-of-turn token is not part of the reply text
            tokens.pop()
        return Completion(self.tokenizer.decode(tokens, skip_special_tokens=True), length, truncated)

    async def aclose(self) -> None:
        return None

    @classmethod
    def from_config(cls, cfg, tokenizer) -> LocalBackend:
        """Load `eval.model` (or `model.path`) as the config says; `tokenizer` is `eval_tokenizer(cfg)`."""
        path = cfg.eval.model or cfg.model.path
        device = resolve_device(cfg.run.device)
        model = load_policy(eval_model_config(cfg, path), device=device).eval()
        return cls(model, tokenizer, name=path, batch_size=cfg.eval.batch_size, device=device)


def eval_model_config(cfg, path: str):
    """`model` as evaluation loads it: `path` instead of model.path, `eval.dtype` (when set) instead of
    model.dtype, no gradient checkpointing."""
    update = {"path": path, "gradient_checkpointing": False}
    if cfg.eval.dtype is not None:
        update["dtype"] = cfg.eval.dtype
    return cfg.model.model_copy(update=update)


def eval_tokenizer(cfg):
    """The tokenizer that counts and truncates prompts: `eval.tokenizer`, else the local model's own, else
    (a server) the server's `/tokenize` endpoint (vLLM, SGLang)."""
    model = cfg.eval.model or cfg.model.path
    name = cfg.eval.tokenizer or (None if is_url(model) else cfg.model.tokenizer or model)
    if name is None:
        return ServerTokenizer.connect(model, cfg.eval.model_name, cfg.eval.api_key_env)
    return load_tokenizer(cfg.model.model_copy(update={"path": name, "tokenizer": name}))


def build_backend(cfg, tokenizer) -> ModelBackend:
    """The backend of a whole Config: a server when `eval.model` is an http(s) URL, else a local model."""
    model = cfg.eval.model
    if model is not None and is_url(model):
        return OpenAIBackend.from_config(cfg.eval, tokenizer)
    return LocalBackend.from_config(cfg, tokenizer)
