"""Block-diagonal causal attention over packed rows, without a (row x row) mask.

    with packed_attention(model):                      # switches the attention function, restores it after
        out = model.base_model(input_ids=ids, position_ids=pos, use_cache=False,
                               **segment_kwargs(batch.segments))      # segments: lengths per row

Every packed row holds several examples side by side (`longrl.sft.packing`). Inside the
context, each decoder layer's attention splits every row into its segments and runs causal
SDPA on each one alone, so no token ever sees another example, and the cost is the sum of
the squared segment lengths instead of the square of the row. Positions (RoPE) restart per
segment through `position_ids`, which makes a packed example's per-token loss equal to
the example's loss when run alone.

How it plugs in: the function is registered with `transformers.AttentionInterface` under
`longrl_packed`, with no mask builder, so transformers builds no mask at all for it (a packed
mask would be rows x T x T booleans); the segment lengths reach it as the keyword argument
`longrl_segments`, which Hugging Face decoders pass down to their attention function. A
sliding-window layer sees, within its segment, the window's latest positions (blockwise, no mask
of size segment x segment); soft-capping and attention dropout are not implemented and raise. With activation
checkpointing the backward pass recomputes layers, so it must run inside the block too.

`packed_attention(model, "flex")` (`sft.attention`; auto picks it on CUDA) runs the same rows through
flex_attention instead, one compiled call per layer with a document-causal block mask (`engine/flex.py`,
registered as `longrl_packed_flex`); the per-segment SDPA above stays the CPU's path.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from longrl.engine.attention import windowed_causal_attention
from longrl.engine.flex import packed_flex
from longrl.engine.masked import resolve_packed_backend
from longrl.engine.ulysses import SP_KWARG

IMPLEMENTATION = "longrl_packed"
FLEX_IMPLEMENTATION = "longrl_packed_flex"     # the same rows through flex_attention (CUDA): engine/flex.py
SEGMENTS_KWARG = "longrl_segments"


def segment_kwargs(segments: list[list[int]]) -> dict:
    """Keyword arguments of a decoder forward over packed rows with these segment lengths."""
    return {SEGMENTS_KWARG: segments}


def attend_segments(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, segments: list[list[int]],
                    scale: float | None, window: int | None = None) -> torch.Tensor:
    """Causal attention within each segment of each row; padding after the last segment gives 0.

    Args:
        query: (R, H, T, D)
        key, value: (R, KVH, T, D); H must be a multiple of KVH (grouped-query attention).
        segments: per row, the lengths of its segments, left to right (sum <= T).
        scale: score multiplier; None = D ** -0.5.
        window: a sliding-window layer's window (each query sees its `window` latest positions), or None.
    Returns:
        (R, H, T, D) attention outputs.
    """
    scale_value = scale if scale is not None else query.shape[-1] ** -0.5
    gqa = query.shape[1] != key.shape[1]
    width = query.shape[2]
    rows = []
    for r, (q, k, v) in enumerate(zip(query.unbind(0), key.unbind(0), value.unbind(0))):
        lengths = list(segments[r])
        pad = width - sum(lengths)
        if pad < 0:
            raise ValueError(f"row {r}: segments {lengths} hold more than the row's {width} tokens")
        sizes = lengths + ([pad] if pad else [])
        # split (whose backward is a concatenation), not slicing: keeps the backward linear in the row
        parts = [windowed_causal_attention(qs[None], ks[None], vs[None], scale_value, window)[0]
                 if window is not None and qs.shape[1] > window else
                 F.scaled_dot_product_attention(qs[None], ks[None], vs[None], is_causal=True, scale=scale, enable_gqa=gqa)[0]
                 for qs, ks, vs in zip(q.split(sizes, 1)[:len(lengths)], k.split(sizes, 1), v.split(sizes, 1))]
        if pad:
            parts.append(q.new_zeros(q.shape[0], pad, v.shape[-1]))
        rows.append(torch.cat(parts, 1) if len(sizes) > 1 else parts[0])
    return torch.stack(rows)


def packed_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0,
                             flex: bool = False, **kwargs):
    """The registered attention function (AttentionInterface signature); returns (R, T, H, D) and None."""
    if (sp := kwargs.pop(SP_KWARG, None)) is not None:      # Ulysses: this rank's heads over the whole rows
        return sp.attention(packed_attention_forward, module, query, key, value, attention_mask, scaling=scaling,
                            dropout=dropout, **kwargs)
    segments = kwargs.get(SEGMENTS_KWARG)
    if segments is None:
        raise RuntimeError(f"the {IMPLEMENTATION} attention needs `{SEGMENTS_KWARG}` (call the model through "
                           "longrl.engine.packed.segment_kwargs inside `packed_attention(model)`)")
    if dropout:
        raise NotImplementedError("packed attention does not implement attention dropout; set attention_dropout to 0")
    for name in ("softcap", "s_aux", "position_bias"):
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"packed attention does not implement {name!r} (layer {getattr(module, 'layer_idx', '?')})")
    attend = packed_flex if flex else attend_segments
    out = attend(query, key, value, segments, scaling, kwargs.get("sliding_window"))
    return out.transpose(1, 2).contiguous(), None


def register_packed_attention() -> None:
    """Register `longrl_packed` with transformers (idempotent); no mask builder on purpose."""

    AttentionInterface.register(IMPLEMENTATION, packed_attention_forward)
    AttentionInterface.register(FLEX_IMPLEMENTATION, functools.partial(packed_attention_forward, flex=True))


@contextlib.contextmanager
def packed_attention(model, attention: str = "auto") -> Iterator[None]:
    """Run `model` with packed attention inside the block; its own implementation is restored after.

    `attention` (`sft.attention`): auto (flex on CUDA, segments elsewhere) | flex | segments.
    """
    register_packed_attention()
    device = next(model.parameters()).device
    name = FLEX_IMPLEMENTATION if resolve_packed_backend(attention, device) == "flex" else IMPLEMENTATION
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    if model.config._attn_implementation != name:
        raise NotImplementedError(f"{type(model).__name__} cannot switch its attention implementation "
                                  "(it does not dispatch through transformers.AttentionInterface)")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
