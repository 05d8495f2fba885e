"""Curriculum phases: which items a phase trains on, how long, and with which settings.

    kept, dropped = filter_by_length(items, tokenizer, phase.max_input_tokens)
    cfg_k = phase_config(cfg, phase, init_from="runs/x/phase1/final", steps=phase_steps(phase, len(kept), cfg))

A phase trains only on items whose tokenized prompt (chat template included) fits its
`max_input_tokens`; the rest are dropped and counted, never truncated. Its responses are
limited to `max_response_tokens`. It starts from the previous stage's final weights, and
`overrides` may change any RL setting for that phase alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from longrl.config import Config, apply_overrides
from longrl.config.curriculum import PhaseConfig
from longrl.data.prompt import encode_prompt
from longrl.data.schema import Sample


@dataclass(frozen=True)
class LengthFilter:
    kept: list[Sample]
    dropped: list[Sample]

    def counts(self) -> dict[str, int]:
        return {"kept": len(self.kept), "dropped": len(self.dropped)}


def prompt_tokens(tokenizer, sample: Sample) -> int:
    return len(encode_prompt(tokenizer, sample).ids)


def filter_by_length(items: Sequence[Sample], tokenizer, max_input_tokens: int) -> LengthFilter:
    """Split `items` into those whose prompt fits `max_input_tokens` and those that do not (order kept)."""
    kept, dropped = [], []
    for item in items:
        (kept if prompt_tokens(tokenizer, item) <= max_input_tokens else dropped).append(item)
    return LengthFilter(kept, dropped)


def phase_steps(phase: PhaseConfig, n_items: int, prompts_per_step: int) -> int:
    """`phase.steps`, or enough steps for `phase.epochs` passes over `n_items` (at least 1)."""
    if phase.steps is not None:
        return phase.steps
    epochs = phase.epochs if phase.epochs is not None else 1.0
    return max(1, math.ceil(epochs * n_items / prompts_per_step))


def phase_config(cfg: Config, phase: PhaseConfig, init_from: str, steps: int) -> Config:
    """The RL config of one phase: its length limits, its start weights, then its own overrides."""
    base = {
        "model.path": init_from,
        "rollout.max_input_tokens": phase.max_input_tokens,
        "rollout.max_new_tokens": phase.max_response_tokens,
        "train.steps": steps,
    }
    return apply_overrides(cfg, {**base, **phase.overrides}, source=f"curriculum phase {phase.name!r}")
