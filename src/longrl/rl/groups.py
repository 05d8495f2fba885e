"""Groups (one prompt and its G scored completions) and how a step's groups are split across ranks.

    groups = roll_across_ranks(roller.roll, step, sampler.next(8), dist)   # every rank gets all 8 groups
    check_split(cfg.train.prompts_per_step, cfg.train.mini_batches, dist.world)

Under torchrun each rank rolls out whole groups, every world-th draw from its rank on, so a
group never spans ranks and its shared prompt is prefilled once. Sampling is seeded per group
(run seed, step, draw index), so a group's completions do not depend on which rank produced
them: the gathered list is the one a single process would have produced. Rewards (judge calls
included) are computed where the group was rolled out and travel with it as JSON, so every rank
then sees the whole step: dynamic sampling, advantages and the loss normaliser are decided on the
global view, identically everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from longrl.engine.distributed import Dist
from longrl.errors import ConfigError
from longrl.rewards.hybrid import RewardResult
from longrl.rl.sampler import Draw


@dataclass
class Group:
    """One prompt and its G scored completions."""

    draw: Draw
    prompt_ids: list[int]
    completions: list[list[int]]      # G token lists (stop token included when emitted)
    truncated: list[bool]             # hit the length limit without a stop token
    texts: list[str]                  # decoded responses (stop token removed)
    results: list[Any]                # G RewardResults
    rewards: list[float]              # G final scores (what advantages are computed from)

    @property
    def correct(self) -> list[float]:
        """1.0 per response the rule or the judge marks correct (before any shaping), else 0.0."""
        return [float(is_correct(r)) for r in self.results]


def is_correct(result) -> bool:
    """The rule or the judge marks the response correct (a RewardResult, before overlong shaping)."""
    return max(result.rule_score, result.judge_score or 0.0) >= 1.0


def group_payload(group: Group) -> dict[str, Any]:
    """A group as JSON-ready data (its item is known to every rank by the draw index)."""
    return {"draw": group.draw.index, "prompt_ids": group.prompt_ids, "completions": group.completions,
            "truncated": group.truncated, "texts": group.texts, "results": [asdict(r) for r in group.results]}


def group_from_payload(payload: dict[str, Any], draw: Draw) -> Group:
    results = [RewardResult(**r) for r in payload["results"]]
    return Group(draw, payload["prompt_ids"], payload["completions"], payload["truncated"], payload["texts"],
                 results, [r.score for r in results])


def roll_across_ranks(roll: Callable[[int, list[Draw]], list[Group]], step: int, draws: list[Draw],
                      dist: Dist) -> list[Group]:
    """Roll out `draws` split across ranks by whole groups; every rank returns all groups in draw order.

    Every rank calls `roll`, with an empty share if need be (a rollout gathers the sharded weights).
    """
    local = roll(step, dist.shard(draws))
    if not dist.launched:
        return local
    by_index = {d.index: d for d in draws}
    rolled = {p["draw"]: group_from_payload(p, by_index[p["draw"]])
              for part in dist.gather_json([group_payload(g) for g in local]) for p in part}
    return [rolled[d.index] for d in draws]


def check_split(prompts_per_step: int, mini_batches: int, world: int) -> None:
    """Under torchrun each mini-batch of a step must split into the same number of whole groups per rank.

    (One process takes any split: mini-batches of 3, 3, 2, 2 groups are fine there.)
    """
    if world > 1 and prompts_per_step % (mini_batches * world):
        raise ConfigError(
            f"{world} ranks cannot share train.prompts_per_step={prompts_per_step} groups in "
            f"train.mini_batches={mini_batches} mini-batches by whole groups: prompts_per_step must be a "
            f"multiple of mini_batches x ranks = {mini_batches * world}, "
            "or launch a number of processes that divides prompts_per_step / mini_batches")
