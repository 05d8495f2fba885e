"""The policy update of one RL step (step 5 of the loop): old and reference log-probs, then
`train.ppo_epochs` x `train.mini_batches` AdamW steps of token-budget micro-batches.

    obj = objective(cfg)                               # loss names resolved once
    metrics = policy_update(policy, ref, optimizer, groups, adv, cfg, obj, step, dist)

Every log-prob here (current, old, reference) and the entropy are of softmax(logits / T), T the rollout
temperature (the phase's, after overrides; greedy T = 0 trains at T = 1), the distribution the
completions were sampled from, as verl does; top-p / top-k truncation is not applied in training
(`engine.logprobs.training_temperature`).

Per-token loss = clipped PPO term (clip-higher) + kl_coef * KL(policy || ref) + entropy bonus,
aggregated as `algo.loss_agg` with the normaliser of the whole mini-batch, so the micro-batch
split never changes the loss (`tests/rl/test_update.py` checks it against a loop-based reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longrl.config import Config
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.logprobs import completion_stats, training_temperature
from longrl.engine.seeds import stream_seed
from longrl.engine.sharding import clip_grad_norm
from longrl.models.lora import adapters_disabled
from longrl.rl import algos
from longrl.rl.batching import (
    completion_mask,
    gather,
    lockstep,
    pad_rows,
    plan_groups,
    split_mini_batches,
)
from longrl.rl.groups import Group


@dataclass
class Objective:
    """The step's loss ingredients, resolved from config names once."""

    agg: algos.LossAgg
    kl: algos.KLEstimator
    clip_low: float
    clip_high: float
    kl_coef: float
    entropy_coef: float


def objective(cfg: Config) -> Objective:
    a = cfg.algo
    return Objective(agg=algos.LOSS_AGG.get(a.loss_agg), kl=algos.KL_ESTIMATORS.get(a.kl_estimator),
                     clip_low=a.clip_eps_low, clip_high=a.clip_eps_high, kl_coef=a.kl_coef, entropy_coef=a.entropy_coef)


def rewards_tensor(groups: list[Group], group_size: int) -> torch.Tensor:
    """(P, G) final scores of the groups (P may be 0)."""
    return torch.tensor([g.rewards for g in groups], dtype=torch.float32, device="cpu").reshape(len(groups), group_size)


def no_grad_logprobs(model, groups: list[Group], cfg: Config, shares: list[list[int]],
                     dist: Dist = SINGLE) -> dict[tuple[int, int], torch.Tensor]:
    """Per-sequence log-probs of the completions of this rank's groups (`shares[rank]`: one list per rank), without grad."""
    prompts = [g.prompt_ids for g in groups]
    comps = [g.completions for g in groups]
    lens = [[len(c) for c in cs] for cs in comps]
    plans = [plan_groups(share, [len(p) for p in prompts], lens, cfg.train.micro_batch_tokens,
                         cfg.train.shared_prompt_forward) for share in shares]
    out: dict[tuple[int, int], torch.Tensor] = {}
    with torch.no_grad():
        for micro, weight in lockstep(plans, dist.data_rank, spare_group=0):
            p, c = gather(micro, prompts, comps)
            stats = completion_stats(model, p, c, cfg.train.logprob_chunk_tokens, with_entropy=False,
                                     shared_prompt=cfg.train.shared_prompt_forward, attention=cfg.train.attention,
                                     temperature=training_temperature(cfg.rollout.temperature))
            for b, (g, r) in enumerate(micro.sequences if weight else []):
                out[(g, r)] = stats.logprobs[b, : len(comps[g][r])].detach()
    return out


def reference_logprobs(ref, groups: list[Group], cfg: Config, shares: list[list[int]],
                       dist: Dist = SINGLE) -> dict[tuple[int, int], torch.Tensor]:
    """Log-probs under the reference: the frozen starting model, or the LoRA policy with its adapters off."""
    with adapters_disabled(ref):                 # a no-op for a model without adapters
        return no_grad_logprobs(ref, groups, cfg, shares, dist)


def policy_update(policy, ref, optimizer, groups: list[Group], adv: torch.Tensor, cfg: Config, obj: Objective,
                  step: int, dist: Dist = SINGLE) -> dict[str, float]:
    """`ppo_epochs` x mini-batches of micro-batches; one AdamW step per mini-batch.

    Under torchrun every rank holds all groups; each data replica trains on its whole groups of each
    mini-batch, with the mini-batch's global normaliser, and the sharded gradients are summed (with
    sequence parallelism the ranks of a replica split each of its sequences: `engine/ulysses.py`).

    Args:
        groups: the P groups to train on.
        adv: (P, G) advantages.

    Returns:
        loss/* (clip_frac split by side: clip_frac_low, clip_frac_high), optim/grad_norm, entropy, kl (when a
        reference is loaded), update counts (all ranks summed).
    """
    t = cfg.train
    temperature = training_temperature(cfg.rollout.temperature)     # logits / T, as the rollout sampled them
    prompts = [g.prompt_ids for g in groups]
    comps = [g.completions for g in groups]
    lens = [[len(c) for c in cs] for cs in comps]
    minis = [split_mini_batches(len(groups), t.mini_batches,
                                torch.Generator().manual_seed(stream_seed(cfg.run.seed, "minibatch", step, epoch)))
             for epoch in range(t.ppo_epochs)]
    shares = [sorted({g for epoch in minis for mini in epoch for g in mini[r::dist.data_world]})
              for r in range(dist.data_world)]    # per data replica (sequence-parallel ranks share one)
    updates = sum(len(epoch) for epoch in minis)
    old = no_grad_logprobs(policy, groups, cfg, shares, dist) if updates > 1 else None
    ref_lp = reference_logprobs(ref, groups, cfg, shares, dist) if ref is not None else None
    params = [p for group in optimizer.param_groups for p in group["params"]]   # (FSDP's root may show gathered copies)
    sums = {"loss/policy": 0.0, "loss/total": 0.0, "loss/clip_frac": 0.0, "loss/clip_frac_low": 0.0,
            "loss/clip_frac_high": 0.0, "entropy": 0.0, "kl": 0.0}
    tokens, norms = 0.0, []
    policy.train()
    for epoch in minis:
        for mini in epoch:
            normaliser = max(obj.agg.count(completion_mask([n for g in mini for n in lens[g]]),
                                           cfg.rollout.max_new_tokens), 1.0)           # the whole mini-batch's
            plans = [plan_groups(mini[r::dist.data_world], [len(p) for p in prompts], lens, t.micro_batch_tokens,
                                 t.shared_prompt_forward) for r in range(dist.data_world)]
            optimizer.zero_grad(set_to_none=True)
            for micro, weight in lockstep(plans, dist.data_rank, spare_group=mini[0]):
                seqs = micro.sequences                                   # step-level (group, row)
                p, c = gather(micro, prompts, comps)
                stats = completion_stats(policy, p, c, t.logprob_chunk_tokens, with_entropy=True,
                                         shared_prompt=t.shared_prompt_forward, temperature=temperature,
                                         attention=t.attention)
                mask = stats.mask.to(stats.logprobs.dtype)                                   # (B, T)
                width = mask.shape[1]
                fresh = old is None or not weight                       # one update, or a lockstep filler
                old_lp = stats.logprobs.detach() if fresh else pad_rows([old[s] for s in seqs], width)
                a = torch.stack([adv[g, r] for g, r in seqs]).to(stats.logprobs)            # (B,)
                pg, clip_frac = algos.ppo_clip_loss(stats.logprobs, old_lp, a, mask, obj.clip_low, obj.clip_high)
                per_token = pg + algos.entropy_bonus(stats.entropy, obj.entropy_coef)      # (B, T)
                if ref_lp is not None:
                    ref_rows = [ref_lp[s] for s in seqs] if weight else [stats.logprobs[0].detach()]
                    kl = obj.kl(stats.logprobs, pad_rows(ref_rows, width))
                    per_token = per_token + obj.kl_coef * kl
                    sums["kl"] += weight * float((kl.detach() * mask).sum())
                loss = obj.agg.reduce(per_token, mask) / normaliser * weight   # weight 0: a lockstep filler
                loss.backward()
                if not weight:
                    continue
                n = float(mask.sum())
                tokens += n
                sums["loss/total"] += float(loss.detach())      # micro-batch parts add up to the mini-batch loss
                sums["loss/policy"] += float((pg.detach() * mask).sum())
                sums["loss/clip_frac"] += float(clip_frac) * n
                low, high = algos.clip_fractions(stats.logprobs.detach(), old_lp, a, mask, obj.clip_low, obj.clip_high)
                sums["loss/clip_frac_low"] += float(low) * n          # ratio below 1 - clip_low, A < 0
                sums["loss/clip_frac_high"] += float(high) * n        # ratio above 1 + clip_high, A > 0
                sums["entropy"] += float((stats.entropy.detach() * mask).sum())
            norms.append(clip_grad_norm(params, cfg.optim.grad_clip))              # global over shards
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)          # no gradients held through the next rollout
    keys = list(sums)
    totals = dist.data_sum([sums[k] for k in keys] + [tokens])
    sums, tokens = dict(zip(keys, totals[:-1])), totals[-1]
    out = {k: v / max(tokens, 1.0) for k, v in sums.items() if k != "loss/total"}
    out["loss/total"] = sums["loss/total"] / max(len(norms), 1)    # mean over updates of the aggregated loss
    if ref_lp is None:
        out.pop("kl")
    out.update({"optim/grad_norm": sum(norms) / max(len(norms), 1), "optim/updates": float(len(norms)),
                "update/skipped": 0.0, "update/tokens": tokens})
    return out


def skipped_update(tracks_kl: bool) -> dict[str, float]:
    """Metrics of a step with no informative group: nothing to train on (NaN -> null in metrics.jsonl)."""
    nan = float("nan")
    out = {"loss/policy": nan, "loss/total": nan, "loss/clip_frac": nan, "loss/clip_frac_low": nan,
           "loss/clip_frac_high": nan, "entropy": nan, "optim/grad_norm": nan,
           "optim/updates": 0.0, "update/skipped": 1.0, "update/tokens": 0.0}
    if tracks_kl:
        out["kl"] = nan
    return out
