"""Cascade attention: G sequences that share one prompt read the prompt's keys and values once.

Plugged into any Hugging Face decoder that dispatches attention through
`transformers.AttentionInterface` (Qwen2, Qwen3, Llama, Mistral, ...):

    enable_cascade_attention(model)                  # once; ordinary calls still run plain SDPA
    prompt = PrefillContext()                        # (a) causal over P right-padded prompts, keeps K,V
    model.base_model(ids, position_ids=pos, use_cache=False, **prompt.forward_kwargs())
    suffix = CascadeContext(prompt, prefix_lengths, group_sizes)   # (b) B = sum(group_sizes) sequences
    model.base_model(ids2, position_ids=pos2, use_cache=False, **suffix.forward_kwargs())

Mode (a) runs causal SDPA over the prompts and stores each layer's post-RoPE K,V, one copy per
prompt. Mode (b) attends the queries of each group to its prompt's K,V in one batched matmul per
group (the G queries are stacked along the query axis, so the prefix is read once and grouped-query
heads are never repeated; padding of shorter prompts is masked), and to each sequence's own keys
(causal), then merges
the two partial results exactly with their log-sum-exp (`merge_attention`). For decoding, the
suffix keys live in a preallocated per-sequence buffer written in place (`capacity=`); for the
training forward the suffix is the whole completion and gradients flow through the prefix K,V
into the prompt forward.

The context reaches the attention function either as the keyword argument `longrl_attention`
(every AttentionInterface decoder forwards extra keywords to it, Llama and Mistral included; this is
what longrl uses, with a ready 1x1x1x1 `attention_mask` so the decoder builds no mask of its own) or
as `attention_mask={"full_attention": ctx}` on decoders that accept prepared mask dicts (Qwen2, Qwen3,
Gemma...). Without a context the function is plain SDPA, and a matching SDPA mask builder is
registered, so ordinary calls behave as with `attn_implementation="sdpa"`.

Sliding-window layers (Mistral, Qwen2 with `use_sliding_window`, Gemma 3's local layers: the
decoder passes `sliding_window=W`) are computed as Hugging Face defines them, each query seeing the
W latest positions, itself included: in the prefill (causal and windowed, blockwise), against the
prompt's keys (a late query's window may leave some or all of them out, per prompt) and against
the sequence's own keys. Where W is longer than every query's reach the plain paths run unchanged.
Scores are computed in blocks of query rows (`score_budget` elements), forward and backward, so
memory stays bounded for long prompts.

The training forward (mode (b) without `capacity`) may instead run each layer's completion attention as
one masked call, `backend="flex"` (flex_attention, CUDA) or `"sdpa"` (masked SDPA, the CPU's default):
`engine/masked.py`, `engine/flex.py`; `train.attention` chooses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from longrl.engine.flex import packed_flex
from longrl.engine.masked import attend_shared_prompt
from longrl.engine.ulysses import SP_KWARG

IMPLEMENTATION = "longrl_cascade"
CONTEXT_KWARG = "longrl_attention"
SCORE_BUDGET = 1 << 24   # elements of one (rows x keys) score block: 64 MB in fp32
# Given as `attention_mask` with a context: a ready 4D mask makes the decoder build none (transformers
# returns a 4D mask as it is), never an (L x L) one for sliding-window layers; cascade attention ignores it.
READY_MASK = torch.ones(1, 1, 1, 1, dtype=torch.bool)


def merge_attention(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor, lse2: torch.Tensor):
    """Exact softmax attention over the union of two key sets, from the two partial results.

    Args:
        o1, o2: attention outputs over key sets 1 and 2.         # (..., T, D)
        lse1, lse2: log-sum-exp of the scaled scores per query.  # (..., T), -inf = no key
    Returns:
        (o, lse): output and log-sum-exp over both key sets; rows with no key at all give 0 and -inf.

    Example: one key each, scores 0 and log 3 -> weights 1/4 and 3/4: o = o1/4 + 3*o2/4.
    """
    lse = torch.logaddexp(lse1, lse2)
    finite = torch.isfinite(lse)
    safe = torch.where(finite, lse, torch.zeros_like(lse))
    w1 = torch.where(finite, torch.exp(lse1 - safe), torch.zeros_like(lse)).unsqueeze(-1)
    w2 = torch.where(finite, torch.exp(lse2 - safe), torch.zeros_like(lse)).unsqueeze(-1)
    return o1 * w1.to(o1.dtype) + o2 * w2.to(o2.dtype), lse


def autocast_state(device_type: str) -> dict:
    """torch.autocast(**state) re-enters the autocast state in force now (custom backward passes run outside it)."""
    enabled = torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if enabled else torch.bfloat16
    return {"device_type": device_type, "dtype": dtype, "enabled": enabled}


def _block_mask(q_pos, k_pos, key_valid, start: int, end: int, causal: bool = True, window: int | None = None):
    """Boolean mask (N|1, rows, L) of allowed keys for query rows [start, end), or None.

    With positions (q_pos (M,) or (N, M); k_pos (L,) or (N, L)): causal allows k_pos <= q_pos, a
    window allows k_pos > q_pos - window (the `window` latest positions, as Hugging Face's sliding
    window); padding keys are False in key_valid.
    """
    mask = None
    if q_pos is not None:
        qp = q_pos[..., start:end, None]                                          # (rows, 1) | (N, rows, 1)
        kp = k_pos[..., None, :]                                                  # (1, L) | (N, 1, L)
        if causal:
            mask = kp <= qp
        if window is not None:
            inside = kp > qp - window
            mask = inside if mask is None else mask & inside
        if mask is not None and mask.dim() == 2:
            mask = mask.unsqueeze(0)                                              # (1, rows, L)
    if key_valid is not None:
        valid = key_valid[:, None, :]                                             # (N, 1, L)
        mask = valid if mask is None else mask & valid
    return mask


def _scores(q, k, scale, mask):
    s = torch.bmm(q, k.transpose(1, 2)).float().mul_(scale)                       # (N, rows, L)
    if mask is not None:
        s.masked_fill_(~mask, float("-inf"))
    return s


class _AttentionWithLSE(torch.autograd.Function):
    """Softmax attention returning (out, lse), blockwise over query rows in forward and backward.

    Backward recomputes each block's probabilities from the saved log-sum-exp (as flash attention
    does), so no (rows x keys) matrix outlives its block: dS = P * (dO.V^T - rowsum(dO*O) + dLSE).
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, q_pos, k_pos, key_valid, block, causal=True, window=None):
        n, m, _ = q.shape
        out = torch.empty(n, m, v.shape[-1], dtype=q.dtype, device=q.device)
        lse = torch.empty(n, m, dtype=torch.float32, device=q.device)
        for start in range(0, m, block):
            end = min(m, start + block)
            s = _scores(q[:, start:end], k, scale, _block_mask(q_pos, k_pos, key_valid, start, end, causal, window))
            peak = s.amax(-1, keepdim=True)
            peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
            p = s.sub_(peak).exp_()
            denom = p.sum(-1, keepdim=True)
            o = torch.bmm(p.to(v.dtype), v).float() / denom.clamp_min(torch.finfo(torch.float32).tiny)
            out[:, start:end] = o.to(q.dtype)
            lse[:, start:end] = (peak + denom.log()).squeeze(-1)
        ctx.save_for_backward(q, k, v, out, lse, q_pos, k_pos, key_valid)
        ctx.scale, ctx.block, ctx.causal, ctx.window = scale, block, causal, window
        ctx.autocast = autocast_state(q.device.type)        # the backward recomputes scores as the forward did
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        with torch.autocast(**ctx.autocast):
            return _AttentionWithLSE._backward(ctx, d_out, d_lse)

    @staticmethod
    def _backward(ctx, d_out, d_lse):
        q, k, v, out, lse, q_pos, k_pos, key_valid = ctx.saved_tensors
        scale, block = ctx.scale, ctx.block
        dq = torch.zeros_like(q, dtype=torch.float32)
        dk = torch.zeros_like(k, dtype=torch.float32)
        dv = torch.zeros_like(v, dtype=torch.float32)
        d_out = d_out.float()
        delta = (d_out * out.float()).sum(-1)                                     # (N, M)
        lse_safe = torch.where(torch.isfinite(lse), lse, torch.full_like(lse, float("inf")))
        for start in range(0, q.shape[1], block):
            end = min(q.shape[1], start + block)
            qb = q[:, start:end]
            s = _scores(qb, k, scale, _block_mask(q_pos, k_pos, key_valid, start, end, ctx.causal, ctx.window))
            p = s.sub_(lse_safe[:, start:end, None]).exp_()                      # (N, rows, L)
            dob = d_out[:, start:end]
            dv += torch.bmm(p.transpose(1, 2), dob)
            ds = torch.bmm(dob, v.float().transpose(1, 2))
            ds.sub_(delta[:, start:end, None]).add_(d_lse[:, start:end, None].float()).mul_(p)
            dq[:, start:end] = torch.bmm(ds, k.float()) * scale
            dk += torch.bmm(ds.transpose(1, 2), qb.float()) * scale
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None, None, None


def attention_with_lse(q, k, v, scale: float, q_pos=None, k_pos=None, key_valid=None,
                       score_budget: int = SCORE_BUDGET, causal: bool = True, window: int | None = None):
    """Softmax attention that also returns the log-sum-exp of the scores, differentiable in both.

    Args:
        q: queries.                                  # (N, M, D)
        k, v: keys and values.                       # (N, L, D)
        scale: score multiplier (usually D ** -0.5).
        q_pos, k_pos: positions of queries and keys, or None (no positional mask).  # (M,) | (N, M); (L,) | (N, L)
        key_valid: False marks padding keys, or None.  # (N, L) bool
        score_budget: elements of one score block; query rows are processed in blocks of this size.
        causal: with positions, a key is allowed only if k_pos <= q_pos.
        window: with positions, a key is allowed only if k_pos > q_pos - window (sliding-window layers:
            each query sees the `window` latest positions, itself included), or None.
    Returns:
        (out, lse): out (N, M, D) in q's dtype; lse (N, M) float32, -inf for a query with no allowed key.
    """
    block = max(1, score_budget // max(1, q.shape[0] * k.shape[1]))
    return _AttentionWithLSE.apply(q, k, v, scale, q_pos, k_pos, key_valid, block, causal, window)


def windowed_causal_attention(q, k, v, scale: float, window: int, score_budget: int = SCORE_BUDGET) -> torch.Tensor:
    """Causal attention of L positions (0..L-1) where each query sees its `window` latest keys.

    Args:
        q: (B, H, L, D); k, v: (B, KVH, L, D), H a multiple of KVH (grouped-query heads are not repeated).
    Returns:
        (B, H, L, D) in q's dtype, memory bounded by `score_budget` (no L x L mask), differentiable.
    """
    b, heads, length, d = q.shape
    kv_heads = k.shape[1]
    rep = heads // kv_heads
    positions = torch.arange(length, device=q.device)
    o, _ = attention_with_lse(q.reshape(b * kv_heads, rep * length, d), k.reshape(b * kv_heads, length, d),
                              v.reshape(b * kv_heads, length, d), scale, positions.repeat(rep), positions,
                              score_budget=score_budget, window=window)
    return o.view(b, heads, length, d)


class PrefillContext:
    """Mode (a): causal attention over right-padded prompts; keeps each layer's K,V (one copy per prompt).

    `flex=True` runs sliding-window layers through flex_attention (a causal, windowed block mask per row)
    instead of query blocks; causal layers stay on SDPA.
    """

    def __init__(self, flex: bool = False):
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # layer -> K, V (P, KVH, L, D)
        self.flex = flex

    def forward_kwargs(self) -> dict:
        return {CONTEXT_KWARG: self, "attention_mask": READY_MASK}

    def attend(self, layer: int, q, k, v, scale: float, window: int | None = None) -> torch.Tensor:
        # Contiguous (P, KVH, L, D) so that later (P*KVH, L, D) views are free; a backward replay
        # under gradient checkpointing stores equal values again, which is harmless.
        k, v = k.contiguous(), v.contiguous()
        self.layers[layer] = (k, v)
        if window is not None and k.shape[2] > window:       # a sliding-window layer whose window binds here
            if self.flex:
                return packed_flex(q, k, v, [[k.shape[2]]] * k.shape[0], scale, window)
            return windowed_causal_attention(q, k, v, scale, window)
        gqa = q.shape[1] != k.shape[1]
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)

    def kv_bytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers.values())


class CascadeContext:
    """Mode (b): B sequences, grouped by prompt, attend to their prompt's stored K,V and to their own keys.

    Suffixes are right-padded: causality alone keeps every real query away from padding keys.

    Args:
        prefix: the PrefillContext that ran the prompts.
        prefix_lengths: true length of each prefix (rows of the prefill batch; 0 allowed).  # P ints
        group_sizes: sequences per prompt, in batch order; B = sum(group_sizes).
        capacity: if set, suffix K,V go to a preallocated buffer of this many positions, written
            in place at `offset` (decoding); call `advance(n)` after each forward of n tokens.
        groups: prefix row of each group (default: 0..P-1); lets a batch drop finished groups.
        score_budget: elements of one block of attention scores (see `attention_with_lse`).
        backend: the training forward's kernel (capacity None): "blocks" (this module), or "sdpa" / "flex",
            one masked call per layer (`engine/masked.py`, `engine/flex.py`; resolved names, not "auto").
    """

    def __init__(self, prefix: PrefillContext, prefix_lengths: list[int], group_sizes: list[int],
                 capacity: int | None = None, groups: list[int] | None = None, score_budget: int = SCORE_BUDGET,
                 backend: str = "blocks"):
        self.prefix, self.prefix_lengths = prefix, list(prefix_lengths)
        self.group_sizes = list(group_sizes)
        self.groups = list(range(len(group_sizes))) if groups is None else list(groups)
        if len(self.groups) != len(self.group_sizes) or min(self.group_sizes, default=1) < 1:
            raise ValueError("one positive group size per group is required")
        self.capacity, self.score_budget = capacity, score_budget
        self.offset = 0
        self.buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}       # layer -> K, V (B, KVH, cap, D)
        self._valid: torch.Tensor | None = None                                # prompt-key mask, made once
        self._lengths: dict[tuple[int, ...], torch.Tensor] = {}                # groups -> their prompt lengths
        self.ready_mask = READY_MASK                                           # what the decoder is given as its mask
        self.backend, self._masked = backend, {}                               # masks of the masked backends

    def forward_kwargs(self) -> dict:
        return {CONTEXT_KWARG: self, "attention_mask": self.ready_mask}

    def advance(self, n: int) -> None:
        """Mark n more suffix positions as written (decoding)."""
        self.offset += n

    def kv_bytes(self) -> int:
        """Bytes of K,V held for this batch: the prompts once plus the suffix buffers."""
        return self.prefix.kv_bytes() + sum(k.nbytes + v.nbytes for k, v in self.buffers.values())

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` of the batch (sorted indices), e.g. to drop finished sequences."""
        keep = set(rows.tolist())
        sizes, groups, start = [], [], 0
        for g, size in zip(self.groups, self.group_sizes):
            kept = sum(1 for r in range(start, start + size) if r in keep)
            if kept:
                sizes.append(kept)
                groups.append(g)
            start += size
        self.group_sizes, self.groups = sizes, groups
        self.buffers = {i: (k.index_select(0, rows), v.index_select(0, rows)) for i, (k, v) in self.buffers.items()}

    def attend(self, layer: int, q, k, v, scale: float, window: int | None = None) -> torch.Tensor:
        """`window`: a sliding-window layer's window (each query sees its `window` latest positions), or None."""
        if self.backend != "blocks" and self.capacity is None:          # training forward: one masked call
            return attend_shared_prompt(self.backend, q, k, v, self.prefix.layers.get(layer), self.prefix_lengths,
                                        self.groups, self.group_sizes, scale, window, self.score_budget,
                                        self._masked).to(q.dtype)
        o1, lse1 = self._attend_prefix(layer, q, scale, window)
        o2, lse2 = self._attend_suffix(layer, q, k, v, scale, window)
        out, _ = merge_attention(o1.float(), lse1, o2.float(), lse2)
        return out.to(q.dtype)

    def _query_start(self):
        """Suffix position of this forward's first query: the positions written before it."""
        return self.offset

    def _window_binds(self, window: int | None, t: int) -> bool:
        """Whether some query of this forward is `window` or more positions after the first prompt key."""
        if window is None:
            return False
        last = max((self.prefix_lengths[g] for g in self.groups), default=0) + self._last_suffix_position(t)
        return last >= window

    def _last_suffix_position(self, t: int) -> int:
        return self.offset + t - 1

    def _suffix_keys(self, layer: int, k, v):
        if self.capacity is None:
            return k, v
        if layer not in self.buffers:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.buffers[layer] = (k.new_empty(shape), v.new_empty(shape))
        kb, vb = self.buffers[layer]
        end = self.offset + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"suffix buffer full: {end} positions > capacity {self.capacity}")
        kb[:, :, self.offset:end] = k
        vb[:, :, self.offset:end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def _attend_suffix(self, layer: int, q, k, v, scale: float, window: int | None = None):
        b, heads, t, d = q.shape
        kv_heads = k.shape[1]
        rep = heads // kv_heads
        ks, vs = self._suffix_keys(layer, k, v)
        length = ks.shape[2]
        offset = length - t
        window = window if window is not None and length > window else None   # binds only past `window` keys
        q_pos = k_pos = None
        if t > 1 or window is not None:   # one new token sees every key written so far: no causal mask needed
            q_pos = (torch.arange(t, device=q.device) + offset).repeat(rep)         # (rep*T,)
            k_pos = torch.arange(length, device=q.device)
        o, lse = attention_with_lse(q.reshape(b * kv_heads, rep * t, d), ks.reshape(b * kv_heads, length, d),
                                    vs.reshape(b * kv_heads, length, d), scale, q_pos, k_pos,
                                    score_budget=self.score_budget, window=window)
        return o.view(b, heads, t, d), lse.view(b, heads, t)

    def _prefix_query_positions(self, groups: list[int], rows: int, t: int, device) -> torch.Tensor:
        """Absolute position of every query row, per group: prompt length + suffix position.  # (len(groups), rows)

        Rows are laid out (sequence, head, token) with the token fastest, so row r is token r % t.
        """
        key = tuple(groups)
        if key not in self._lengths:             # made once per batch shape (a replayed CUDA graph cannot copy)
            self._lengths[key] = torch.tensor([self.prefix_lengths[g] for g in groups], device="cpu").to(device)
        lengths = self._lengths[key]
        tokens = torch.arange(t, device=device).repeat(rows // t)
        return lengths[:, None] + self._query_start() + tokens[None, :]

    def _prefix_valid(self, p: int, kv_heads: int, max_len: int, device):
        """(P*KVH, L) mask of real prompt keys, None when no prompt is padded; made once (a decode step
        replayed from a CUDA graph cannot copy host lists to the device)."""
        if all(n == max_len for n in self.prefix_lengths):
            return None
        if self._valid is None or self._valid.shape != (p * kv_heads, max_len):
            lengths = torch.tensor(self.prefix_lengths, device=device)
            valid = torch.arange(max_len, device=device)[None, :] < lengths[:, None]
            self._valid = valid[:, None, :].expand(p, kv_heads, max_len).reshape(p * kv_heads, max_len)
        return self._valid

    def _attend_prefix(self, layer: int, q, scale: float, window: int | None = None):
        b, heads, t, d = q.shape
        if layer not in self.prefix.layers or max(self.prefix_lengths[g] for g in self.groups) == 0:
            return _no_keys(q, b)                    # every prefix is empty: it contributes nothing
        pk, pv = self.prefix.layers[layer]                                          # (P, KVH, L, D)
        kv_heads, max_len = pk.shape[1], pk.shape[2]
        rep = heads // kv_heads
        g0 = self.group_sizes[0]
        window = window if self._window_binds(window, t) else None
        if self.groups == list(range(pk.shape[0])) and all(g == g0 for g in self.group_sizes):
            # Every prompt present with G sequences: one batched matmul over (prompt, kv head).
            p = len(self.groups)
            qg = q.reshape(p, g0, kv_heads, rep, t, d).transpose(1, 2).reshape(p * kv_heads, g0 * rep * t, d)
            valid = self._prefix_valid(p, kv_heads, max_len, q.device)
            q_pos = k_pos = None
            if window is not None:                   # prompt keys older than the window drop out, per prompt
                q_pos = self._prefix_query_positions(self.groups, g0 * rep * t, t, q.device).repeat_interleave(kv_heads, 0)
                k_pos = torch.arange(max_len, device=q.device)
            o, lse = attention_with_lse(qg, pk.view(p * kv_heads, max_len, d), pv.view(p * kv_heads, max_len, d),
                                        scale, q_pos, k_pos, key_valid=valid, score_budget=self.score_budget,
                                        causal=False, window=window)
            o = o.view(p, kv_heads, g0, rep, t, d).transpose(1, 2).reshape(b, heads, t, d)
            return o, lse.view(p, kv_heads, g0, rep, t).transpose(1, 2).reshape(b, heads, t)
        outs, lses, start = [], [], 0
        for g, size in zip(self.groups, self.group_sizes):
            n = self.prefix_lengths[g]
            if n == 0:
                o, lse = _no_keys(q, size)
            else:
                qg = q[start:start + size].reshape(size, kv_heads, rep * t, d).transpose(0, 1)
                qg = qg.reshape(kv_heads, size * rep * t, d)
                q_pos = k_pos = None
                if window is not None:
                    q_pos = self._prefix_query_positions([g], size * rep * t, t, q.device)[0]
                    k_pos = torch.arange(n, device=q.device)
                o, lse = attention_with_lse(qg, pk[g, :, :n], pv[g, :, :n], scale, q_pos, k_pos,
                                            score_budget=self.score_budget, causal=False, window=window)
                o = o.view(kv_heads, size, rep * t, d).transpose(0, 1).reshape(size, heads, t, d)
                lse = lse.view(kv_heads, size, rep * t).transpose(0, 1).reshape(size, heads, t)
            outs.append(o)
            lses.append(lse)
            start += size
        return torch.cat(outs), torch.cat(lses)


def _no_keys(q, rows: int):
    """Attention over an empty key set: output 0, log-sum-exp -inf."""
    _, heads, t, d = q.shape
    return q.new_zeros(rows, heads, t, d), q.new_full((rows, heads, t), float("-inf"), dtype=torch.float32)


def _context_of(attention_mask, kwargs):
    ctx = kwargs.pop(CONTEXT_KWARG, None)
    if ctx is None and isinstance(attention_mask, (PrefillContext, CascadeContext)):
        ctx = attention_mask
    return ctx


def cascade_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """The registered attention function: cascade modes with a context, plain SDPA without one."""

    if (sp := kwargs.pop(SP_KWARG, None)) is not None:      # Ulysses: this rank's heads over the whole sequence
        return sp.attention(cascade_attention, module, query, key, value, attention_mask, scaling=scaling,
                            dropout=dropout, **kwargs)
    ctx = _context_of(attention_mask, kwargs)
    if ctx is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    _check_supported(module, dropout, kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    window = kwargs.get("sliding_window")                                           # sliding-window layers
    out = ctx.attend(module.layer_idx, query, key, value, scale, window)            # (B, H, T, D)
    return out.transpose(1, 2).contiguous(), None


def _check_supported(module, dropout: float, kwargs: dict) -> None:
    if dropout:
        raise NotImplementedError("longrl cascade attention does not implement attention dropout; "
                                  "set the model's attention_dropout to 0")
    for name in ("softcap", "s_aux", "position_bias"):
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"longrl cascade attention does not implement {name!r}")


def register_cascade_attention() -> None:
    """Register `longrl_cascade` with transformers (attention function + SDPA mask builder); idempotent."""

    AttentionInterface.register(IMPLEMENTATION, cascade_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def enable_cascade_attention(model) -> None:
    """Switch `model` to the cascade attention function; plain calls keep behaving as with SDPA."""
    register_cascade_attention()
    if model.config._attn_implementation != IMPLEMENTATION:
        model.set_attn_implementation(IMPLEMENTATION)
    if model.config._attn_implementation != IMPLEMENTATION:
        raise NotImplementedError(f"{type(model).__name__} cannot switch its attention implementation "
                                  "(it does not dispatch through transformers.AttentionInterface)")
