"""Per-token log-probs and entropy of completions, for the policy update: prompt shared, LM head chunked.

    stats = completion_stats(policy, prompts, completions)   # prompts: P id lists; completions[p]: its sequences
    loss = -(advantages[:, None] * stats.logprobs * stats.mask).sum() / stats.mask.sum()
    loss.backward()

With `shared_prompt=True` each prompt runs once (with grad) and keeps its keys and values once; the
completions of its group run against them with cascade attention (`longrl.engine.attention`). Prompt
positions never see completion tokens, so log-probs and gradients equal the per-sample forward
(`shared_prompt=False`, kept as the reference) while the prompt's compute is done once per group;
and since only the prompt's keys and values are needed, its last-layer outputs skip the backward.

Log-probs and entropy are taken at completion positions only (the first completion token is scored
from the prompt's last hidden state) by `chunked_token_stats`, which applies the LM head to
`chunk_tokens` positions at a time and recomputes each chunk's logits in the backward pass
(activation checkpointing per chunk, with the gradient written in closed form), so [tokens x vocab]
logits never exist for more than one chunk. 16K tokens x 150K vocabulary: ~1.3 GB instead of ~19 GB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longrl.engine.attention import (
    CascadeContext,
    PrefillContext,
    autocast_state,
    enable_cascade_attention,
)
from longrl.engine.masked import resolve_backend, sdpa_chunks
from longrl.engine.sharding import keep_for_backward, run_forward
from longrl.models.loading import UNSUPPORTED_HEAD_CONFIG  # also refused when a model loads



@dataclass
class TokenStats:
    logprobs: torch.Tensor          # (B, Tc) float32, zero at padding
    entropy: torch.Tensor | None    # (B, Tc) float32, zero at padding; None when not asked for
    mask: torch.Tensor              # (B, Tc) bool, True at real completion tokens


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


def completion_stats(model, prompts: list[list[int]], completions: list[list[list[int]]], chunk_tokens: int = 1024,
                     with_entropy: bool = True, shared_prompt: bool = True, temperature: float = 1.0,
                     attention: str = "auto") -> TokenStats:
    """Log-probs (and entropy) of every completion token under `model`, with grad if grad is enabled.

    Args:
        model: a Hugging Face causal LM (AttentionInterface decoder + linear LM head without bias).
        prompts: P prompts as token ids.
        completions: completions[p] lists the sequences of prompt p (>= 1; a micro-batch may hold
            part of a group). B = total number of completions, in order.
        chunk_tokens: LM-head chunk size (see `chunked_token_stats`).
        with_entropy: also compute per-token entropy.
        shared_prompt: run each prompt once and attend its completions to it (cascade attention);
            False runs the per-sample reference (prompt + completion concatenated, ordinary forward).
        temperature: log-probs and entropy of softmax(logits / temperature), the distribution the
            completions were sampled from (`training_temperature(rollout temperature)`).
        attention: the shared-prompt path's attention kernel, `train.attention` (`engine/masked.py`):
            auto (flex on CUDA, masked SDPA on the CPU) | flex | blocks | sdpa.

    A model prepared by `engine.sharding.prepare` runs this as one of its forwards (FSDP gathers when
    sharded, autocast for one-device mixed precision).
    Returns:
        TokenStats with (B, Tc) tensors, Tc = longest completion; entry [b, j] scores token j of
        completion b given its prompt and tokens < j.
    """
    return run_forward(model, _completion_stats, prompts, completions, chunk_tokens, with_entropy, shared_prompt,
                       temperature, attention)


def _completion_stats(model, prompts, completions, chunk_tokens: int, with_entropy: bool,
                      shared_prompt: bool, temperature: float = 1.0, attention: str = "auto") -> TokenStats:
    weight = lm_head_weight(model)
    _check_inputs(prompts, completions, weight.shape[0])
    device = weight.device
    rows = [c for group in completions for c in group]
    length = max(len(c) for c in rows)
    targets = _padded(rows, device)                                                             # (B, Tc)
    lengths = torch.tensor([len(c) for c in rows], device=device)
    mask = torch.arange(length, device=device)[None, :] < lengths[:, None]
    if shared_prompt:
        chunks = sdpa_chunks([len(p) - 1 for p in prompts], [len(g) for g in completions], length)
        hidden = _shared_prompt_hidden(model, prompts, completions, targets, resolve_backend(attention, device, chunks))
    else:
        hidden = _per_sample_hidden(model, prompts, completions)
    logprobs, entropy = chunked_token_stats(hidden[mask], weight, targets[mask], chunk_tokens, with_entropy,
                                            temperature)
    zeros = torch.zeros(mask.shape, dtype=torch.float32, device=device)
    return TokenStats(logprobs=zeros.masked_scatter(mask, logprobs),
                      entropy=None if entropy is None else zeros.masked_scatter(mask, entropy), mask=mask)


def output_head(model, allow_bias: bool = False) -> torch.nn.Linear:
    """The LM head; raises for heads whose logits are not `hidden @ W.T (+ b)` (soft-capping, scaling, ...)."""
    for name in UNSUPPORTED_HEAD_CONFIG:
        value = getattr(model.config, name, None)
        if value not in (None, 1, 1.0):
            raise NotImplementedError(f"{type(model).__name__} has {name}={value!r}: the chunked LM head "
                                      "would compute different logits; this model is not supported")
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise NotImplementedError(f"{type(model).__name__}: output head {type(head).__name__} is not a Linear layer")
    if head.bias is not None and not allow_bias:
        raise NotImplementedError(f"{type(model).__name__}: an LM head with a bias is not supported")
    return head


def lm_head_weight(model) -> torch.Tensor:
    """The output embedding matrix (V, H) of a bias-free linear head (see `output_head`)."""
    return output_head(model).weight


def _check_inputs(prompts, completions, vocab: int) -> None:
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"need one list of completions per prompt: {len(prompts)} prompts, "
                         f"{len(completions)} completion groups")
    for p, (prompt, group) in enumerate(zip(prompts, completions)):
        if not prompt:
            raise ValueError(f"prompt {p} is empty")
        if not group or any(not c for c in group):
            raise ValueError(f"prompt {p}: every group needs >= 1 completion and every completion >= 1 token")
        ids = [t for seq in (prompt, *group) for t in seq]
        if min(ids) < 0 or max(ids) >= vocab:
            raise ValueError(f"prompt {p}: token ids must lie in [0, {vocab}); got [{min(ids)}, {max(ids)}]")


def _padded(rows: list[list[int]], device) -> torch.Tensor:
    """Right-padded (with 0) int64 matrix of token rows, built on the CPU and moved to `device` in one copy."""
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long, device="cpu")
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long, device="cpu")
    return out.to(device)


def _shared_prompt_hidden(model, prompts, completions, comp_ids, backend: str = "blocks") -> torch.Tensor:
    """Hidden states predicting each completion token, with each prompt run once.  # (B, Tc, H)

    The prefill covers prompt[:-1] and only its keys and values are used; each completion runs
    as [prompt[-1], c_0, ..., c_{T-2}] against them, so every output position predicts a
    completion token and the prompt's final-layer outputs never enter the backward pass.
    """
    enable_cascade_attention(model)
    base = model.base_model
    device = comp_ids.device
    prefix_lengths = [len(p) - 1 for p in prompts]
    prefill = PrefillContext(flex=backend == "flex")
    if max(prefix_lengths) > 0:
        prefix_ids = _padded([p[:-1] or [0] for p in prompts], device)                          # (P, Lp)
        positions = torch.arange(prefix_ids.shape[1], device=device).expand(len(prompts), -1)
        base(input_ids=prefix_ids, position_ids=positions, use_cache=False, **prefill.forward_kwargs())
        keep_for_backward(model, prefill.layers)        # sharded: the layers' weights return for these K,V
    sizes = [len(g) for g in completions]
    group = torch.repeat_interleave(torch.arange(len(prompts), device=device), torch.tensor(sizes, device=device))
    last = torch.tensor([p[-1] for p in prompts], device=device)[group]                          # (B,)
    inputs = torch.cat([last[:, None], comp_ids[:, :-1]], dim=1)                                 # (B, Tc)
    starts = torch.tensor(prefix_lengths, device=device)[group]
    positions = starts[:, None] + torch.arange(comp_ids.shape[1], device=device)                 # (B, Tc)
    cascade = CascadeContext(prefill, prefix_lengths, sizes, backend=backend)
    return base(input_ids=inputs, position_ids=positions, use_cache=False,
                **cascade.forward_kwargs()).last_hidden_state


def _per_sample_hidden(model, prompts, completions) -> torch.Tensor:
    """Reference path: each prompt + completion as its own sequence (right-padded batch).  # (B, Tc, H)"""
    device = model.get_output_embeddings().weight.device
    seqs, starts, lengths = [], [], []
    for prompt, group in zip(prompts, completions):
        for c in group:
            seqs.append(list(prompt) + list(c))
            starts.append(len(prompt) - 1)
            lengths.append(len(c))
    ids = _padded(seqs, device)                                                                 # (B, T)
    attention = None
    if len({len(s) for s in seqs}) > 1:
        attention = (torch.arange(ids.shape[1], device=device)[None, :] <
                     torch.tensor([len(s) for s in seqs], device=device)[:, None]).long()
    hidden = model.base_model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
    index = torch.tensor(starts, device=device)[:, None] + torch.arange(max(lengths), device=device)
    index = index.clamp_max(ids.shape[1] - 1)                                                   # (B, Tc)
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
