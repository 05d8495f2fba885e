"""The static decode path: same tokens as the dynamic one on CPU, no host sync in a step, the CUDA graph on GPU."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from longrl.engine.attention import enable_cascade_attention
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, group_seed
from longrl.engine.static import StaticDecode, group_uniforms

# Operations that make the host wait for the device, or copy Python data to it: none may run in a step.
SYNCING_OPS = ("_local_scalar_dense", "nonzero", "lift_fresh", "masked_select", "_unique", "unique_", "equal", "item",
               "isin")                      # isin sorts and dedups large test sets (data-dependent sizes)


def _prompts(tokenizer, lengths=(23, 9, 16, 30, 1)):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, len(tokenizer), (n,), generator=g).tolist() for n in lengths]


def _run(model, tokenizer, decode, prompts, params, seeds, **kwargs):
    generator = SharedPrefixGenerator(model, tokenizer.pad_token_id, decode=decode, **kwargs)
    return generator, generator.generate(prompts, 4, params, seeds)


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.completions == y.completions and x.truncated == y.truncated and x.prompt_ids == y.prompt_ids
        for lx, ly in zip(x.logprobs, y.logprobs):
            assert lx == pytest.approx(ly, abs=1e-5)


def test_group_uniforms_are_the_dynamic_paths_draws():
    seeds, group, steps = [3, 11], 4, 6
    table = group_uniforms(seeds, group, steps)                                   # (T, P*G)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        step_by_step = torch.stack([torch.rand(group, generator=g) for _ in range(steps)])   # what dynamic draws
        assert torch.equal(table[:, i * group:(i + 1) * group], step_by_step)


@pytest.mark.parametrize("params", [
    SamplingParams(12, temperature=0),
    SamplingParams(16, temperature=1.0),
    SamplingParams(16, temperature=0.9, top_p=0.95, top_k=50),
])
def test_static_equals_dynamic(tiny_model, tokenizer, params):
    prompts = _prompts(tokenizer)                         # unequal lengths (padding) and a one-token prompt
    seeds = [group_seed(0, i) for i in range(len(prompts))]
    _, free = _run(tiny_model, tokenizer, "dynamic", prompts, params, seeds, groups_per_batch=3)
    if params.temperature:                                # stop tokens that end some samples early, at different steps
        stops = tuple(sorted({c[2] for g in free for c in g.completions[:2]}))
        params = SamplingParams(params.max_new_tokens, params.temperature, params.top_p, params.top_k, stops)
    _, dynamic = _run(tiny_model, tokenizer, "dynamic", prompts, params, seeds, groups_per_batch=3)
    generator, static = _run(tiny_model, tokenizer, "static", prompts, params, seeds, groups_per_batch=3, check_every=3)
    assert generator.decode_path == "static"
    _assert_same(dynamic, static)
    if params.temperature:
        assert any(not t for g in static for t in g.truncated) and any(t for g in static for t in g.truncated)


def test_static_groups_do_not_depend_on_their_batch(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, (12, 20, 7))
    params = SamplingParams(10, temperature=1.0, top_p=0.9)
    seeds = [5, 6, 7]
    _, together = _run(tiny_model, tokenizer, "static", prompts, params, seeds, groups_per_batch=3)
    _, alone = _run(tiny_model, tokenizer, "static", prompts[1:2], params, seeds[1:2], groups_per_batch=1)
    _assert_same(together[1:2], alone)


def test_static_kv_bytes_match_the_dynamic_path(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, (17,))
    params = SamplingParams(5)
    dynamic, _ = _run(tiny_model, tokenizer, "dynamic", prompts, params, [0])
    static, _ = _run(tiny_model, tokenizer, "static", prompts, params, [0])
    assert static.kv_bytes == dynamic.kv_bytes > 0        # prompt once + G buffers of max_new_tokens positions


def test_a_static_step_never_waits_for_the_device(tiny_model, tokenizer):
    """What a CUDA graph cannot hold: no op in a step reads a value back to the host or copies host data in."""

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    enable_cascade_attention(tiny_model)
    generator = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, decode="static")
    prompts = _prompts(tokenizer, (6, 3))
    params = SamplingParams(8, temperature=0.8, top_p=0.9, top_k=5, stop_token_ids=(3, 4))
    with torch.no_grad():
        prefill, lengths = generator._prefill(prompts)
        decode = StaticDecode(tiny_model, prefill, lengths, [p[-1] for p in prompts], 3, params, [1, 2],
                              torch.device("cpu"))
        decode.step()                                     # the first step allocates the K,V buffers
        with Recorder() as recorder:
            decode.step()
    assert len(recorder.ops) > 100                        # the whole forward was seen
    found = [op for op in recorder.ops if any(name in op for name in SYNCING_OPS)]
    assert not found, f"host-syncing ops in a static decode step: {sorted(set(found))}"


def test_graph_decode_needs_cuda(tiny_model, tokenizer):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="CUDA"):
        SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, decode="graph")
    with pytest.raises(ValueError, match="decode must be"):
        SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, decode="fast")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_equals_eager_static_and_dynamic(tiny_model, tokenizer, dtype):
    model = tiny_model.to(device="cuda", dtype=dtype)
    prompts = _prompts(tokenizer)
    seeds = [group_seed(1, i) for i in range(len(prompts))]
    params = SamplingParams(20, temperature=1.0, top_p=0.95, top_k=40, stop_token_ids=(7, 9, 11))
    graph, by_graph = _run(model, tokenizer, "graph", prompts, params, seeds, groups_per_batch=3, check_every=4)
    assert graph.decode_path == "cuda-graph"              # captured, not silently fallen back
    _, eager = _run(model, tokenizer, "static", prompts, params, seeds, groups_per_batch=3, check_every=4)
    for x, y in zip(by_graph, eager, strict=True):        # the same kernels replayed: identical
        assert x.completions == y.completions and x.truncated == y.truncated
    if dtype == torch.float32:
        _, dynamic = _run(model, tokenizer, "dynamic", prompts, params, seeds, groups_per_batch=3)
        _assert_same(dynamic, by_graph)
