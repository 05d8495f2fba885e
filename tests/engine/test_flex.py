"""Training attention backends: flex_attention's block masks, masked SDPA and longrl's query blocks agree.

References: per-sample softmax attention written out (each completion alone against its prompt's real
keys and its own earlier keys), and causal SDPA per packed segment. On the CPU torch runs flex_attention's
forward only (eager here: the same mask_mod and block mask as the compiled CUDA kernel; the compiled CPU
kernel is checked once, `slow`); the backward of flex is checked on CUDA (`gpu`).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from longrl.engine.attention import CascadeContext, PrefillContext
from longrl.engine.flex import (
    BLOCK,
    PAD_KEY,
    PAD_QUERY,
    PROMPT,
    MaskCache,
    block_mask,
    bucket,
    dense_mask,
    packed_flex,
    packed_ids,
    shared_prompt_flex,
    shared_prompt_ids,
)
from longrl.engine.logprobs import completion_stats
from longrl.engine.masked import completions_per_chunk, resolve_backend, resolve_packed_backend, sdpa_chunks
from longrl.engine.packed import attend_segments

pytestmark = pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")   # eager flex warns it is unfused

HEADS, KV_HEADS, D = 4, 2, 16     # flex's CUDA kernels want a head dimension >= 16
SCALE = D ** -0.5


def _tensors(prefix_lengths, group_sizes, t, seed=0, heads=HEADS, kv_heads=KV_HEADS):
    g = torch.Generator().manual_seed(seed)
    p, lmax, b = len(prefix_lengths), max(prefix_lengths), sum(group_sizes)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return (r(p, kv_heads, lmax, D), r(p, kv_heads, lmax, D), r(b, heads, t, D), r(b, kv_heads, t, D),
            r(b, kv_heads, t, D))


def per_sample_reference(pk, pv, q, k, v, prefix_lengths, group_sizes, window):
    """Each completion alone: softmax over its prompt's real keys and its own keys, written out per query."""
    b, heads, t, _ = q.shape
    rep = heads // k.shape[1]
    out = torch.zeros_like(q)
    group = [i for i, n in enumerate(group_sizes) for _ in range(n)]
    for s in range(b):
        n = prefix_lengths[group[s]]
        keys = torch.cat([pk[group[s], :, :n], k[s]], 1)                     # (KVH, n + t, D)
        values = torch.cat([pv[group[s], :, :n], v[s]], 1)
        positions = torch.cat([torch.arange(n), n + torch.arange(t)])
        for h in range(heads):
            for i in range(t):
                ok = positions <= n + i
                if window is not None:
                    ok &= positions > n + i - window
                scores = (keys[h // rep] @ q[s, h, i]) * SCALE
                weights = torch.softmax(scores.masked_fill(~ok, float("-inf")), 0)
                out[s, h, i] = weights @ values[h // rep]
    return out


def _cascade(backend, pk, pv, q, k, v, prefix_lengths, group_sizes, window):
    prefill = PrefillContext()
    prefill.layers[0] = (pk, pv)
    return CascadeContext(prefill, prefix_lengths, group_sizes, backend=backend).attend(0, q, k, v, SCALE, window)


CASES = [([9, 6], [3, 2], 5), ([1, 12, 4], [1, 2, 3], 7), ([130], [2], 3)]    # padded prompts, 1 token, > a block


def test_the_mask_rule_against_the_layout_written_out():
    queries, keys = shared_prompt_ids([3, 1], 3, [0, 1], [1, 2], 2, "cpu")
    assert keys.seq.tolist() == [[PROMPT, PROMPT, PROMPT, PROMPT, PAD_KEY, PAD_KEY, 0, 0, 1, 1, 2, 2]]
    assert queries.pos.tolist() == [[3, 4, 1, 2, 1, 2]] and queries.group.tolist() == [[0, 0, 1, 1, 1, 1]]
    mask = dense_mask(queries, keys)[0].int().tolist()
    assert mask[0] == [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]       # prompt 0 (3 keys), its own first token
    assert mask[3] == [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0]       # prompt 1 (1 key, 2 padding), own two tokens
    assert dense_mask(queries, keys, window=2)[0][1].int().tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]   # 3, 4
    assert dense_mask(queries, keys, window=3)[0][1].int().tolist() == [0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    rows, cols = packed_ids([[2, 1]], 4, "cpu")
    assert rows.seq.tolist() == [[0, 0, 1, PAD_QUERY]] and cols.seq.tolist() == [[0, 0, 1, PAD_KEY]]
    assert dense_mask(rows, cols)[0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_buckets_bound_the_shapes():
    sizes = [bucket(n) for n in range(1, 20000)]
    assert all(s >= n and s % BLOCK == 0 for n, s in zip(range(1, 20000), sizes))
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))
    assert all(bucket(n) <= 1.5 * n + BLOCK for n in range(1, 20000))      # at most half again as long
    assert len(set(sizes)) == 2 * 7 + 1          # 128 .. 20480: two sizes per doubling


def test_backend_names_and_chunks():
    assert resolve_backend("auto", "cpu") == "sdpa" and resolve_backend("auto", "cuda") == "flex"
    assert resolve_backend("blocks", "cuda") == "blocks"
    assert resolve_packed_backend("auto", "cpu") == "segments" and resolve_packed_backend("auto", "cuda") == "flex"
    with pytest.raises(ValueError, match="unknown training attention 'fast'"):
        resolve_backend("fast", "cpu")
    assert completions_per_chunk(8, 64, 4095, 1 << 24) == 8                # the bench shape: one chunk per group
    assert completions_per_chunk(8, 512, 4095, 1 << 24) == 4               # 2048 x 6143 <= 2^24 < 2560 x 6655
    assert completions_per_chunk(8, 512, 4095, 1) == 1                     # at least one completion
    assert sdpa_chunks([4095], [8], 64) == 1 and sdpa_chunks([4095, 10], [8, 8], 512) == 2
    assert sdpa_chunks([32767], [8], 1024) == 8
    assert resolve_backend("auto", "cpu", chunks=2) == "sdpa" and resolve_backend("auto", "cpu", chunks=3) == "blocks"
    assert resolve_backend("sdpa", "cpu", chunks=8) == "sdpa" and resolve_backend("auto", "cuda", chunks=8) == "flex"


@pytest.mark.parametrize("window", [None, 2, 6, 40])
@pytest.mark.parametrize("case", CASES)
def test_every_backend_equals_the_per_sample_attention_forward(case, window):
    prefix_lengths, group_sizes, t = case
    pk, pv, q, k, v = _tensors(prefix_lengths, group_sizes, t)
    reference = per_sample_reference(pk, pv, q, k, v, prefix_lengths, group_sizes, window)
    for backend in ("blocks", "sdpa"):
        out = _cascade(backend, pk, pv, q, k, v, prefix_lengths, group_sizes, window)
        torch.testing.assert_close(out, reference, atol=2e-6, rtol=1e-5, msg=backend)
    masks = MaskCache(*shared_prompt_ids(prefix_lengths, max(prefix_lengths), list(range(len(prefix_lengths))),
                                         group_sizes, t, "cpu"))
    with torch.no_grad():
        flex = shared_prompt_flex(q, k, v, pk, pv, masks, SCALE, window, compiled=False)
    torch.testing.assert_close(flex, reference, atol=2e-6, rtol=1e-5)


def test_flex_with_more_query_heads_per_kv_head_and_no_prompt():
    pk, pv, q, k, v = _tensors([0, 0], [2, 1], 4, heads=6, kv_heads=1)
    reference = per_sample_reference(pk, pv, q, k, v, [0, 0], [2, 1], None)
    masks = MaskCache(*shared_prompt_ids([0, 0], 0, [0, 1], [2, 1], 4, "cpu"))
    with torch.no_grad():
        out = shared_prompt_flex(q, k, v, pk, pv, masks, SCALE, None, compiled=False)
    torch.testing.assert_close(out, reference, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(_cascade("sdpa", pk, pv, q, k, v, [0, 0], [2, 1], None), reference, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("window", [None, 3])
def test_sdpa_gradients_equal_the_blocks_path(window):
    prefix_lengths, group_sizes, t = [9, 6], [3, 2], 5
    grads = {}
    for backend in ("blocks", "sdpa"):
        leaves = [x.requires_grad_() for x in _tensors(prefix_lengths, group_sizes, t, seed=4)]
        out = _cascade(backend, *leaves, prefix_lengths, group_sizes, window)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[backend] = [x.grad for x in leaves]
    for a, b in zip(grads["blocks"], grads["sdpa"]):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)


def test_flex_refuses_a_cpu_backward():
    pk, pv, q, k, v = _tensors([4], [2], 3)
    masks = MaskCache(*shared_prompt_ids([4], 4, [0], [2], 3, "cpu"))
    with pytest.raises(NotImplementedError, match="no backward on the CPU"):
        shared_prompt_flex(q.requires_grad_(), k, v, pk, pv, masks, SCALE, None, compiled=False)


@pytest.mark.parametrize("window", [None, 3])
def test_packed_flex_equals_causal_sdpa_per_segment(window):
    g = torch.Generator().manual_seed(5)
    segments = [[5, 3, 2], [11], [4, 4]]                  # rows of 11 tokens: padding after [4, 4]
    q, k, v = torch.randn(3, HEADS, 11, D, generator=g), torch.randn(3, KV_HEADS, 11, D, generator=g), \
        torch.randn(3, KV_HEADS, 11, D, generator=g)
    reference = attend_segments(q, k, v, segments, SCALE, window)
    with torch.no_grad():
        out = packed_flex(q, k, v, segments, SCALE, window, compiled=False)
    torch.testing.assert_close(out, reference, atol=2e-6, rtol=1e-5)
    assert out[2, :, 8:].abs().max() == 0                  # padding gives 0


def _model(hidden: int = 32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, use_sliding_window=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(0, 97, (n,), generator=g).tolist()  # noqa: E731
    return [ids(11), ids(4)], [[ids(3), ids(5), ids(1)], [ids(6), ids(2)]]


def test_the_training_forward_gives_the_same_logprobs_and_gradients_on_blocks_and_sdpa():
    model = _model()
    prompts, completions = _batch()
    figures = {}
    for attention in ("blocks", "sdpa", "auto"):
        model.zero_grad(set_to_none=True)
        stats = completion_stats(model, prompts, completions, attention=attention)
        (stats.logprobs.sum() + 0.3 * stats.entropy.sum()).backward()
        figures[attention] = (stats.logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    reference = completion_stats(model, prompts, completions, shared_prompt=False).logprobs.detach()
    for attention in ("sdpa", "auto"):
        torch.testing.assert_close(figures[attention][0], figures["blocks"][0], atol=1e-5, rtol=1e-5)
        for name, grad in figures["blocks"][1].items():
            torch.testing.assert_close(figures[attention][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(figures["sdpa"][0], reference, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_the_compiled_flex_forward_equals_the_other_paths_on_the_cpu():
    """The compiled kernel (torch.compile for the CPU; minutes on a 2-core machine) through completion_stats."""
    model = _model()
    prompts, completions = _batch()
    with torch.no_grad():
        flex = completion_stats(model, prompts, completions, attention="flex").logprobs
        blocks = completion_stats(model, prompts, completions, attention="blocks").logprobs
        per_sample = completion_stats(model, prompts, completions, shared_prompt=False).logprobs
    torch.testing.assert_close(flex, blocks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flex, per_sample, atol=1e-5, rtol=1e-5)


def test_packed_attention_switches_to_the_chosen_kernel_and_back():
    from longrl.engine.packed import FLEX_IMPLEMENTATION, IMPLEMENTATION, packed_attention

    model = _model()
    for attention, name in (("flex", FLEX_IMPLEMENTATION), ("segments", IMPLEMENTATION), ("auto", IMPLEMENTATION)):
        with packed_attention(model, attention):
            assert model.config._attn_implementation == name
        assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="unknown packed attention 'blocks'"):
        with packed_attention(model, "blocks"):
            pass


@pytest.mark.slow
def test_packed_rows_through_compiled_flex_equal_the_segments_path_on_the_cpu():
    from longrl.engine.packed import packed_attention, segment_kwargs

    model = _model()
    segments = [[7, 5], [3, 3, 3]]
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([list(range(7)) + list(range(5)), [0, 1, 2] * 3 + [0, 1, 2]])
    hidden = {}
    with torch.no_grad():
        for attention in ("segments", "flex"):
            with packed_attention(model, attention):
                hidden[attention] = model.base_model(input_ids=ids, position_ids=positions, use_cache=False,
                                                     **segment_kwargs(segments)).last_hidden_state
    torch.testing.assert_close(hidden["flex"][1, :9], hidden["segments"][1, :9], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden["flex"][0], hidden["segments"][0], atol=1e-5, rtol=1e-5)


def _windowed_model(window: int = 5):
    """Mistral with every layer windowed (window shorter than the prompts), head dimension 16."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=97, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=256, sliding_window=window)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return MistralForCausalLM(config)


def _windowed_figures(model, attention: str, grad: bool):
    prompts, completions = _batch()                  # prompts of 11 and 4 tokens, completions up to 6
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grad):
        stats = completion_stats(model, prompts, completions, attention=attention)
    if not grad:
        return stats.logprobs, {}
    (stats.logprobs.sum() + 0.3 * stats.entropy.sum()).backward()
    return stats.logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
def test_a_sliding_window_model_through_compiled_flex_equals_blocks_on_the_cpu():
    """Windowed prefill (flex per prompt row) and windowed completion attention, forward (CPU)."""
    model = _windowed_model()
    flex, _ = _windowed_figures(model, "flex", grad=False)
    blocks, _ = _windowed_figures(model, "blocks", grad=False)
    torch.testing.assert_close(flex, blocks, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_a_sliding_window_model_through_flex_equals_blocks_with_gradients_on_cuda():
    model = _windowed_model().cuda()
    flex, flex_grads = _windowed_figures(model, "flex", grad=True)
    blocks, block_grads = _windowed_figures(model, "blocks", grad=True)
    torch.testing.assert_close(flex, blocks, atol=1e-5, rtol=1e-5)
    for name, grad in block_grads.items():
        torch.testing.assert_close(flex_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.gpu
def test_flex_gradients_equal_the_blocks_path_on_cuda(window=100):
    """The compiled flex kernel's forward and backward against longrl's blocks, fp32, one long-ish shape."""
    prefix_lengths, group_sizes, t = [700, 300], [3, 2], 150
    grads, outs = {}, {}
    for backend in ("blocks", "flex"):
        leaves = [x.cuda().requires_grad_() for x in _tensors(prefix_lengths, group_sizes, t, seed=6)]
        out = _cascade(backend, *leaves, prefix_lengths, group_sizes, window)
        (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
        outs[backend], grads[backend] = out.detach(), [x.grad for x in leaves]
    torch.testing.assert_close(outs["flex"], outs["blocks"], atol=2e-5, rtol=1e-4)
    for a, b in zip(grads["blocks"], grads["flex"]):
        torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4)


@pytest.mark.gpu
def test_the_training_forward_through_flex_on_cuda_equals_blocks_with_gradients():
    model = _model(hidden=64).cuda()           # head dimension 16
    prompts, completions = _batch()
    figures = {}
    for attention in ("blocks", "flex"):
        model.zero_grad(set_to_none=True)
        stats = completion_stats(model, prompts, completions, attention=attention)
        (stats.logprobs.sum() + 0.3 * stats.entropy.sum()).backward()
        figures[attention] = (stats.logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(figures["flex"][0], figures["blocks"][0], atol=1e-5, rtol=1e-5)
    for name, grad in figures["blocks"][1].items():
        torch.testing.assert_close(figures["flex"][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.gpu
def test_packed_flex_gradients_equal_segments_on_cuda():
    g = torch.Generator().manual_seed(7)
    segments = [[300, 200, 12], [512]]
    inputs = [torch.randn(2, h, 512, D, generator=g).cuda() for h in (HEADS, KV_HEADS, KV_HEADS)]
    grads = {}
    for kind in ("segments", "flex"):
        leaves = [x.clone().requires_grad_() for x in inputs]
        attend = attend_segments if kind == "segments" else packed_flex
        out = attend(*leaves, segments, SCALE, 64)
        (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
        grads[kind] = [out.detach()] + [x.grad for x in leaves]
    for a, b in zip(grads["segments"], grads["flex"]):
        torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_flex_compiles_once_per_bucket():
    """New prompt lengths within one shape bucket reuse the compiled kernel (forward; CUDA where present)."""
    from torch._dynamo.utils import counters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for lengths in ([200, 150], [190, 170], [210, 100]):          # keys 560, 540, 580 -> one bucket (768)
            pk, pv, q, k, v = [x.to(device) for x in _tensors(lengths, [2, 2], 40)]
            out = _cascade("flex", pk, pv, q, k, v, lengths, [2, 2], None)
            if lengths == [200, 150]:
                graphs = counters["stats"]["unique_graphs"]
            torch.testing.assert_close(out, _cascade("blocks", pk, pv, q, k, v, lengths, [2, 2], None),
                                       atol=2e-6, rtol=1e-5)
    assert graphs >= 1 and counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_the_compiled_block_mask_builder_equals_the_dense_one_and_compiles_once():
    from torch._dynamo.utils import counters

    for lengths in ([200, 150], [190, 170], [210, 100]):                 # one bucket
        masks = MaskCache(*shared_prompt_ids(lengths, max(lengths), [0, 1], [2, 2], 40, "cpu"))
        for window in (None, 30):
            built = block_mask(masks.queries, masks.keys, window, compiled=True).as_tuple()
            dense = block_mask(masks.queries, masks.keys, window, compiled=False).as_tuple()
            assert all(torch.equal(a, b) for a, b in zip(built, dense) if isinstance(a, torch.Tensor))
        if lengths == [200, 150]:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs


def test_the_attention_keys_are_validated_with_the_key_named():
    from longrl.config import load_config
    from longrl.errors import ConfigError

    cfg = load_config(None, ["train.attention=blocks", "sft.attention=flex"])
    assert cfg.train.attention == "blocks" and cfg.sft.attention == "flex" and load_config().train.attention == "auto"
    for override, key in (("train.attention=fast", "train.attention"), ("sft.attention=blocks", "sft.attention")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [override])
