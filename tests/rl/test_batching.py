"""rl/batching.py: token-budget plans cover every completion once; accumulation is exact."""

from __future__ import annotations

import random

import pytest
import torch

from longrl.rl import algos
from longrl.rl.batching import (
    completion_mask,
    gather,
    pad_rows,
    piece_cost,
    plan_micro_batches,
    split_group,
    split_mini_batches,
)


def test_piece_cost_counts_prompt_once_when_shared():
    assert piece_cost(1000, [10, 20], shared_prompt=True) == 1030
    assert piece_cost(1000, [10, 20], shared_prompt=False) == 2030


def test_groups_kept_whole_and_packed_in_order():
    plan = plan_micro_batches([10, 10, 10], [[5, 5], [5, 5], [5, 5]], budget=40)
    # each group costs 20: two per micro-batch
    assert [[(p.group, p.rows) for p in mb.pieces] for mb in plan] == [[(0, (0, 1)), (1, (0, 1))], [(2, (0, 1))]]
    assert [mb.tokens for mb in plan] == [40, 20]


def test_oversized_group_is_split_and_reruns_its_prompt():
    assert split_group(10, [8, 8, 8, 8], budget=30, shared_prompt=True) == [(0, 1), (2, 3)]
    # group 1 alone costs 42 > 31: two parts of 26 (its prompt runs in each)
    plan = plan_micro_batches([4, 10, 4], [[1], [8, 8, 8, 8], [1]], budget=31)
    assert [[(p.group, p.rows) for p in mb.pieces] for mb in plan] == [[(0, (0,)), (1, (0, 1))], [(1, (2, 3)), (2, (0,))]]
    assert [mb.tokens for mb in plan] == [31, 31]
    # A single completion over budget runs alone (nothing smaller exists).
    assert plan_micro_batches([50], [[5, 5]], budget=20)[0].pieces[0].rows == (0,)


def test_per_sample_costs_without_shared_prompt():
    plan = plan_micro_batches([10], [[5, 5, 5]], budget=30, shared_prompt=False)
    assert [mb.tokens for mb in plan] == [30, 15]


@pytest.mark.parametrize("seed", range(5))
def test_random_plans_cover_each_completion_once_within_budget(seed):
    rng = random.Random(seed)
    for _ in range(20):
        p = rng.randint(1, 6)
        prompt_lens = [rng.randint(1, 60) for _ in range(p)]
        lens = [[rng.randint(1, 30) for _ in range(rng.randint(1, 8))] for _ in range(p)]
        budget = rng.randint(20, 200)
        shared = rng.random() < 0.5
        plan = plan_micro_batches(prompt_lens, lens, budget, shared)
        seen = [s for mb in plan for s in mb.sequences]
        assert seen == [(g, r) for g in range(p) for r in range(len(lens[g]))]
        for mb in plan:
            assert mb.tokens == sum(piece_cost(prompt_lens[pc.group], [lens[pc.group][r] for r in pc.rows], shared)
                                    for pc in mb.pieces)
            assert mb.tokens <= budget or len(mb.sequences) == 1


def test_split_mini_batches():
    assert split_mini_batches(10, 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert split_mini_batches(2, 4) == [[0], [1]]
    assert split_mini_batches(0, 2) == []
    shuffled = split_mini_batches(6, 2, torch.Generator().manual_seed(0))
    assert sorted(sum(shuffled, [])) == list(range(6)) and shuffled == split_mini_batches(6, 2, torch.Generator().manual_seed(0))


def test_gather_mask_and_pad():
    plan = plan_micro_batches([2, 2], [[1, 2], [3]], budget=100)
    prompts, comps = gather(plan[0], [[1, 2], [3, 4]], [[[5], [6, 7]], [[8, 9, 10]]])
    assert prompts == [[1, 2], [3, 4]] and comps == [[[5], [6, 7]], [[8, 9, 10]]]
    assert completion_mask([1, 3]).tolist() == [[1, 0, 0], [1, 1, 1]]
    assert pad_rows([torch.tensor([1.0]), torch.tensor([2.0, 3.0])]).tolist() == [[1, 0], [2, 3]]


def naive_logprobs(model, prompt, completions):
    """Reference: one full forward per (prompt + completion), log-softmax at completion positions."""
    rows = []
    for comp in completions:
        ids = torch.tensor([prompt + comp])
        logits = model(ids).logits[0, len(prompt) - 1: -1]
        rows.append(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(comp)[:, None])[:, 0])
    return rows


@pytest.mark.parametrize("agg_name", ["token-mean", "seq-mean-token-mean"])
def test_micro_batched_gradient_equals_one_big_batch(tiny_model, agg_name):
    torch.manual_seed(0)
    rng = random.Random(0)
    vocab = tiny_model.config.vocab_size
    prompts = [[rng.randrange(vocab) for _ in range(rng.randint(4, 12))] for _ in range(3)]
    comps = [[[rng.randrange(vocab) for _ in range(rng.randint(1, 9))] for _ in range(4)] for _ in range(3)]
    adv = torch.randn(3, 4)
    agg = algos.LOSS_AGG.get(agg_name)
    all_lens = [len(c) for g in comps for c in g]
    normaliser = agg.count(completion_mask(all_lens))

    def grads(budget):
        tiny_model.zero_grad()
        plan = plan_micro_batches([len(p) for p in prompts], [[len(c) for c in g] for g in comps], budget)
        for micro in plan:
            mb_prompts, mb_comps = gather(micro, prompts, comps)
            rows = [r for p, cs in zip(mb_prompts, mb_comps) for r in naive_logprobs(tiny_model, p, cs)]
            logp = pad_rows(rows)
            mask = completion_mask([len(r) for r in rows])
            a = torch.stack([adv[g, r] for g, r in micro.sequences])
            loss, _ = algos.ppo_clip_loss(logp, logp.detach(), a, mask, 0.2, 0.28)
            (agg.reduce(loss, mask) / normaliser).backward()
        return len(plan), [p.grad.clone() for p in tiny_model.parameters()]

    n_big, big = grads(10_000)
    n_small, small = grads(25)
    assert n_big == 1 and n_small >= 4
    for a, b in zip(big, small):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
