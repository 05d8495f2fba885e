"""Token sampling on the device: temperature, top-k, top-p, then inverse-CDF with given uniforms.

    params = SamplingParams(max_new_tokens=512, temperature=0.7, top_p=0.95, stop_token_ids=(eos_id,))
    tokens, logprobs = sample_tokens(logits, params, uniforms)      # logits (B, V), uniforms (B,)

Every operation has fixed shapes and no host synchronisation, so the same function serves the
dynamic decode and the static one captured as a CUDA graph (`engine/static.py`). Randomness is
whatever uniforms the caller passes: the generators draw them per group, on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0                # nucleus: keep the most likely tokens holding this much mass
    top_k: int = 0                    # keep the k most likely tokens; 0 = off
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def sample_tokens(logits: torch.Tensor, params: SamplingParams, uniforms: torch.Tensor):
    """Pick one token per row by inverse-CDF sampling (tokens in id order) with the given uniforms.

    Args:
        logits: next-token logits.                       # (B, V)
        params: temperature, then top_k, then top_p (the smallest set of most likely tokens whose
            mass reaches top_p; tokens tied with its least likely member are kept too).
        uniforms: one draw in [0, 1) per row.            # (B,)
    Returns:
        (tokens, logprobs): chosen ids (B,) int64, and their log-prob under the filtered,
        renormalised distribution (float32; greedy: the model's log-softmax).
    """
    logits = logits.float()
    if params.temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)                                                # (B, V)
    if params.top_p < 1:
        probs = probs.masked_fill(probs < nucleus_threshold(probs, params.top_p), 0.0)
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    index = torch.searchsorted(cdf, uniforms[:, None].to(cdf.dtype) * total, right=True).clamp_max(vocab - 1)
    logprobs = (probs.gather(1, index) / total).log().squeeze(1)
    return index.squeeze(1), logprobs


def nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, the largest probability t with mass(p >= t) >= top_p: the top-p set is {p >= t}.

    A radix select on the float32 bit patterns (ordered like the values, as p >= 0): three passes
    (11, 11 and 10 bits) each histogram the mass of the still-candidate tokens by their next digit
    and keep the digit where the mass from the top crosses top_p. Exact, and several times faster
    than sorting the vocabulary on a CPU.

    Args:
        probs: probabilities, rows summing to 1.   # (B, V) float32
        top_p: mass to reach, in (0, 1].
    Returns:
        thresholds.                                # (B, 1) float32
    """
    bits = probs.contiguous().view(torch.int32)
    rows = probs.shape[0]
    prefix = torch.zeros(rows, 1, dtype=torch.int32, device=probs.device)   # digits chosen so far
    above = torch.zeros(rows, 1, dtype=probs.dtype, device=probs.device)    # mass above the candidates
    candidate = torch.ones_like(bits, dtype=torch.bool)
    shift = 32
    for width in (11, 11, 10):
        shift -= width
        size = 1 << width
        digit = ((bits >> shift) & (size - 1)).long()                                   # (B, V)
        mass = torch.zeros(rows, size, dtype=probs.dtype, device=probs.device)
        mass.scatter_add_(1, torch.where(candidate, digit, 0), torch.where(candidate, probs, 0.0))
        reach = above + mass.flip(-1).cumsum(-1).flip(-1)        # reach[d] = mass(p >= this digit d)
        chosen = ((reach >= top_p).sum(-1, keepdim=True) - 1).clamp_min(0)                # (B, 1)
        nxt = (chosen + 1).clamp_max(size - 1)
        above = torch.where(chosen + 1 < size, reach.gather(1, nxt), above)
        prefix |= chosen.int() << shift
        candidate &= digit == chosen
    return prefix.view(torch.float32)
