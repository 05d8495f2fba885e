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
from the prompt's last hidden state) by `chunked_token_stats` (`engine/chunked.py`), which applies the
LM head to `chunk_tokens` positions at a time and recomputes each chunk's logits in the backward pass,
so [tokens x vocab] logits never exist for more than one chunk.

A model with a sequence-parallel group attached (`engine/ulysses.py`, `train.sequence_parallel` > 1)
runs both forwards on this rank's block of positions (prompt and completions alike, right-padded to
a multiple of the group size, global positions), scores the targets of that block and gathers the
blocks: every rank of the group returns the whole (B, Tc) result. The per-sample forward then runs
with causal attention over its right-padded rows (no padding mask: real tokens never see padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longrl.engine.attention import (
    CascadeContext,
    PrefillContext,
    enable_cascade_attention,
)
from longrl.engine.chunked import chunked_token_stats, training_temperature  # noqa: F401  (importable from here)
from longrl.engine.masked import resolve_backend, sdpa_chunks
from longrl.engine.sharding import keep_for_backward, run_forward
from longrl.engine.ulysses import SequenceParallel, attached
from longrl.models.loading import UNSUPPORTED_HEAD_CONFIG  # also refused when a model loads



@dataclass
class TokenStats:
    logprobs: torch.Tensor          # (B, Tc) float32, zero at padding
    entropy: torch.Tensor | None    # (B, Tc) float32, zero at padding; None when not asked for
    mask: torch.Tensor              # (B, Tc) bool, True at real completion tokens


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
    backend = "blocks"
    if shared_prompt:
        chunks = sdpa_chunks([len(p) - 1 for p in prompts], [len(g) for g in completions], length)
        backend = resolve_backend(attention, device, chunks)
    if (sp := attached(model)) is not None:
        stats = _sequence_parallel_stats(model, sp, prompts, completions, targets, mask, shared_prompt, backend,
                                         lambda h, t: chunked_token_stats(h, weight, t, chunk_tokens, with_entropy,
                                                                          temperature))
        return TokenStats(*stats, mask=mask)
    if shared_prompt:
        hidden = _shared_prompt_hidden(model, prompts, completions, targets, backend=backend)
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


def _sequence_parallel_stats(model, sp: SequenceParallel, prompts, completions, targets, mask, shared_prompt: bool,
                             backend: str, stats_of):
    """(log-probs, entropy | None), each (B, Tc) and zero at padding, with each sequence split over `sp`'s ranks:
    this rank scores its block of positions (`stats_of(hidden rows, target rows)`), then the blocks are gathered."""
    if shared_prompt:                       # completion position j predicts token j
        hidden = _shared_prompt_hidden(model, prompts, completions, targets, sp, backend)
        wanted, index = targets.masked_fill(~mask, -1), None
    else:                                   # prompt + completion rows: position t predicts token t + 1
        hidden, wanted, index = _per_sample_hidden_sharded(model, sp, prompts, completions)
    keep = sp.columns(wanted >= 0, pad_value=False)                          # this rank's positions with a target
    local = stats_of(hidden[keep], sp.columns(wanted)[keep])
    full = [None if v is None else sp.gather(torch.zeros(keep.shape, dtype=v.dtype, device=v.device)
                                             .masked_scatter(keep, v)) for v in local]          # (B, T padded)
    if index is None:
        return [None if v is None else v[:, :mask.shape[1]].clone() for v in full]      # (a copy: FSDP's hooks)
    return [None if v is None else v.gather(1, index).masked_fill(~mask, 0.0) for v in full]


def _per_sample_hidden_sharded(model, sp: SequenceParallel, prompts, completions):
    """This rank's block of the per-sample forward: (hidden (B, T/N, H), targets (B, T) with -1 where nothing is
    predicted, index (B, Tc) of the position predicting each completion token)."""
    enable_cascade_attention(model)        # PrefillContext: causal attention over right-padded rows, no mask
    device = lm_head_weight(model).device
    seqs = [list(p) + list(c) for p, group in zip(prompts, completions) for c in group]
    starts = torch.tensor([len(p) - 1 for p, group in zip(prompts, completions) for _ in group], device=device)
    ids = _padded(seqs, device)                                                                 # (B, T)
    steps = torch.arange(ids.shape[1], device=device)
    ends = torch.tensor([len(s) - 1 for s in seqs], device=device)
    scored = (steps >= starts[:, None]) & (steps < ends[:, None])
    wanted = ids.roll(-1, 1).masked_fill(~scored, -1)                                          # (B, T)
    hidden = model.base_model(input_ids=sp.columns(ids), position_ids=sp.columns(steps.expand_as(ids)), use_cache=False,
                              **PrefillContext().forward_kwargs(), **sp.forward_kwargs()).last_hidden_state
    index = (starts[:, None] + torch.arange(max(len(c) for g in completions for c in g), device=device))
    return hidden, wanted, index.clamp_max(ids.shape[1] - 1)


def _shared_prompt_hidden(model, prompts, completions, comp_ids, sp: SequenceParallel | None = None,
                          backend: str = "blocks") -> torch.Tensor:
    """Hidden states predicting each completion token, with each prompt run once.  # (B, Tc, H)

    The prefill covers prompt[:-1] and only its keys and values are used; each completion runs
    as [prompt[-1], c_0, ..., c_{T-2}] against them, so every output position predicts a
    completion token and the prompt's final-layer outputs never enter the backward pass.
    With `sp`, this rank's block of positions of both passes (B, Tc/N padded, H).
    """
    split = sp.columns if sp is not None else (lambda x: x)
    extra = sp.forward_kwargs() if sp is not None else {}
    enable_cascade_attention(model)
    base = model.base_model
    device = comp_ids.device
    prefix_lengths = [len(p) - 1 for p in prompts]
    prefill = PrefillContext(flex=backend == "flex")
    if max(prefix_lengths) > 0:
        prefix_ids = _padded([p[:-1] or [0] for p in prompts], device)                          # (P, Lp)
        positions = torch.arange(prefix_ids.shape[1], device=device).expand(len(prompts), -1)
        base(input_ids=split(prefix_ids), position_ids=split(positions), use_cache=False, **prefill.forward_kwargs(),
             **extra)
        keep_for_backward(model, prefill.layers)        # sharded: the layers' weights return for these K,V
    sizes = [len(g) for g in completions]
    group = torch.repeat_interleave(torch.arange(len(prompts), device=device), torch.tensor(sizes, device=device))
    last = torch.tensor([p[-1] for p in prompts], device=device)[group]                          # (B,)
    inputs = torch.cat([last[:, None], comp_ids[:, :-1]], dim=1)                                 # (B, Tc)
    starts = torch.tensor(prefix_lengths, device=device)[group]
    positions = starts[:, None] + torch.arange(comp_ids.shape[1], device=device)                 # (B, Tc)
    cascade = CascadeContext(prefill, prefix_lengths, sizes, backend=backend)
    return base(input_ids=split(inputs), position_ids=split(positions), use_cache=False,
                **cascade.forward_kwargs(), **extra).last_hidden_state


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
