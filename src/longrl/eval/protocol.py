"""What the evaluation harness asks of a model backend: requests in, completions out.

    completions = await backend.complete(requests, n=4, params=GenerationParams(...))  # [len(requests)][4]

The harness needs only `complete`: each request carries the prepared prompt (`EvalPrompt`: chat
text, user turn, token ids) and a seed; the reply is n `Completion`s per request. `batch_size`
and `parallelism` tell the harness how to feed the backend (a server: 1 request per call, many
calls in flight; a local model: a batch per call, one generating while the next is prepared).
Implementations: `eval/backends.py` (a local model), `eval/remote.py` (an OpenAI-compatible server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
