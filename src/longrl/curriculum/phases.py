"""Curriculum phases: which items a phase trains on, how long, and with which settings.

    kept, dropped = filter_by_length(items, tokenizer, phase.max_input_tokens)
    steps = phase_steps(phase, len(kept), prompts_per_round(cfg, phase))
    cfg_k = phase_config(cfg, phase, init_from="runs/x/phase1/final", steps=steps)

A phase trains only on items whose tokenized prompt (chat template included) fits its
`max_input_tokens`; the rest are dropped and counted, never truncated. Its responses are
limited to `max_response_tokens`. It starts from the previous stage's final weights, and
`overrides` may change any RL setting for that phase alone. A phase's length in `epochs` counts
the prompts its steps draw in their first generation round (`prompts_per_round`), as verl's
`total_epochs` counts generation batches: with `algo.gen_prompts: 384` one epoch over 1,600 items
is ceil(1600 / 384) = 5 steps, each training on up to `train.prompts_per_step` groups.
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


def prompts_per_round(cfg: Config, phase: PhaseConfig | None = None) -> int:
    """Prompts an RL step draws at least (its first generation round), with `phase`'s overrides:
    `algo.gen_prompts` under dynamic sampling, else `train.prompts_per_step`."""
    if phase is not None and phase.overrides:
        cfg = phase_config(cfg, phase, init_from=cfg.model.path, steps=1)   # its limits, then its overrides
    if cfg.algo.dynamic_sampling and cfg.algo.gen_prompts is not None:
        return cfg.algo.gen_prompts
    return cfg.train.prompts_per_step


def phase_steps(phase: PhaseConfig, n_items: int, prompts_per_step: int) -> int:
    """`phase.steps`, or enough steps for `phase.epochs` passes over `n_items` when each step draws
    `prompts_per_step` prompts (`prompts_per_round`), at least 1."""
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
