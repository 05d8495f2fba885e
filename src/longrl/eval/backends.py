"""Model backends of the evaluation harness: one narrow interface, a local model and a server.

    backend = LocalBackend(model, tokenizer, name="runs/x/final", batch_size=8)   # in-process, CPU or CUDA
    backend = OpenAIBackend("http://127.0.0.1:8000/v1", model_name="QwenLong-L1-32B", tokenizer=tok)
    completions = await backend.complete(requests, n=4, params=GenerationParams(...))  # [len(requests)][4]

The harness needs only `complete`: each request carries the prepared prompt (`EvalPrompt`: chat
text, user turn, token ids) and a seed; the reply is n `Completion`s per request. `batch_size`
and `parallelism` tell the harness how to feed the backend (a server: 1 request per call, many
calls in flight; a local model: a batch per call, one generating while the next is prepared).

`LocalBackend` runs the RL engine's shared-prefix sampler (`longrl.rl.rollout`): each prompt is
prefilled once and its n samples decode against it, with sampling seeded per request, so a
result does not depend on batch composition or on resuming. `build_backend(cfg)` picks the
backend from `eval.model` (an http(s) URL = server; else a local folder / builtin:NAME).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Protocol

from longrl.errors import ConfigError
from longrl.eval.prompts import EvalPrompt


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int          # response limit
    temperature: float           # 0 = greedy
    top_p: float
    top_k: int = 0               # 0 = off


@dataclass(frozen=True)
class Request:
    key: str                     # "<benchmark>/<item id>": unique in a run
    prompt: EvalPrompt
    seed: int                    # sampling seed of this item (its n samples derive from it)


@dataclass(frozen=True)
class Completion:
    text: str                    # the reply, reasoning included (`<think>...</think>` then the answer)
    tokens: int                  # its length in tokens
    truncated: bool              # stopped by max_new_tokens rather than by the model


class ModelBackend(Protocol):
    name: str                    # identifies the model in results (a resumed run must name the same)
    batch_size: int              # requests per `complete` call
    parallelism: int             # `complete` calls in flight
    needs_ids: bool              # whether prompts must carry token ids

    async def complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]: ...

    async def aclose(self) -> None: ...


def params_from_config(cfg) -> GenerationParams:
    """GenerationParams from an EvalConfig."""
    return GenerationParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k)


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


class LocalBackend:
    """An in-process Hugging Face causal LM, sampled with the RL engine's shared-prefix generator."""

    needs_ids = True
    parallelism = 2  # one batch generates while the next batch's prompts are tokenized

    def __init__(self, model, tokenizer, name: str = "local", batch_size: int = 8, device=None):
        import torch

        from longrl.rl.rollout import SharedPrefixGenerator

        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.generator = SharedPrefixGenerator(model, pad_token_id=pad, groups_per_batch=batch_size, device=self.device)
        self.stop_ids = stop_token_ids(model, tokenizer)
        self._lock = threading.Lock()  # one generation at a time on the model

    async def complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]:
        return await asyncio.to_thread(self._complete, requests, n, params)

    def _complete(self, requests: list[Request], n: int, params: GenerationParams) -> list[list[Completion]]:
        import torch

        from longrl.rl.rollout import SamplingParams

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
    def from_config(cls, cfg) -> tuple[LocalBackend, object]:
        """Load `eval.model` (or `model.path`) and its tokenizer (or `eval.tokenizer`) as the config says."""
        from longrl.models.loading import load_policy, load_tokenizer, resolve_device

        path = cfg.eval.model or cfg.model.path
        model_cfg = cfg.model.model_copy(update={"path": path, "tokenizer": cfg.eval.tokenizer or cfg.model.tokenizer,
                                                 "gradient_checkpointing": False})
        device = resolve_device(cfg.run.device)
        model = load_policy(model_cfg, device=device).eval()
        tokenizer = load_tokenizer(model_cfg)
        return cls(model, tokenizer, name=path, batch_size=cfg.eval.batch_size, device=device), tokenizer


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos, the model's generation eos (int or list) and <|im_end|> when present."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    candidates.append(im_end)
    for c in candidates:
        for i in c if isinstance(c, list | tuple) else [c]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def build_backend(cfg) -> tuple[ModelBackend, object]:
    """(backend, tokenizer) for a whole Config: a server when `eval.model` is an http(s) URL, else a local model."""
    model = cfg.eval.model
    if model is not None and is_url(model):
        from longrl.eval.remote import OpenAIBackend
        from longrl.models.loading import load_tokenizer

        if cfg.eval.tokenizer is None:
            raise ConfigError("evaluating a server needs the served model's tokenizer to count and truncate prompts: "
                              "pass --tokenizer PATH_OR_HUB_NAME (or set eval.tokenizer)")
        tokenizer = load_tokenizer(cfg.model.model_copy(update={"path": cfg.eval.tokenizer, "tokenizer": cfg.eval.tokenizer}))
        return OpenAIBackend.from_config(cfg.eval, tokenizer), tokenizer
    return LocalBackend.from_config(cfg)
