"""Which kernel runs the training attention, and the CPU's choice: masked SDPA over a group's shared keys.

    train.attention: auto | flex | blocks | sdpa      (sft.attention: auto | flex | segments)

- flex: `torch.nn.attention.flex_attention`, compiled, with a block mask (`engine/flex.py`); CUDA (the
  CPU runs its forward only);
- blocks: longrl's cascade attention, query blocks with its own backward (`engine/attention.py`);
- sdpa: per group, the completions' queries against [prompt keys; the completions' own keys] in one
  `scaled_dot_product_attention` with a boolean mask (the same rule as flex's); completions are taken in
  chunks so that a chunk's mask and scores stay within `score_budget` elements. The prompt's keys are
  concatenated once per chunk (one chunk per group at the `longrl bench forward` shapes);
- auto: flex on CUDA, sdpa on the CPU (measured faster than blocks there: benchmarks/perf.md).

The packed SFT forward has flex (CUDA) and segments (causal SDPA per segment, the CPU's path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longrl.engine.flex import MaskCache, dense_mask, shared_prompt_flex, shared_prompt_ids

BACKENDS = ("auto", "flex", "blocks", "sdpa")
PACKED_BACKENDS = ("auto", "flex", "segments")


def resolve_backend(name: str, device: torch.device | str) -> str:
    """The kernel `name` means on `device`: auto -> flex on CUDA, sdpa elsewhere."""
    if name not in BACKENDS:
        raise ValueError(f"unknown training attention {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "flex" if torch.device(device).type == "cuda" else "sdpa"
    return name


def resolve_packed_backend(name: str, device: torch.device | str) -> str:
    """The packed (SFT) kernel `name` means on `device`: auto -> flex on CUDA, segments elsewhere."""
    if name not in PACKED_BACKENDS:
        raise ValueError(f"unknown packed attention {name!r}; choose one of {', '.join(PACKED_BACKENDS)}")
    if name == "auto":
        return "flex" if torch.device(device).type == "cuda" else "segments"
    return name


def completions_per_chunk(group_size: int, heads: int, t: int, prompt_len: int, score_budget: int) -> int:
    """Most completions (>= 1) whose queries x keys x heads fit in `score_budget` elements."""
    c = group_size
    while c > 1 and heads * c * t * (prompt_len + c * t) > score_budget:
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
        chunk = completions_per_chunk(size, heads, t, n, score_budget)
        for s in range(start, start + size, chunk):
            c = min(chunk, start + size - s)
            key = (n, c, t, window)
            if key not in masks:
                queries, keys = shared_prompt_ids([n], n, [0], [c], t, q.device)
                masks[key] = dense_mask(queries, keys, window)[0]                       # (c*T, n + c*T)
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
