"""rl/rollout.py's per-step figures (rollout_metrics) against naive loops over the groups."""

from __future__ import annotations

import random

import pytest

from longrl.data.schema import Sample
from longrl.rewards.hybrid import RewardResult
from longrl.rl.groups import Group
from longrl.rl.rollout import rollout_metrics
from longrl.rl.sampler import Draw


def random_groups(seed: int, n: int = 5, size: int = 4) -> list[Group]:
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        item = Sample(id=f"item-{i}", task="multihop", context="doc", question="q?", answers=["x"])
        completions = [[7] * rng.randint(0, 30) for _ in range(size)]
        scores = [float(rng.random() > 0.5) for _ in range(size)]
        results = [RewardResult(score=s, rule_score=s, judge_score=None, prediction="x", status="ok", penalty=0.0)
                   for s in scores]
        groups.append(Group(Draw(i, item), [1] * rng.randint(5, 90), completions, [len(c) == 30 for c in completions],
                            ["x"] * size, results, scores))
    return groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_figures_match_reference_loops(seed):
    groups = random_groups(seed)
    lengths, prompts = [], []
    for g in groups:
        prompts.append(len(g.prompt_ids))
        for c in g.completions:
            lengths.append(len(c))
    m = rollout_metrics(groups)
    assert m["response_len/mean"] == pytest.approx(sum(lengths) / len(lengths))
    assert (m["response_len/min"], m["response_len/max"]) == (min(lengths), max(lengths))
    assert m["rollout/prompt_len_mean"] == pytest.approx(sum(prompts) / len(prompts))
    assert (m["rollout/prompt_len_min"], m["rollout/prompt_len_max"]) == (min(prompts), max(prompts))
    scores = [s for g in groups for s in g.rewards]
    assert (m["reward/min"], m["reward/max"]) == (min(scores), max(scores))


def test_no_groups_gives_zeros_not_an_error():
    m = rollout_metrics([])
    assert m["response_len/min"] == m["rollout/prompt_len_max"] == m["rollout/prompt_len_min"] == 0.0
