"""Cascade attention against naive softmax attention over the concatenated sequence (fp32, GQA, padding)."""

from __future__ import annotations

import math

import pytest
import torch

from longrl.engine.attention import (
    IMPLEMENTATION,
    CascadeContext,
    PrefillContext,
    attention_with_lse,
    enable_cascade_attention,
    merge_attention,
)


def naive_attention(q, k, v, scale, allowed=None):
    """Loop over rows: softmax(q.k * scale) over allowed keys. q (M, D), k/v (L, D), allowed (M, L)."""
    outs, lses = [], []
    for i in range(q.shape[0]):
        scores = (k @ q[i]) * scale
        if allowed is not None:
            scores = scores.masked_fill(~allowed[i], float("-inf"))
        lse = torch.logsumexp(scores, 0)
        outs.append(torch.softmax(scores, 0) @ v if torch.isfinite(lse) else torch.zeros(v.shape[1]))
        lses.append(lse)
    return torch.stack(outs), torch.stack(lses)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_attention_equals_attention_over_the_union(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(5, 8, generator=g), torch.randn(11, 8, generator=g), torch.randn(11, 8, generator=g)
    full_o, full_lse = naive_attention(q, k, v, 0.3)
    o1, lse1 = naive_attention(q, k[:4], v[:4], 0.3)
    o2, lse2 = naive_attention(q, k[4:], v[4:], 0.3)
    o, lse = merge_attention(o1, lse1, o2, lse2)
    torch.testing.assert_close(o, full_o, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lse, full_lse, atol=1e-6, rtol=1e-5)


def test_merge_attention_worked_example_and_empty_sets():
    o1, o2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    o, lse = merge_attention(o1, torch.tensor([0.0]), o2, torch.tensor([math.log(3)]))
    torch.testing.assert_close(o, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(lse, torch.tensor([math.log(4)]))
    o, lse = merge_attention(o1, torch.tensor([0.0]), o2, torch.tensor([float("-inf")]))   # empty second set
    torch.testing.assert_close(o, o1)
    o, lse = merge_attention(o1, torch.tensor([float("-inf")]), o2, torch.tensor([float("-inf")]))
    assert torch.equal(o, torch.zeros(1, 2)) and lse.item() == float("-inf")


@pytest.mark.parametrize("budget", [1, 40, 1 << 20])   # 1 = one query row per block
def test_attention_with_lse_matches_naive_values_and_gradients(budget):
    g = torch.Generator().manual_seed(3)
    n, m, length, d = 3, 7, 9, 4
    q = torch.randn(n, m, d, generator=g, requires_grad=True)
    k = torch.randn(n, length, d, generator=g, requires_grad=True)
    v = torch.randn(n, length, d, generator=g, requires_grad=True)
    q_pos, k_pos = torch.arange(m) + 2, torch.arange(length)          # causal with an offset of 2
    valid = torch.ones(n, length, dtype=torch.bool)
    valid[1, 5:] = False
    valid[2, :] = False                                                # a row with no key at all
    w_o, w_lse = torch.randn(n, m, d, generator=g), torch.randn(n, m, generator=g)
    o, lse = attention_with_lse(q, k, v, 0.5, q_pos, k_pos, valid, score_budget=budget)
    loss = (o * w_o).sum() + (torch.where(torch.isfinite(lse), lse, 0) * w_lse).sum()
    grads = torch.autograd.grad(loss, (q, k, v))
    ref_o, ref_lse, ref_loss = [], [], 0
    for i in range(n):
        allowed = (k_pos[None, :] <= q_pos[:, None]) & valid[i][None, :]
        oi, li = naive_attention(q[i], k[i], v[i], 0.5, allowed)
        ref_o.append(oi)
        ref_lse.append(li)
        ref_loss = ref_loss + (oi * w_o[i]).sum() + (torch.where(torch.isfinite(li), li, 0) * w_lse[i]).sum()
    ref_grads = torch.autograd.grad(ref_loss, (q, k, v))
    torch.testing.assert_close(o, torch.stack(ref_o), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lse, torch.stack(ref_lse), atol=1e-6, rtol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_attention_with_lse_passes_gradcheck():
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(q, k, v):
        o, lse = attention_with_lse(q, k, v, 0.7, torch.arange(3) + 2, torch.arange(5), score_budget=5)
        return o.double(), lse.double()

    # lse is computed in float32, so compare at float32 precision.
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-3, atol=2e-3, rtol=2e-3)


def naive_cascade(prefix_k, prefix_v, lengths, groups, suffix_k, suffix_v, q, scale, offset=0):
    """Per sequence and head: attention over [its prompt's keys, its own keys up to the query]. Loops only."""
    b, heads, t, d = q.shape
    rep = heads // prefix_k.shape[1]
    out = torch.zeros(b, heads, t, d)
    for i in range(b):
        p = groups[i]
        for h in range(heads):
            kv = h // rep
            k = torch.cat([prefix_k[p, kv, :lengths[p]], suffix_k[i, kv]])
            v = torch.cat([prefix_v[p, kv, :lengths[p]], suffix_v[i, kv]])
            allowed = torch.zeros(t, k.shape[0], dtype=torch.bool)
            for j in range(t):
                allowed[j, :lengths[p] + offset + j + 1] = True
            out[i, h] = naive_attention(q[i, h], k, v, scale, allowed)[0]
    return out


def _prefill(prefix_k, prefix_v, heads):
    """Run a PrefillContext on random queries so that it stores prefix_k/v for layer 0."""
    ctx = PrefillContext()
    q = torch.randn(prefix_k.shape[0], heads, prefix_k.shape[2], prefix_k.shape[3])
    ctx.attend(0, q, prefix_k, prefix_v, 0.5)
    return ctx


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sizes", [[3, 3, 3], [1, 4, 2]])
def test_cascade_training_forward_equals_naive_attention_with_grads(seed, sizes):
    g = torch.Generator().manual_seed(seed)
    heads, kv_heads, d, t = 4, 2, 8, 5
    lengths = [7, 4, 6]
    prefix_k = torch.randn(3, kv_heads, 7, d, generator=g, requires_grad=True)
    prefix_v = torch.randn(3, kv_heads, 7, d, generator=g, requires_grad=True)
    b = sum(sizes)
    groups = [p for p, s in enumerate(sizes) for _ in range(s)]
    q = torch.randn(b, heads, t, d, generator=g, requires_grad=True)
    k = torch.randn(b, kv_heads, t, d, generator=g, requires_grad=True)
    v = torch.randn(b, kv_heads, t, d, generator=g, requires_grad=True)
    ctx = CascadeContext(_prefill(prefix_k, prefix_v, heads), lengths, sizes, score_budget=64)
    out = ctx.attend(0, q, k, v, 0.5)
    ref = naive_cascade(prefix_k, prefix_v, lengths, groups, k, v, q, 0.5)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    w = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad((out * w).sum(), (q, k, v, prefix_k, prefix_v))
    want = torch.autograd.grad((ref * w).sum(), (q, k, v, prefix_k, prefix_v))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sizes", [[2, 2], [3, 1]])
def test_cascade_decoding_with_buffer_equals_naive_and_can_drop_rows(sizes):
    g = torch.Generator().manual_seed(5)
    heads, kv_heads, d, steps = 4, 2, 8, 4
    lengths = [5, 3]
    prefix_k, prefix_v = torch.randn(2, kv_heads, 5, d, generator=g), torch.randn(2, kv_heads, 5, d, generator=g)
    b = sum(sizes)
    groups = [p for p, s in enumerate(sizes) for _ in range(s)]
    ks, vs = torch.randn(b, kv_heads, steps, d, generator=g), torch.randn(b, kv_heads, steps, d, generator=g)
    qs = torch.randn(b, heads, steps, d, generator=g)
    ref = naive_cascade(prefix_k, prefix_v, lengths, groups, ks, vs, qs, 0.5)
    ctx = CascadeContext(_prefill(prefix_k, prefix_v, heads), lengths, sizes, capacity=steps)
    first = ctx.attend(0, qs[:, :, :2], ks[:, :, :2], vs[:, :, :2], 0.5)       # two tokens at once
    ctx.advance(2)
    torch.testing.assert_close(first, ref[:, :, :2], atol=1e-6, rtol=1e-5)
    keep = torch.tensor([0, b - 1])                                              # drop the middle rows
    ctx.select(keep)
    for step in (2, 3):
        out = ctx.attend(0, qs[keep, :, step:step + 1], ks[keep, :, step:step + 1], vs[keep, :, step:step + 1], 0.5)
        ctx.advance(1)
        torch.testing.assert_close(out, ref[keep, :, step:step + 1], atol=1e-6, rtol=1e-5)
    assert ctx.group_sizes == [1, 1] and ctx.groups == [0, 1]
    with pytest.raises(ValueError, match="suffix buffer full"):
        ctx.attend(0, qs[keep, :, :1], ks[keep, :, :1], vs[keep, :, :1], 0.5)


def test_cascade_kv_bytes_keep_the_prompt_once():
    prefix_k = torch.randn(1, 2, 100, 8)
    ctx = CascadeContext(_prefill(prefix_k, prefix_k.clone(), 4), [100], [8], capacity=10)
    ctx.attend(0, torch.randn(8, 4, 1, 8), torch.randn(8, 2, 1, 8), torch.randn(8, 2, 1, 8), 0.5)
    assert ctx.kv_bytes() == 2 * (1 * 2 * 100 * 8 + 8 * 2 * 10 * 8) * 4


def _qwen2(tied=True, **extra):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                         tie_word_embeddings=tied, **{"use_sliding_window": False, **extra})
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


def test_model_without_context_behaves_like_sdpa():
    model = _qwen2()
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    ref = model(ids, attention_mask=mask).logits
    enable_cascade_attention(model)
    assert model.config._attn_implementation == IMPLEMENTATION
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, ref, atol=0, rtol=0)
    greedy = model.generate(ids[:1], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert greedy.shape == (1, 16)


def _cascade_hidden(model, prompts, completions, route):
    base = model.base_model
    lengths = [len(p) for p in prompts]
    ids = torch.zeros(len(prompts), max(lengths), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = p
    prefill = PrefillContext()
    base(input_ids=ids, position_ids=torch.arange(ids.shape[1]).expand(len(prompts), -1), use_cache=False,
         **prefill.forward_kwargs())
    sizes = [len(c) for c in completions]
    comp = torch.stack([c for group in completions for c in group])
    group = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(sizes))
    positions = torch.tensor(lengths)[group, None] + torch.arange(comp.shape[1])
    ctx = CascadeContext(prefill, lengths, sizes)
    kwargs = ctx.forward_kwargs() if route == "kwarg" else {"attention_mask": {"full_attention": ctx}}
    return base(input_ids=comp, position_ids=positions, use_cache=False, **kwargs).last_hidden_state


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_cascade_through_a_hf_decoder_equals_the_full_sequence(arch):
    from transformers import LlamaConfig, LlamaForCausalLM

    if arch == "qwen2":
        model = _qwen2()
    else:
        config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    enable_cascade_attention(model)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 97, (9,), generator=g), torch.randint(0, 97, (5,), generator=g)]
    completions = [[torch.randint(0, 97, (4,), generator=g) for _ in range(3)],
                   [torch.randint(0, 97, (4,), generator=g) for _ in range(2)]]
    hidden = _cascade_hidden(model, prompts, completions, "kwarg")
    b = 0
    for prompt, group in zip(prompts, completions):
        for c in group:
            full = model.base_model(input_ids=torch.cat([prompt, c])[None]).last_hidden_state[0]
            torch.testing.assert_close(hidden[b], full[len(prompt):], atol=1e-5, rtol=1e-5)
            b += 1
    if arch == "qwen2":   # decoders that accept prepared mask dicts take the context that way too
        torch.testing.assert_close(_cascade_hidden(model, prompts, completions, "dict"), hidden, atol=0, rtol=0)


def test_unsupported_attention_features_raise():
    model = _qwen2(attention_dropout=0.1)
    enable_cascade_attention(model)
    model.train()
    prompts = [torch.randint(0, 97, (6,))]
    with pytest.raises(NotImplementedError, match="dropout"):
        _cascade_hidden(model, prompts, [[torch.randint(0, 97, (3,))]], "kwarg")
