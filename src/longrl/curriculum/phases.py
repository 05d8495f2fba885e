"""Curriculum phases: which items a phase trains on, how long, and with which settings.

    fit = filter_by_length(items, tokenizer, phase.max_input_tokens)          # fit.kept, fit.dropped
    steps = phase_steps(phase, len(fit.kept), prompts_per_round(cfg, phase))
    cfg_k = phase_config(cfg, phase, init_from="runs/x/phase1/final", steps=steps)

A phase trains only on items whose tokenized prompt (chat template included) fits its
`max_input_tokens`; the rest are dropped and counted, never truncated. Its responses are
limited to `max_response_tokens`. It starts from the previous stage's final weights, and
`overrides` may change any RL setting for that phase alone. A phase's length in `epochs` counts
the prompts its steps draw in their first generation round (`prompts_per_round`), as verl's
`total_epochs` counts generation batches: with `algo.gen_prompts: 384` one epoch over 1,600 items
is ceil(1600 / 384) = 5 steps, each training on up to `train.prompts_per_step` groups.

What it trains on besides (`mix_phase`, `curriculum.retrospective.carry`):

    mix = mix_phase(own_items_that_fit, carried, seen_ids, carry="new_plus_carried")
    mix.epoch()          # the phase's training list: mix.items, then mix.replayed (extra copies)

  new_plus_carried  (default, the paper's reading: hard items are "carried into the next phase
                    alongside its new, longer data") the phase's own items that no earlier phase
                    trained on, plus the carried ones. When every phase reads one file (as the
                    official run does), its new items are those longer than the previous limit.
  replay            all of the phase's own items, and each carried item `replay_copies` extra
                    times, so it is drawn 1 + replay_copies times an epoch.

Ids stay unique in `mix.items`; only `mix.replayed` repeats them. The prompt sampler draws
duplicates as separate draws (each draw index seeds its own rollout), `item_scores.jsonl` has a
row per draw and the difficulty store keeps an id's latest row, so a repeated id breaks nothing.
The frozen `phaseK/items.jsonl` holds the distinct items (a Samples file: ids unique) and
`phaseK/items.json` lists the replayed ids (`with_replays` rebuilds the epoch on resume).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class PhaseMix:
    items: list[Sample]        # distinct ids: the phase's own items it trains on, then the carried ones
    replayed: list[Sample]     # extra copies of carried items (carry: replay); empty otherwise
    counts: dict[str, int]     # seen, new, carried, replayed, kept (distinct items), epoch (draws per epoch)

    def epoch(self) -> list[Sample]:
        return self.items + self.replayed


def mix_phase(own: Sequence[Sample], carried: Sequence[Sample], seen: Iterable[str],
              carry: str = "new_plus_carried", replay_copies: int = 1) -> PhaseMix:
    """A phase's training items from its `own` items (those that fit), the `carried` hard ones and the
    ids `seen` in earlier phases' item lists.

    new_plus_carried: own items not seen before + carried ones (a carried item the phase's data also
    holds comes once). replay: every own item + carried ones it lacks, then each carried item
    `replay_copies` more times. Counts: seen (own items an earlier phase trained on), new (the rest),
    carried, replayed (extra copies), kept (distinct items), epoch (kept + replayed).
    """
    if carry not in ("new_plus_carried", "replay"):
        raise ValueError(f"unknown carry {carry!r}")
    seen = set(seen)
    new = [s for s in own if s.id not in seen]
    base = new if carry == "new_plus_carried" else list(own)
    base_ids = {s.id for s in base}
    items = base + [s for s in carried if s.id not in base_ids]
    replayed = [s for s in carried for _ in range(replay_copies)] if carry == "replay" else []
    counts = {"seen": len(own) - len(new), "new": len(new), "carried": len(carried), "replayed": len(replayed),
              "kept": len(items), "epoch": len(items) + len(replayed)}
    return PhaseMix(items, replayed, counts)


def with_replays(items: Sequence[Sample], replayed_ids: Iterable[str]) -> list[Sample]:
    """`items` (distinct ids) followed by a copy of the item of each id in `replayed_ids`: a frozen mix's epoch."""
    by_id = {s.id: s for s in items}
    return list(items) + [by_id[i] for i in replayed_ids]


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
    `prompts_per_step` prompts (`prompts_per_round`), at least 1.

    `n_items` is the length of the phase's epoch (`PhaseMix.epoch()`): replayed copies count, so under
    carry: replay an epoch draws each carried item 1 + replay_copies times.
    """
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
