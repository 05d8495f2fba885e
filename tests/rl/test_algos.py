"""rl/algos.py against naive Python loops (several seeds) and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from longrl.rl import algos

SEEDS = [0, 1, 2, 3]


def naive_grpo(rewards: list[list[float]], eps: float) -> list[list[float]]:
    out = []
    for group in rewards:
        g = len(group)
        mean = sum(group) / g
        var = sum((r - mean) ** 2 for r in group) / (g - 1)
        out.append([(r - mean) / (math.sqrt(var) + eps) for r in group])
    return out


def random_batch(seed: int, b: int = 5, t: int = 7):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 3
    old = logp + (torch.rand(b, t, generator=gen, dtype=torch.float64) - 0.5) * 0.8
    adv = torch.randn(b, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(torch.float64)
    return logp, old, adv, mask


@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_advantages_match_reference_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(4, 8, generator=gen, dtype=torch.float64) > 0.5).to(torch.float64)
    rewards[0] = torch.rand(8, generator=gen, dtype=torch.float64)  # a non-binary row too
    expected = torch.tensor(naive_grpo(rewards.tolist(), 1e-6), dtype=torch.float64)
    torch.testing.assert_close(algos.ADVANTAGES.get("grpo")(rewards, eps=1e-6), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_drgrpo_advantages_match_reference_loop(seed):
    rewards = torch.rand(3, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = torch.tensor([[r - sum(row) / len(row) for r in row] for row in rewards.tolist()], dtype=torch.float64)
    torch.testing.assert_close(algos.ADVANTAGES.get("drgrpo")(rewards), expected)


def test_grpo_hand_computed_and_degenerate_groups():
    adv = algos.grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[0.8660254, -0.8660254, -0.8660254, 0.8660254]]))
    # A uniform group gives zero advantage (not NaN); G = 1 likewise.
    assert torch.equal(algos.grpo_advantages(torch.ones(2, 4)), torch.zeros(2, 4))
    assert torch.equal(algos.grpo_advantages(torch.tensor([[0.7]])), torch.zeros(1, 1))


def naive_ppo(logp, old, adv, mask, lo, hi):
    loss = [[0.0] * len(logp[0]) for _ in logp]
    clipped, total = 0, 0
    for i in range(len(logp)):
        for t in range(len(logp[0])):
            if not mask[i][t]:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            a = adv[i]
            plain = -ratio * a
            clip = -min(max(ratio, 1 - lo), 1 + hi) * a
            loss[i][t] = max(plain, clip)
            clipped += clip > plain
            total += 1
    return loss, clipped / total


@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_clip_loss_matches_reference_loop(seed):
    logp, old, adv, mask = random_batch(seed)
    loss, frac = algos.ppo_clip_loss(logp, old, adv, mask, 0.2, 0.28)
    exp_loss, exp_frac = naive_ppo(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor(exp_loss, dtype=torch.float64))
    assert frac.item() == pytest.approx(exp_frac)


def test_ppo_clip_loss_hand_computed():
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.0]]))
    old = torch.zeros(1, 4)
    mask = torch.tensor([[1, 1, 1, 0]])
    # per-token advantages: ratio 1.5 A=+1 -> clipped at 1.28; ratio 0.5 A=+1 -> unclipped -0.5;
    # ratio 0.5 A=-1 -> clipped at 0.8 (loss 0.8); padding -> 0.
    adv = torch.tensor([[1.0, 1.0, -1.0, 5.0]])
    loss, frac = algos.ppo_clip_loss(logp, old, adv, mask, 0.2, 0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.28, -0.5, 0.8, 0.0]]))
    assert frac.item() == pytest.approx(2 / 3)


def naive_clip_sides(logp, old, adv, mask, lo, hi):
    low = high = total = 0
    for i in range(len(logp)):
        for t in range(len(logp[0])):
            if not mask[i][t]:
                continue
            total += 1
            ratio = math.exp(logp[i][t] - old[i][t])
            low += adv[i] < 0 and ratio < 1 - lo
            high += adv[i] > 0 and ratio > 1 + hi
    return low / total, high / total


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_fractions_match_reference_loop_and_add_up_to_the_clip_fraction(seed):
    logp, old, adv, mask = random_batch(seed, b=16)
    old = logp + (old - logp) * 2          # wider ratios: both sides of the clip range bind
    low, high = algos.clip_fractions(logp, old, adv, mask, 0.2, 0.28)
    want_low, want_high = naive_clip_sides(logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.28)
    assert (low.item(), high.item()) == (pytest.approx(want_low), pytest.approx(want_high))
    assert low.item() > 0 and high.item() > 0
    _, frac = algos.ppo_clip_loss(logp, old, adv, mask, 0.2, 0.28)
    assert low.item() + high.item() == pytest.approx(frac.item())


def test_clip_fractions_hand_computed():
    # ratio 1.5 A=+1 -> high; ratio 0.5 A=-1 -> low; ratio 0.5 A=+1 -> not clipped; padding ignored.
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 3.0]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    low, high = algos.clip_fractions(logp, torch.zeros(1, 4), adv, torch.tensor([[1, 1, 1, 0]]), 0.2, 0.28)
    assert (low.item(), high.item()) == (pytest.approx(1 / 3), pytest.approx(1 / 3))


def naive_advantage_stats(adv, lengths):
    tokens = [a for row_a, row_n in zip(adv, lengths) for a, n in zip(row_a, row_n) for _ in range(n)]
    return sum(tokens) / len(tokens), max(tokens), min(tokens)


@pytest.mark.parametrize("seed", SEEDS)
def test_advantage_metrics_match_reference_loop_over_tokens(seed):
    gen = torch.Generator().manual_seed(seed)
    adv = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0, 9, (3, 4), generator=gen).tolist()
    lengths[0][0] = 0                       # an empty response carries no weight, not even in max/min
    adv[0, 0] = 100.0
    got = algos.advantage_metrics(adv, lengths)
    mean, high, low = naive_advantage_stats(adv.tolist(), lengths)
    assert got == {"advantage/mean": pytest.approx(mean), "advantage/max": pytest.approx(high),
                   "advantage/min": pytest.approx(low)}


def test_advantage_metrics_hand_computed_and_empty():
    assert algos.advantage_metrics(torch.tensor([[1.0, -1.0]]), [[3, 1]]) == {
        "advantage/mean": 0.5, "advantage/max": 1.0, "advantage/min": -1.0}
    empty = algos.advantage_metrics(torch.zeros(0, 4), [])          # a skipped update: nothing trained
    assert all(math.isnan(v) for v in empty.values()) and len(empty) == 3
    with pytest.raises(ValueError, match="4 values for 3 responses"):
        algos.advantage_metrics(torch.zeros(1, 4), [[1, 2, 3]])


def test_ppo_gradient_is_policy_gradient_at_ratio_one():
    # At the first update (old = current, detached) the gradient is -A * dlogp.
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = algos.ppo_clip_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2), 0.2, 0.2)
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.0, -2.0]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_estimators_match_reference_loop(seed):
    logp, ref, _, _ = random_batch(seed)
    k1 = [[a - b for a, b in zip(r1, r2)] for r1, r2 in zip(logp.tolist(), ref.tolist())]
    k3 = [[min(math.exp(b - a) - (b - a) - 1, 10.0) for a, b in zip(r1, r2)] for r1, r2 in zip(logp.tolist(), ref.tolist())]
    torch.testing.assert_close(algos.KL_ESTIMATORS.get("k1")(logp, ref), torch.tensor(k1, dtype=torch.float64))
    torch.testing.assert_close(algos.KL_ESTIMATORS.get("k3")(logp, ref), torch.tensor(k3, dtype=torch.float64))


def test_kl_hand_computed():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert algos.kl_k1(logp, ref).item() == pytest.approx(math.log(2))
    assert algos.kl_k3(logp, ref).item() == pytest.approx(0.5 + math.log(2) - 1)
    assert algos.kl_k3(ref, ref).item() == 0.0
    assert algos.kl_k3(torch.tensor([-30.0]), torch.tensor([0.0])).item() == 10.0  # clamped


def test_entropy_bonus_sign():
    ent = torch.tensor([[0.5, 2.0]])
    torch.testing.assert_close(algos.entropy_bonus(ent, 0.001), torch.tensor([[-0.0005, -0.002]]))


def naive_token_mean(loss, mask):
    num = sum(l * m for row_l, row_m in zip(loss, mask) for l, m in zip(row_l, row_m))
    return num / sum(m for row in mask for m in row)


def naive_seq_mean(loss, mask):
    means = []
    for row_l, row_m in zip(loss, mask):
        n = sum(row_m)
        if n:
            means.append(sum(l * m for l, m in zip(row_l, row_m)) / n)
    return sum(means) / len(means)


def naive_seq_sum_over_limit(loss, mask, limit):
    """Dr. GRPO's aggregation: each sequence's token sum over the constant `limit`, mean over sequences."""
    sums = [sum(l * m for l, m in zip(row_l, row_m)) / limit for row_l, row_m in zip(loss, mask) if sum(row_m)]
    return sum(sums) / len(sums)


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_aggregations_match_reference_loops(seed):
    loss, _, _, mask = random_batch(seed, b=6, t=9)
    mask[2] = 0  # an empty sequence counts for neither tokens nor sequences
    token_mean = algos.LOSS_AGG.get("token-mean")
    seq_mean = algos.LOSS_AGG.get("seq-mean-token-mean")
    sum_norm = algos.LOSS_AGG.get("seq-mean-token-sum-norm")
    assert token_mean(loss, mask).item() == pytest.approx(naive_token_mean(loss.tolist(), mask.tolist()))
    assert seq_mean(loss, mask).item() == pytest.approx(naive_seq_mean(loss.tolist(), mask.tolist()))
    assert sum_norm(loss, mask, 32).item() == pytest.approx(naive_seq_sum_over_limit(loss.tolist(), mask.tolist(), 32))
    assert sum_norm(loss, mask).item() == pytest.approx(naive_seq_sum_over_limit(loss.tolist(), mask.tolist(), 9))


def test_drgrpo_normaliser_is_constant_so_length_does_not_rescale_a_response():
    """Two responses with the same per-token loss: token sums 4 and 1, over the same constant 8."""
    loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    agg = algos.LOSS_AGG.get("seq-mean-token-sum-norm")
    assert agg(loss, mask, 8).item() == pytest.approx((4 / 8 + 1 / 8) / 2)
    assert algos.LOSS_AGG.get("seq-mean-token-mean")(loss, mask).item() == pytest.approx(1.0)   # 1/|o| per sequence


@pytest.mark.parametrize("name", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_loss_aggregation_splits_exactly(name):
    loss, _, _, mask = random_batch(5, b=6, t=9)
    agg = algos.LOSS_AGG.get(name)
    whole = agg(loss, mask)
    count = agg.count(mask)
    parts = agg.reduce(loss[:2], mask[:2]) / count + agg.reduce(loss[2:], mask[2:]) / count
    torch.testing.assert_close(parts, whole)


def test_token_mean_and_seq_mean_differ_on_unequal_lengths():
    loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    assert algos.LOSS_AGG.get("token-mean")(loss, mask).item() == pytest.approx(7 / 5)
    assert algos.LOSS_AGG.get("seq-mean-token-mean")(loss, mask).item() == pytest.approx(2.0)


def test_registries_list_names_and_reject_unknown():
    assert algos.ADVANTAGES.names() == ["drgrpo", "grpo"]
    assert algos.KL_ESTIMATORS.names() == ["k1", "k3"]
    with pytest.raises(KeyError, match="known: drgrpo, grpo"):
        algos.ADVANTAGES.get("ppo")
