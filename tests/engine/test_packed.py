"""Block-diagonal causal attention over packed rows, against an explicit-mask reference."""

from __future__ import annotations

import pytest
import torch

from longrl.engine.packed import (
    attend_segments,
    packed_attention,
    packed_attention_forward,
)


def reference(q, k, v, segments, scale):
    """Plain softmax attention with a materialised (T x T) block-diagonal causal mask per row."""
    rows, heads, width, _ = q.shape
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    out = torch.zeros_like(q)
    for r in range(rows):
        seg = torch.full((width,), -1)
        start = 0
        for j, n in enumerate(segments[r]):
            seg[start:start + n] = j
            start += n
        idx = torch.arange(width)
        allowed = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None]) & (seg[:, None] >= 0)
        scores = (q[r] @ k[r].transpose(-1, -2)) * scale
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, -1).nan_to_num(0.0)       # padding rows see nothing: zeros
        out[r] = weights @ v[r]
    return out


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_matches_the_masked_reference_with_gradients(kv_heads):
    torch.manual_seed(0)
    segments = [[5, 3, 4], [12], [2, 7]]                             # row 3 ends in 3 padding positions
    q = torch.randn(3, 4, 12, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, kv_heads, 12, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, kv_heads, 12, 8, dtype=torch.float64, requires_grad=True)
    got = attend_segments(q, k, v, segments, 0.3)
    want = reference(q, k, v, segments, 0.3)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad((got * torch.arange(got.numel()).view_as(got).sin()).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((want * torch.arange(want.numel()).view_as(want).sin()).sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_refuses_what_it_does_not_implement(tiny_model):
    q = torch.zeros(1, 4, 3, 8)
    with pytest.raises(RuntimeError, match="longrl_segments"):
        packed_attention_forward(tiny_model.model.layers[0].self_attn, q, q, q, None)
    with pytest.raises(NotImplementedError, match="softcap"):
        packed_attention_forward(tiny_model.model.layers[0].self_attn, q, q, q, None, longrl_segments=[[3]],
                                 softcap=2.0)
    with pytest.raises(ValueError, match="more than"):
        attend_segments(q, q, q, [[2, 2]], None)


def test_the_model_attention_is_restored_even_on_error(tiny_model):
    with pytest.raises(KeyError), packed_attention(tiny_model):
        assert tiny_model.config._attn_implementation == "longrl_packed"
        raise KeyError("boom")
    assert tiny_model.config._attn_implementation == "sdpa"
