"""The GRPO / DAPO objective as small pure tensor functions, and the registries that name them.

Legend (used in every shape comment of the RL package):
    P  prompts (groups) in a step        G  samples per prompt (group size)
    B  sequences = P * G (or any subset)  T  completion tokens (padded)

    adv = ADVANTAGES.get("grpo")(rewards, eps=1e-6)                           # (P, G)
    pg, clip_frac = ppo_clip_loss(logp, old_logp, adv_b, mask, 0.2, 0.28)     # (B, T), scalar
    low, high = clip_fractions(logp, old_logp, adv_b, mask, 0.2, 0.28)        # clip_frac split by side
    per_token = pg + kl_coef * KL_ESTIMATORS.get("k3")(logp, ref_logp) + entropy_bonus(entropy, 0.001)
    agg = LOSS_AGG.get("token-mean")
    loss = agg.reduce(per_token, mask) / agg.count(mask, max_tokens)          # scalar
    advantage_metrics(adv, lengths)                # advantage/{mean,max,min} over the trained tokens

Loss aggregation is split into `reduce` (a sum over the sequences at hand) and `count` (the
normaliser), so a mini-batch cut into micro-batches gives exactly the loss of the whole
mini-batch: each micro-batch contributes `reduce(part) / count(whole mini-batch)`
(`rl/batching.py`). Everything here is tested against naive Python loops
(`tests/rl/test_algos.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from longrl.registry import Registry

AdvantageFn = Callable[..., torch.Tensor]
KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ADVANTAGES: Registry[AdvantageFn] = Registry("advantage")
LOSS_AGG: Registry[LossAgg] = Registry("loss aggregation")
KL_ESTIMATORS: Registry[KLEstimator] = Registry("KL estimator")

# Bound on |log ratio| before exponentiating: keeps exp() finite when a token's probability
# collapses between the rollout and the update. Far outside the clip range, so it never
# changes a clipped objective in practice.
MAX_LOG_RATIO = 20.0
# k3 grows like exp(ref - logp); bounded as in common low-variance KL implementations.
MAX_K3 = 10.0


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO group advantages: (r - mean_group) / (std_group + eps).

    The std is the unbiased sample std of the G rewards (as in the GRPO paper's
    implementation); with G = 1 it is undefined and the advantage is 0.

    Args:
        rewards: (P, G) scalar reward of each sample.
        eps: added to the std so uniform groups give 0, not NaN.

    Returns:
        (P, G) advantages, the same for every token of a response.

    Example: rewards [[1, 0, 0, 1]] -> mean 0.5, std 0.577 -> [[0.866, -0.866, -0.866, 0.866]].
    """
    if rewards.shape[-1] < 2 or rewards.numel() == 0:
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean(dim=-1, keepdim=True)                 # (P, G)
    std = rewards.std(dim=-1, keepdim=True)                                # (P, 1)
    return centred / (std + eps)


@ADVANTAGES.register("drgrpo")
def drgrpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dr. GRPO (arXiv 2503.20783): r - mean_group, no std normalisation (`eps` unused).

    Args:
        rewards: (P, G).

    Returns:
        (P, G) advantages.
    """
    del eps
    return rewards - rewards.mean(dim=-1, keepdim=True)


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                  clip_low: float, clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate with separate lower/upper clip ranges (DAPO clip-higher).

    loss_t = -min(ratio_t * A, clip(ratio_t, 1 - clip_low, 1 + clip_high) * A),
    ratio_t = exp(logp_t - old_logp_t).

    Args:
        logp: (B, T) log-probs of the taken tokens under the policy being trained (with grad).
        old_logp: (B, T) log-probs under the policy that is being improved on (no grad).
        adv: (B,) per-sequence or (B, T) per-token advantages.
        mask: (B, T) 1 for completion tokens, 0 for padding.
        clip_low: ratio lower bound is 1 - clip_low (paper: 0.2).
        clip_high: ratio upper bound is 1 + clip_high (DAPO: 0.28; equal to clip_low = PPO).

    Returns:
        (B, T) per-token loss (0 at padding) and the clip fraction: share of the masked
        tokens where the clipped branch was the one taken (a scalar, no grad).

    Example: ratio 1.5, A = 1, clips 0.2/0.28 -> loss -1.28 (clipped); ratio 0.5, A = 1 -> -0.5.
    """
    if adv.dim() == 1:
        adv = adv[:, None]                                                  # (B, 1)
    mask = mask.to(logp.dtype)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)                                           # (B, T)
    unclipped = -ratio * adv
    clipped = -ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    loss = torch.maximum(unclipped, clipped) * mask                         # (B, T)
    with torch.no_grad():
        took_clip = (clipped > unclipped).to(logp.dtype) * mask
        clip_frac = took_clip.sum() / mask.sum().clamp(min=1.0)
    return loss, clip_frac


def clip_fractions(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                   clip_low: float, clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`ppo_clip_loss`'s clip fraction split by the side of the clip range that bound (no grad).

    The clipped branch is taken on the low side where A < 0 and ratio < 1 - clip_low (the update
    would push a token's probability further down), on the high side where A > 0 and ratio >
    1 + clip_high (further up: what DAPO's clip-higher loosens). Both are shares of the masked
    tokens, so low + high is the clip fraction `ppo_clip_loss` returns.

    Args:
        logp, old_logp, adv, mask, clip_low, clip_high: as for `ppo_clip_loss`.

    Returns:
        (low, high): scalars.

    Example: ratios 1.5 (A = 1), 0.5 (A = -1), 0.5 (A = 1), clips 0.2/0.28 -> low 1/3, high 1/3.
    """
    with torch.no_grad():
        if adv.dim() == 1:
            adv = adv[:, None]                                              # (B, 1)
        mask = mask.to(logp.dtype)
        ratio = torch.exp((logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))        # (B, T)
        unclipped = -ratio * adv
        clipped = -ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
        took_clip = (clipped > unclipped).to(logp.dtype) * mask             # (B, T), as ppo_clip_loss
        count = mask.sum().clamp(min=1.0)
        low = (took_clip * (adv < 0).to(logp.dtype)).sum() / count
        high = (took_clip * (adv > 0).to(logp.dtype)).sum() / count
    return low, high


def advantage_metrics(adv: torch.Tensor, lengths: list[list[int]]) -> dict[str, float]:
    """advantage/{mean,max,min} over the trained completion tokens (what verl logs as critic/advantages/*).

    Each response's advantage counts once per token of it, so the mean is token-weighted (a GRPO
    group's advantages sum to 0 per response, not per token: the token mean shows whether longer
    responses lean positive or negative). Responses without tokens carry no weight.

    Args:
        adv: (P, G) advantages of the trained groups (P may be 0).
        lengths: P lists of G completion lengths in tokens.

    Returns:
        the three figures; NaN when nothing was trained (metrics.jsonl writes null).

    Example: adv [[1, -1]], lengths [[3, 1]] -> mean (3 - 1) / 4 = 0.5, max 1, min -1.
    """
    weights = torch.tensor([n for row in lengths for n in row], dtype=torch.float64, device=adv.device)  # (P*G,)
    values = adv.detach().to(torch.float64).reshape(-1)
    if values.numel() != weights.numel():
        raise ValueError(f"advantages hold {adv.numel()} values for {weights.numel()} responses")
    kept = values[weights > 0]
    if kept.numel() == 0:
        nan = float("nan")
        return {"advantage/mean": nan, "advantage/max": nan, "advantage/min": nan}
    return {"advantage/mean": float((values * weights).sum() / weights.sum()),
            "advantage/max": float(kept.max()), "advantage/min": float(kept.min())}


def entropy_bonus(entropy: torch.Tensor, coef: float) -> torch.Tensor:
    """Per-token loss term that rewards exploration: -coef * entropy (minimising it raises entropy).

    Args:
        entropy: (B, T) entropy in nats of the policy's next-token distribution at each completion position.
        coef: bonus coefficient (paper: 0.001; 0 disables).

    Returns:
        (B, T) term to add to the per-token loss before aggregation.
    """
    return -coef * entropy


@KL_ESTIMATORS.register("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 estimator of KL(policy || ref) per token: logp - ref_logp (unbiased, high variance; can be < 0).

    Args:
        logp, ref_logp: (B, T) log-probs of the sampled tokens.

    Returns:
        (B, T).
    """
    return logp - ref_logp


@KL_ESTIMATORS.register("k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 ("low_var_kl") per token: exp(ref - logp) - (ref - logp) - 1, always >= 0, clamped at 10.

    Args:
        logp, ref_logp: (B, T) log-probs of the sampled tokens.

    Returns:
        (B, T).

    Example: logp = log 0.5, ref = log 0.25 -> 0.5 + ln 2 - 1 = 0.193.
    """
    d = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return (torch.exp(d) - d - 1.0).clamp(max=MAX_K3)


@dataclass(frozen=True)
class LossAgg:
    """How per-token losses become one number: sum(reduce over parts) / count(over the whole batch).

    `reduce(loss, mask)` sums the contribution of the given sequences; `count(mask, max_tokens)` is
    the normaliser of the batch they belong to (`max_tokens`: the response-length limit, which only
    the constant-normaliser mode uses). Both are linear in the sequences, which is what keeps
    micro-batched accumulation exact.
    """

    name: str
    reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, T), (B, T) -> scalar
    _count: Callable[[torch.Tensor, int], float]                  # (B, T) mask, length limit -> normaliser

    def count(self, mask: torch.Tensor, max_tokens: int | None = None) -> float:
        """The normaliser of a batch with this mask; `max_tokens` defaults to the mask's width."""
        return self._count(mask, mask.shape[-1] if max_tokens is None else max_tokens)

    def __call__(self, loss: torch.Tensor, mask: torch.Tensor, max_tokens: int | None = None) -> torch.Tensor:
        """Aggregate a whole batch in one go: reduce / count."""
        return self.reduce(loss, mask) / max(self.count(mask, max_tokens), 1.0)


def _token_sum(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (loss * mask.to(loss.dtype)).sum()


def _token_count(mask: torch.Tensor, max_tokens: int) -> float:
    return float(mask.sum())


def _seq_mean_sum(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(loss.dtype)
    per_seq = (loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)                 # (B,)
    return per_seq.sum()


def _seq_count(mask: torch.Tensor, max_tokens: int) -> float:
    return float((mask.sum(-1) > 0).sum())


def _seq_times_limit(mask: torch.Tensor, max_tokens: int) -> float:
    return float((mask.sum(-1) > 0).sum()) * max_tokens


# DAPO: every token of the batch weighs the same, so long responses are not down-weighted.
LOSS_AGG.add("token-mean", LossAgg("token-mean", _token_sum, _token_count))
# GRPO: mean over each sequence's tokens, then mean over sequences.
LOSS_AGG.add("seq-mean-token-mean", LossAgg("seq-mean-token-mean", _seq_mean_sum, _seq_count))
# Dr. GRPO (arXiv 2503.20783): each sequence's token SUM over a constant (the response-length limit),
# then mean over sequences: no 1/|o| per sequence, so length does not rescale a response's gradient.
# Pair it with `algo.advantage: drgrpo` (no std normalisation) for the full Dr. GRPO objective.
LOSS_AGG.add("seq-mean-token-sum-norm", LossAgg("seq-mean-token-sum-norm", _token_sum, _seq_times_limit))
