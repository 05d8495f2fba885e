"""The composed policy update against one naive, loop-based implementation of the same objective.

`rl.update.policy_update` composes advantages, old log-probs (recomputed before the first update),
the seeded mini-batch permutation, token-budget micro-batches with the shared-prompt forward and the
chunked LM head, clip-higher, entropy bonus, KL to a reference and the loss aggregation. The reference
below does each piece the plain way: per-sequence full-vocabulary forwards, Python loops over tokens,
GRPO statistics by hand, one mini-batch loss built in one piece. Both update with plain SGD (lr 1), so
the parameter change is the clipped gradient and the comparison is of gradients, not of AdamW's
amplified signs; two PPO epochs make the second update see ratios away from 1 (clipping engaged).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from longrl.config import load_config
from longrl.data.prompt import encode_prompt
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, stop_token_ids
from longrl.engine.seeds import stream_seed
from longrl.rl import algos
from longrl.rl.groups import Group
from longrl.rl.sampler import Draw
from longrl.rl.update import no_grad_logprobs, objective, policy_update

G = 4
CLIP_LOW, CLIP_HIGH, KL_COEF, ENT_COEF, LIMIT = 0.2, 0.28, 0.05, 0.01, 12
TEMPERATURE = 0.7          # the rollout's: every training log-prob, the entropy and the KL are of logits / T


def naive_advantages(rewards: list[list[float]], std_norm: bool) -> list[list[float]]:
    out = []
    for group in rewards:
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (len(group) - 1))
        out.append([(r - mean) / (std + 1e-6) if std_norm else r - mean for r in group])
    return out


def token_stats(model, prompt: list[int], completion: list[int], temperature: float = TEMPERATURE):
    """Per completion token: log-prob of the token and entropy of softmax(logits / T), full vocabulary."""
    ids = torch.tensor([prompt + completion], device="cpu")
    logits = model(input_ids=ids).logits[0, len(prompt) - 1: -1].float() / temperature  # (Tc, V)
    logp = torch.log_softmax(logits, -1)
    taken = torch.stack([logp[t, tok] for t, tok in enumerate(completion)])
    entropy = torch.stack([-(logp[t].exp() * logp[t]).sum() for t in range(len(completion))])
    return taken, entropy


def minibatch_order(n: int, parts: int, seed: int, step: int, epoch: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(stream_seed(seed, "minibatch", step, epoch))
    order = torch.randperm(n, generator=gen, device="cpu").tolist()
    k = min(parts, n)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out, start = [], 0
    for size in sizes:
        out.append(order[start:start + size])
        start += size
    return out


def naive_update(policy, ref, groups, rewards, agg: str, std_norm: bool, seed: int, epochs: int, parts: int) -> list[float]:
    adv = naive_advantages(rewards, std_norm)
    with torch.no_grad():
        old = {(g, r): token_stats(policy, groups[g].prompt_ids, c)[0] for g in range(len(groups))
               for r, c in enumerate(groups[g].completions)}
        ref_lp = {(g, r): token_stats(ref, groups[g].prompt_ids, c)[0] for g in range(len(groups))
                  for r, c in enumerate(groups[g].completions)}
    optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=1.0)
    losses = []
    for epoch in range(epochs):
        for mini in minibatch_order(len(groups), parts, seed, 1, epoch):
            seqs = [(g, r) for g in mini for r in range(G)]
            per_seq = []                                           # (token-loss list) per sequence
            for g, r in seqs:
                logp, entropy = token_stats(policy, groups[g].prompt_ids, groups[g].completions[r])
                terms = []
                for t in range(len(logp)):
                    ratio = torch.exp(logp[t] - old[(g, r)][t])
                    a = adv[g][r]
                    pg = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - CLIP_LOW, 1 + CLIP_HIGH) * a)
                    d = ref_lp[(g, r)][t] - logp[t]
                    kl = torch.exp(d) - d - 1
                    terms.append(pg - ENT_COEF * entropy[t] + KL_COEF * kl)
                per_seq.append(terms)
            if agg == "token-mean":
                loss = sum(sum(ts) for ts in per_seq) / sum(len(ts) for ts in per_seq)
            elif agg == "seq-mean-token-mean":
                loss = sum(sum(ts) / len(ts) for ts in per_seq) / len(per_seq)
            else:                                                   # seq-mean-token-sum-norm
                loss = sum(sum(ts) / LIMIT for ts in per_seq) / len(per_seq)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("agg,advantage", [("token-mean", "grpo"), ("seq-mean-token-mean", "grpo"),
                                           ("seq-mean-token-sum-norm", "drgrpo")])
def test_policy_update_equals_the_naive_reference(tiny_model, tokenizer, samples, agg, advantage):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    groups, rewards = [], []
    for i, s in enumerate(samples[:5]):
        comps = [torch.randint(5, 1000, (int(n),), generator=gen).tolist() for n in torch.randint(1, LIMIT, (G,), generator=gen)]
        r = torch.rand(G, generator=gen).round().tolist()
        r[0], r[1] = 1.0, 0.0                                       # every group informative
        groups.append(Group(Draw(i, s), encode_prompt(tokenizer, s, 160).ids, comps, [False] * G, [""] * G, [], r))
        rewards.append(r)
    cfg = load_config(None, ["train.ppo_epochs=2", "train.mini_batches=2", "train.micro_batch_tokens=260",
                             f"algo.loss_agg={agg}", f"algo.advantage={advantage}", f"algo.kl_coef={KL_COEF}",
                             f"algo.entropy_coef={ENT_COEF}", f"algo.clip_eps_low={CLIP_LOW}",
                             f"algo.clip_eps_high={CLIP_HIGH}", "algo.kl_estimator=k3", f"rollout.max_new_tokens={LIMIT}",
                             f"rollout.temperature={TEMPERATURE}",
                             "optim.grad_clip=1.0", "run.seed=7"])
    ref = copy.deepcopy(tiny_model).eval().requires_grad_(False)
    naive = copy.deepcopy(tiny_model)
    adv = algos.ADVANTAGES.get(advantage)(torch.tensor(rewards), eps=cfg.algo.adv_eps)
    optimizer = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=1.0)
    metrics = policy_update(tiny_model, ref, optimizer, groups, adv, cfg, objective(cfg), step=1)
    expected = naive_update(naive.train(), ref, groups, rewards, agg, advantage == "grpo", seed=7, epochs=2, parts=2)

    assert metrics["optim/updates"] == 4 == len(expected)
    assert metrics["loss/total"] == pytest.approx(sum(expected) / len(expected), rel=1e-4, abs=1e-6)
    assert metrics["loss/clip_frac"] > 0                            # the second epoch's ratios did hit the clip
    assert metrics["loss/clip_frac_low"] + metrics["loss/clip_frac_high"] == pytest.approx(metrics["loss/clip_frac"])
    for (name, got), want in zip(tiny_model.named_parameters(), naive.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def sampled_groups(generator, tokenizer, samples, params, seeds):
    """Groups rolled out by `generator` (the sampler's own log-probs kept next to them)."""
    prompts = [encode_prompt(tokenizer, s, 160).ids for s in samples]
    outs = generator.generate(prompts, G, params, seeds)
    groups = [Group(Draw(i, s), o.prompt_ids, o.completions, o.truncated, [""] * G, [], [0.0] * G)
              for i, (s, o) in enumerate(zip(samples, outs))]
    return groups, [o.logprobs for o in outs]


def trainer_logprobs(model, groups, temperature: float, top_p: float):
    """What the RL update reads as old log-probs, for the config's rollout sampling."""
    cfg = load_config(None, [f"rollout.temperature={temperature}", f"rollout.top_p={top_p}", f"rollout.group_size={G}",
                             "rollout.max_new_tokens=12", "train.micro_batch_tokens=400"])
    return no_grad_logprobs(model, groups, cfg, [list(range(len(groups)))])


@pytest.mark.parametrize("temperature", [0.7, 1.4, 0.0])
@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_training_logprobs_are_the_samplers_own_at_top_p_1(tiny_model, tokenizer, samples, temperature, decode):
    """Rollout at T (top-p 1): the trainer's log-probs of the sampled tokens equal the sampler's; greedy
    (T = 0) is scored under the model's own distribution, which is what the sampler reports for it."""
    torch.set_num_threads(1)
    params = SamplingParams(12, temperature=temperature, top_p=1.0, stop_token_ids=stop_token_ids(tokenizer, tiny_model))
    generator = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, decode=decode)
    groups, sampler = sampled_groups(generator, tokenizer, samples[:3], params, [11, 12, 13])
    got = trainer_logprobs(tiny_model, groups, temperature, 1.0)
    for g, group in enumerate(groups):
        for r, completion in enumerate(group.completions):
            torch.testing.assert_close(got[(g, r)], torch.tensor(sampler[g][r]), atol=2e-4, rtol=1e-4)
    if temperature == 0.7:                          # raw logits (T = 1) are not what was sampled
        raw = trainer_logprobs(tiny_model, groups, 1.0, 1.0)
        assert max(float((raw[k] - got[k]).abs().max()) for k in got) > 0.05


def test_top_p_below_1_is_not_applied_in_training(tiny_model, tokenizer, samples):
    """The sampler renormalises over the nucleus, so its log-prob of a token is >= the trainer's, which
    scores the whole tempered distribution (as verl does)."""
    torch.set_num_threads(1)
    params = SamplingParams(12, temperature=0.7, top_p=0.5, stop_token_ids=stop_token_ids(tokenizer, tiny_model))
    groups, sampler = sampled_groups(SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id), tokenizer,
                                     samples[:2], params, [5, 6])
    got = trainer_logprobs(tiny_model, groups, 0.7, 0.5)
    gaps = torch.cat([torch.tensor(sampler[g][r]) - got[(g, r)] for g, r in got])
    assert float(gaps.min()) > -2e-4 and float(gaps.max()) > 1e-3


def test_training_logprobs_are_longrl_serves_own_at_top_p_1(tiny_model, tokenizer, samples, tmp_path):
    """The server backend: `longrl serve` reports the sampled tokens' log-probs (`logprobs: 0`) and the
    trainer's equal them."""
    from longrl.config.rl import RolloutServerConfig
    from longrl.engine.remote import RemoteGenerator
    from longrl.serve.server import ModelServer
    from longrl.serve.worker import ModelWorker

    torch.set_num_threads(1)
    params = SamplingParams(12, temperature=0.7, top_p=1.0, stop_token_ids=stop_token_ids(tokenizer, tiny_model))
    with ModelServer(ModelWorker(copy.deepcopy(tiny_model), tokenizer, "tiny", "startup"), port=0,
                     weights_root=tmp_path) as server:
        generator = RemoteGenerator(RolloutServerConfig(base_url=server.url, api_key_env=None, timeout_s=60,
                                                        logprobs=True), tmp_path)
        generator.sync_weights(tiny_model, "step-0")
        groups, sampler = sampled_groups(generator, tokenizer, samples[:2], params, [7, 8])
    got = trainer_logprobs(tiny_model, groups, 0.7, 1.0)
    for g, group in enumerate(groups):
        for r in range(len(group.completions)):
            torch.testing.assert_close(got[(g, r)], torch.tensor(sampler[g][r]), atol=2e-4, rtol=1e-4)
