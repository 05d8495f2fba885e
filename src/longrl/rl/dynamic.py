"""DAPO dynamic sampling: keep only informative groups, refill from more prompts, never crash.

A group whose G rewards are all equal has zero advantage everywhere: it adds nothing to the
policy gradient but dilutes token-level normalisation. DAPO drops such groups and samples more
prompts until the step has its batch. longrl does the same within a budget: after the first
round it asks for more prompts at most `max_refills` times, then trains on what it has (possibly
nothing: the update is skipped and logged). The original raises once it has generated "too
many" batches; a run here never stops for that.

Round sizes: with `round_size` (`algo.gen_prompts`, verl's `data.gen_batch_size`) every round
draws that many prompts, as verl does (the official QwenLong-L1 script: rounds of 384 prompts for
128 trained, at most 10 rounds = `max_refills` 9). Without it the first round draws `want` and
each refill what is missing over the keep rate seen so far (`refill_size`).

    collected = collect_groups(produce, rewards_of, want=128, max_refills=2, drop_uniform=True)
    collected = collect_groups(produce, rewards_of, want=128, max_refills=9, drop_uniform=True, round_size=384)
    collected.groups     # at most `want` informative groups, in generation order
    collected.all        # every group generated this step (for reward metrics and item scores)
    collected.metrics()  # filtered_groups_frac, rollout/refills, ...

`produce(n)` generates and scores n new groups (the trainer's rollout + reward); everything
else here is pure selection logic, tested without a model (`tests/rl/test_dynamic.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def is_informative(rewards: Sequence[float]) -> bool:
    """True when the group's rewards are not all equal (some advantage is non-zero)."""
    return len(rewards) > 1 and max(rewards) > min(rewards)


def refill_size(want: int, have: int, generated: int, kept: int) -> int:
    """Prompts to ask for in the next round.

    The missing count divided by the keep rate seen so far (so a step where half the groups are
    uniform asks for twice the missing count), capped at `want`: one round never generates more
    than a normal step does. With nothing kept yet, `want`.

    Example: want 8, have 2 after 8 generated (keep rate 1/4) -> min(ceil(6 * 4), 8) = 8;
    want 8, have 6 after 8 generated (3/4) -> ceil(2 / 0.75) = 3.
    """
    missing = want - have
    if missing <= 0:
        return 0
    if kept == 0:
        return want
    return min(math.ceil(missing * generated / kept), want)


@dataclass
class Collected(Generic[T]):
    groups: list[T]                                  # informative groups to train on (at most `want`)
    all: list[T] = field(default_factory=list)       # every group generated this step, in order
    uniform: int = 0                                 # groups whose rewards were all equal
    refills: int = 0                                 # extra generation rounds used
    want: int = 0

    def metrics(self) -> dict[str, float]:
        generated = max(len(self.all), 1)
        dropped = len(self.all) - len(self.groups)
        return {
            "filtered_groups_frac": dropped / generated,           # generated but not trained on
            "rollout/uniform_groups_frac": self.uniform / generated,
            "rollout/refills": float(self.refills),
            "rollout/groups": float(len(self.all)),
            "rollout/train_groups": float(len(self.groups)),
            "rollout/fill_frac": len(self.groups) / max(self.want, 1),  # < 1: the budget ran out
        }


def collect_groups(produce: Callable[[int], list[T]], rewards_of: Callable[[T], Sequence[float]], want: int,
                   max_refills: int, drop_uniform: bool, round_size: int | None = None) -> Collected[T]:
    """Generate groups until `want` informative ones are in hand or the refill budget is spent.

    Args:
        produce: `produce(n)` returns n newly generated, scored groups.
        rewards_of: the G rewards of a group (the values advantages are computed from).
        want: groups a step trains on (`train.prompts_per_step`).
        max_refills: extra rounds allowed after the first (`algo.max_refills`).
        drop_uniform: False = keep every group of a single round of `want` (plain GRPO;
            `round_size` is not used: nothing is filtered, so nothing extra is drawn).
        round_size: prompts per round, every round (`algo.gen_prompts`, >= want); None = the
            first round draws `want`, each refill `refill_size(...)`.

    Returns:
        Collected: the kept groups (generation order; surplus informative groups beyond `want`
        are generated but not trained on, as in DAPO), every generated group, and counts.
    """
    if round_size is not None and round_size < want:
        raise ValueError(f"round_size ({round_size}) must be >= want ({want})")
    fixed = round_size if drop_uniform else None
    out: Collected[T] = Collected(groups=[], want=want)
    n = fixed or want
    while True:
        fresh = produce(n)
        out.all.extend(fresh)
        for group in fresh:
            informative = is_informative(rewards_of(group))
            out.uniform += not informative
            if (informative or not drop_uniform) and len(out.groups) < want:
                out.groups.append(group)
        if not drop_uniform or len(out.groups) >= want or out.refills >= max_refills:
            return out
        kept = len(out.all) - out.uniform
        n = fixed or refill_size(want, len(out.groups), len(out.all), kept)
        out.refills += 1
