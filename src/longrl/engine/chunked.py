"""The LM head applied in chunks: per-token log-prob and entropy without [tokens x vocab] logits.

    logprobs, entropy = chunked_token_stats(hidden, lm_head_weight, targets, chunk_tokens=1024)

`chunked_token_stats` applies the LM head to `chunk_tokens` positions at a time and recomputes each
chunk's logits in the backward pass (activation checkpointing per chunk, with the gradient written
in closed form), so [tokens x vocab] logits never exist for more than one chunk. 16K tokens x 150K
vocabulary: ~1.3 GB instead of ~19 GB. `engine/logprobs.py` runs it on completion positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longrl.engine.attention import autocast_state


class _ChunkedTokenStats(torch.autograd.Function):
    """log p(target) and entropy per row of `hidden @ weight.T`, one chunk of rows at a time.

    Forward keeps only the per-row log-sum-exp and entropy; backward recomputes each chunk's logits
    and applies dz = g_lp * (onehot - p) - g_H * p * (log p + H), then dh = dz W and dW = dz^T h.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, with_entropy: bool, inv_temperature: float):
        n = hidden.shape[0]
        logprobs = torch.empty(n, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty(n if with_entropy else 0, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            z = _scaled(F.linear(hidden[start:end], weight).float(), inv_temperature)  # (c, V)
            peak = z.amax(-1, keepdim=True)
            z.sub_(peak)
            p = z.exp()
            total = p.sum(-1, keepdim=True)
            lse[start:end] = (peak + total.log()).squeeze(-1)
            z.sub_(total.log())                                                   # log p
            logprobs[start:end] = z.gather(1, targets[start:end, None]).squeeze(1)
            if with_entropy:
                p.div_(total)
                entropy[start:end] = -(p.unsqueeze(1) @ z.unsqueeze(2)).view(-1)
            del z, p
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.chunk, ctx.with_entropy, ctx.inv_temperature = chunk, with_entropy, inv_temperature
        ctx.autocast = autocast_state(hidden.device.type)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, g_logprobs, g_entropy):
        with torch.autocast(**ctx.autocast):     # recompute the logits as the forward did (same dtype)
            return _ChunkedTokenStats._backward(ctx, g_logprobs, g_entropy)

    @staticmethod
    def _backward(ctx, g_logprobs, g_entropy):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        for start in range(0, hidden.shape[0], ctx.chunk):
            end = min(hidden.shape[0], start + ctx.chunk)
            h = hidden[start:end]
            g_lp = g_logprobs[start:end, None].float()
            logp = _scaled(F.linear(h, weight).float(), ctx.inv_temperature).sub_(lse[start:end, None])  # (c, V)
            p = logp.exp()
            if ctx.with_entropy:
                g_h = g_entropy[start:end, None].float()
                dz = logp.add_(entropy[start:end, None]).mul_(g_h).add_(g_lp).mul_(p).neg_()
            else:
                dz = p.mul_(g_lp).neg_()
            del p
            dz.scatter_add_(1, targets[start:end, None], g_lp)
            _scaled(dz, ctx.inv_temperature)                                    # d(z / T) / dz = 1 / T
            if need_h:
                grad_h[start:end] = (dz.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w.addmm_(dz.t(), h.float())
            del dz, logp
        return grad_h, (grad_w.to(weight.dtype) if need_w else None), None, None, None, None


def _scaled(logits: torch.Tensor, inv_temperature: float) -> torch.Tensor:
    """`logits` divided by the temperature, in place (untouched at temperature 1)."""
    return logits if inv_temperature == 1.0 else logits.mul_(inv_temperature)


def training_temperature(sampling_temperature: float) -> float:
    """The temperature training log-probs are taken at, for completions sampled at `sampling_temperature`.

    Training scores the tokens under the distribution they were sampled from, softmax(logits / T), as
    verl does: the PPO ratio, the clip, the entropy and the KL all see logits / T. Greedy decoding
    (T = 0) has no sampling distribution; its completions are scored under the model's own
    distribution (T = 1). top-p and top-k are not applied in training (nor in verl): the truncated
    distribution has zero mass outside the nucleus and no gradient there, so training uses the whole
    tempered distribution and the sampler's log-probs equal the trainer's only at top_p 1, top_k 0.
    """
    if sampling_temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {sampling_temperature}")
    return sampling_temperature if sampling_temperature > 0 else 1.0


def chunked_token_stats(hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor,
                        chunk_tokens: int = 1024, with_entropy: bool = True, temperature: float = 1.0):
    """Log-prob of each target and entropy of each row's distribution, never holding all logits.

    Args:
        hidden: final hidden states at the positions that predict `targets`.   # (N, H)
        lm_head_weight: output embedding (tied or not).                          # (V, H)
        targets: token ids.                                                       # (N,) int64
        chunk_tokens: rows per LM-head chunk; peak extra memory ~ 2 x chunk_tokens x V x 4 bytes.
        with_entropy: also return the entropy (nats).
        temperature: the distribution is softmax(logits / temperature) (> 0; see `training_temperature`).
    Returns:
        (logprobs, entropy): (N,) float32 each; entropy is None when not asked for. Both are
        differentiable with respect to `hidden` and `lm_head_weight`.

    Example: a row with logits [0, log 3] and target 1 has log-prob log(3/4) and entropy
    -(1/4 log 1/4 + 3/4 log 3/4) = 0.562 nats.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= lm_head_weight.shape[0]):
        raise ValueError(f"target ids must lie in [0, {lm_head_weight.shape[0]}); got "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (greedy: see training_temperature)")
    logprobs, entropy = _ChunkedTokenStats.apply(hidden, lm_head_weight, targets, chunk_tokens, with_entropy,
                                                 1.0 / temperature)
    return logprobs, (entropy if with_entropy else None)
