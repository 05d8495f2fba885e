"""Which kernel runs the training attention, and the CPU's choice: masked SDPA over a group's shared keys.

    train.attention: auto | flex | blocks | sdpa      (sft.attention: auto | flex | segments)

- flex: `torch.nn.attention.flex_attention`, compiled, with a block mask (`engine/flex.py`); CUDA (the
  CPU runs its forward only);
- blocks: longrl's cascade attention, query blocks with its own backward (`engine/attention.py`);
- sdpa: per group, the completions' queries against [prompt keys; the completions' own keys] in one
  `scaled_dot_product_attention` with an additive mask (the same rule as flex's, made once per forward
  and shared by the layers: SDPA saves its mask for the backward); completions are taken in chunks so
  that a chunk's mask stays within `score_budget` elements. The prompt's keys are concatenated (copied,
  and kept for the backward) once per chunk;
- auto: flex on CUDA; on the CPU sdpa (measured faster than blocks: benchmarks/perf.md) where every
  group fits in MAX_PROMPT_COPIES chunks (one at the `longrl bench forward` shapes), else blocks, whose
  memory does not grow with the number of completions.

The packed SFT forward has flex (CUDA) and segments (causal SDPA per segment, the CPU's path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longrl.engine.flex import MaskCache, dense_mask, shared_prompt_flex, shared_prompt_ids

BACKENDS = ("auto", "flex", "blocks", "sdpa")
PACKED_BACKENDS = ("auto", "flex", "segments")
MASK_BUDGET = 1 << 24       # elements of one chunk's mask (= engine.attention.SCORE_BUDGET)
MAX_PROMPT_COPIES = 2       # auto picks sdpa on the CPU only if no group needs more chunks (prompt K,V copies)


def resolve_backend(name: str, device: torch.device | str, chunks: int = 1) -> str:
    """The kernel `name` means on `device`: auto -> flex on CUDA; on the CPU sdpa if the batch needs at most
    MAX_PROMPT_COPIES chunks per group (`sdpa_chunks`), else blocks."""
    if name not in BACKENDS:
        raise ValueError(f"unknown training attention {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        if torch.device(device).type == "cuda":
            return "flex"
        return "sdpa" if chunks <= MAX_PROMPT_COPIES else "blocks"
    return name


def sdpa_chunks(prefix_lengths: list[int], group_sizes: list[int], t: int, score_budget: int = MASK_BUDGET) -> int:
    """Most chunks any group takes on the sdpa path (group i reads prompt i; completions of t tokens)."""
    return max(-(-size // completions_per_chunk(size, t, n, score_budget))
               for n, size in zip(prefix_lengths, group_sizes))


def resolve_packed_backend(name: str, device: torch.device | str) -> str:
    """The packed (SFT) kernel `name` means on `device`: auto -> flex on CUDA, segments elsewhere."""
    if name not in PACKED_BACKENDS:
        raise ValueError(f"unknown packed attention {name!r}; choose one of {', '.join(PACKED_BACKENDS)}")
    if name == "auto":
        return "flex" if torch.device(device).type == "cuda" else "segments"
    return name


def completions_per_chunk(group_size: int, t: int, prompt_len: int, score_budget: int) -> int:
    """Most completions (>= 1) whose mask, queries x keys, fits in `score_budget` elements."""
    c = group_size
    while c > 1 and c * t * (prompt_len + c * t) > score_budget:
        c -= 1
    return c


def shared_prompt_sdpa(q, k, v, prompt_k, prompt_v, prefix_lengths: list[int], groups: list[int],
                       group_sizes: list[int], scale: float, window: int | None, score_budget: int,
                       masks: dict) -> torch.Tensor:
    """B completions (q: (B, H, T, D); k, v: (B, KVH, T, D)) against their prompts and themselves.

    Args:
        prompt_k, prompt_v: (P, KVH, Lp, D), prompt row p real up to prefix_lengths[p].
        groups, group_sizes: group i is the next group_sizes[i] sequences, reading prompt row groups[i].
        window: a sliding-window layer's window, or None.
        masks: a dict kept for one forward (the masks are shared by the layers).
    Returns:
        (B, H, T, D), differentiable (SDPA's own backward).
    """
    b, heads, t, d = q.shape
    kv_heads = k.shape[1]
    flat = lambda x, h: x.transpose(0, 1).reshape(1, h, -1, d)  # noqa: E731   (N, h, T, D) -> (1, h, N*T, D)
    outs, start = [], 0
    for g, size in zip(groups, group_sizes):
        n = prefix_lengths[g]
        chunk = completions_per_chunk(size, t, n, score_budget)
        for s in range(start, start + size, chunk):
            c = min(chunk, start + size - s)
            key = (n, c, t, window, q.dtype)
            if key not in masks:                     # additive, in q's dtype: SDPA would convert a boolean one per call
                queries, keys = shared_prompt_ids([n], n, [0], [c], t, q.device)
                allowed = dense_mask(queries, keys, window)[0]                           # (c*T, n + c*T)
                masks[key] = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
            ks = torch.cat([prompt_k[g:g + 1, :, :n], flat(k[s:s + c], kv_heads)], 2)
            vs = torch.cat([prompt_v[g:g + 1, :, :n], flat(v[s:s + c], kv_heads)], 2)
            o = F.scaled_dot_product_attention(flat(q[s:s + c], heads), ks, vs, attn_mask=masks[key], scale=scale,
                                               enable_gqa=heads != kv_heads)
            outs.append(o.view(heads, c, t, d).transpose(0, 1))
        start += size
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def attend_shared_prompt(backend: str, q, k, v, prompt_kv, prefix_lengths: list[int], groups: list[int],
                         group_sizes: list[int], scale: float, window: int | None, score_budget: int,
                         state: dict) -> torch.Tensor:
    """The training forward's completion attention by `backend` ("sdpa" or "flex"); (B, H, T, D).

    `prompt_kv`: the prefill's (K, V) of this layer, (P, KVH, Lp, D) each, or None when every prompt is
    empty. `state`: a dict kept for one forward (masks shared by the layers and the backward's recompute).
    """
    if prompt_kv is None:
        empty = k.new_zeros(len(prefix_lengths), k.shape[1], 0, k.shape[3])
        prompt_kv = (empty, empty)
    prompt_k, prompt_v = prompt_kv
    if backend == "sdpa":
        return shared_prompt_sdpa(q, k, v, prompt_k, prompt_v, prefix_lengths, groups, group_sizes, scale, window,
                                  score_budget, state.setdefault("sdpa", {}))
    if backend != "flex":
        raise ValueError(f"no masked training attention {backend!r}")
    if "flex" not in state:
        state["flex"] = MaskCache(*shared_prompt_ids(prefix_lengths, prompt_k.shape[2], groups, group_sizes,
                                                     q.shape[2], q.device))
    return shared_prompt_flex(q, k, v, prompt_k, prompt_v, state["flex"], scale, window)
