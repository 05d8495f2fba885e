"""Sliding-window layers (Mistral, Qwen2 with use_sliding_window, Gemma-style alternating layers) in the engine.

Random tiny models of each family, with windows shorter than the prompts (so the window cuts into
the prompt, and during decoding into the sample's own tokens), against Hugging Face's own attention
(its sliding-window masks, SDPA): completion log-probs and gradients of the shared-prompt training
forward, greedy decoding on the dynamic and static paths against `generate`, and packed SFT rows.
"""

from __future__ import annotations

import pytest
import torch

from longrl.engine.attention import attention_with_lse, windowed_causal_attention
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator
from longrl.engine.logprobs import completion_stats
from longrl.engine.packed import attend_segments, packed_attention, segment_kwargs

WINDOW = 5
VOCAB = 97


def build(family: str, window: int = WINDOW):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, pad_token_id=0, bos_token_id=None, eos_token_id=1)
    torch.manual_seed(0)
    if family == "mistral":                 # every layer windowed
        model = MistralForCausalLM(MistralConfig(num_hidden_layers=2, sliding_window=window, **common))
    elif family == "qwen2":                 # use_sliding_window: full layers below max_window_layers, windowed above
        model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=3, use_sliding_window=True, sliding_window=window,
                                             max_window_layers=1, **common))
        assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    else:                                   # Gemma 3: windowed and global layers alternating
        model = Gemma3ForCausalLM(Gemma3TextConfig(num_hidden_layers=3, head_dim=8, sliding_window=window,
                                                   layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                                   query_pre_attn_scalar=8, **common))
    model.config._attn_implementation = "sdpa"
    return model.eval()


FAMILIES = ["mistral", "qwen2", "gemma3"]


def ids(n: int, seed: int) -> list[int]:
    return torch.randint(2, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def hf_logprobs(model, prompt, completion):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + completion])).logits[0]
    return torch.log_softmax(logits[len(prompt) - 1:-1], -1).gather(1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_training_forward_equals_hf_with_gradients(family):
    reference = build(family)
    model = build(family)                   # the engine switches its copy to cascade attention
    prompts = [ids(13, 1), ids(8, 2)]       # longer than the window; the second is padded in the prefill
    completions = [[ids(9, 3), ids(4, 4)], [ids(7, 5), ids(9, 6)]]
    with torch.no_grad():
        stats = completion_stats(model, prompts, completions, with_entropy=False)
    b = 0
    for prompt, group in zip(prompts, completions):
        for c in group:
            torch.testing.assert_close(stats.logprobs[b, :len(c)], hf_logprobs(reference, prompt, c), atol=1e-5, rtol=1e-5)
            b += 1
    grads = {}
    for shared in (True, False):
        model.zero_grad(set_to_none=True)
        s = completion_stats(model, prompts, completions, shared_prompt=shared)
        mask = s.mask.float()
        ((s.logprobs * torch.tensor([[1.0], [-0.5], [2.0], [-1.0]]) * mask).sum() + 0.1 * (s.entropy * mask).sum()).backward()
        grads[shared] = [p.grad.clone() for p in model.parameters()]
    for a, e in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_greedy_decoding_equals_hf_generate(family, decode):
    reference = build(family)
    model = build(family)
    prompts = [ids(11, 7), ids(6, 8), ids(3, 9)]                # the last is shorter than the window
    generator = SharedPrefixGenerator(model, pad_token_id=0, groups_per_batch=3, decode=decode)
    groups = generator.generate(prompts, 2, SamplingParams(max_new_tokens=12, temperature=0), [0, 1, 2])
    for prompt, group in zip(prompts, groups):
        with torch.no_grad():
            ref = reference.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                     max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert group.completions == [ref[0, len(prompt):].tolist()] * 2


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_cuda_graph_decoding_equals_hf_generate(family):
    """The captured static step moves the prompt's window on the device (a replay copies nothing from the host)."""
    reference, model = build(family).cuda(), build(family).cuda()
    prompts = [ids(11, 7), ids(6, 8)]
    generator = SharedPrefixGenerator(model, pad_token_id=0, groups_per_batch=2, decode="graph")
    groups = generator.generate(prompts, 2, SamplingParams(max_new_tokens=12, temperature=0), [0, 1])
    assert generator.decode_path == "cuda-graph"
    for prompt, group in zip(prompts, groups):
        with torch.no_grad():
            ref = reference.generate(torch.tensor([prompt], device="cuda"), max_new_tokens=12, do_sample=False,
                                     attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device="cuda"),
                                     eos_token_id=None, pad_token_id=0)
        assert group.completions == [ref[0, len(prompt):].tolist()] * 2


@pytest.mark.parametrize("family", ["mistral", "gemma3"])
def test_packed_sft_rows_equal_each_example_alone(family):
    model = build(family)
    examples = [ids(9, 10), ids(4, 11), ids(12, 12)]
    row = torch.tensor([examples[0] + examples[1], examples[2] + [0]])
    positions = torch.tensor([list(range(9)) + list(range(4)), list(range(12)) + [0]])
    with torch.no_grad(), packed_attention(model):
        packed = model(input_ids=row, position_ids=positions, use_cache=False, **segment_kwargs([[9, 4], [12]])).logits
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([e])).logits[0] for e in examples]
    torch.testing.assert_close(packed[0, :9], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[0, 9:13], alone[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[1, :12], alone[2], atol=1e-5, rtol=1e-5)


def naive_windowed(q, k, v, scale, window):
    """Explicit (L x L) band mask: key j allowed for query i iff i - window < j <= i."""
    length = q.shape[2]
    k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], 1)
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("budget", [7, 1 << 20])
def test_windowed_attention_matches_an_explicit_band_with_gradients(budget):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, 11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, 11, 8, generator=g, dtype=torch.float64, requires_grad=True)
    got = windowed_causal_attention(q, k, v, 0.4, 3, score_budget=budget)
    want = naive_windowed(q, k, v, 0.4, 3)
    torch.testing.assert_close(got, want)
    w = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (q, k, v)), torch.autograd.grad((want * w).sum(), (q, k, v))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)          # the backward accumulates in float32
    seg = attend_segments(q[:1], k[:1], v[:1], [[6, 5]], 0.4, window=3)          # per segment, positions restart
    torch.testing.assert_close(seg[:, :, :6], naive_windowed(q[:1, :, :6], k[:1, :, :6], v[:1, :, :6], 0.4, 3))
    torch.testing.assert_close(seg[:, :, 6:], naive_windowed(q[:1, :, 6:], k[:1, :, 6:], v[:1, :, 6:], 0.4, 3))


def test_a_query_whose_window_holds_no_key_of_a_set_gets_none():
    """The prompt's keys drop out of a late query's window: that part contributes 0 with lse -inf."""
    q, k = torch.randn(1, 2, 4), torch.randn(1, 3, 4)
    o, lse = attention_with_lse(q, k, k, 0.5, torch.tensor([[3, 9]]), torch.arange(3), causal=False, window=2)
    assert torch.isfinite(lse[0, 0]) and lse[0, 1] == float("-inf") and o[0, 1].abs().sum() == 0


def test_the_engine_has_the_decoder_build_no_mask(monkeypatch):
    """A ready mask goes with every engine forward: no (L x L) sliding-window mask is ever built."""
    from longrl.engine import attention

    model = build("mistral")
    built = []
    builder = attention.sdpa_mask                                # what the engine registers as the mask builder
    monkeypatch.setattr(attention, "sdpa_mask", lambda *a, **k: built.append(1) or builder(*a, **k))
    completion_stats(model, [ids(13, 1)], [[ids(9, 3)]])
    for decode in ("dynamic", "static"):
        SharedPrefixGenerator(model, 0, decode=decode).generate([ids(11, 7)], 2, SamplingParams(max_new_tokens=4), [0])
    assert built == []
    model(input_ids=torch.tensor([ids(13, 1)]))                 # a plain call still builds its sliding-window mask
    assert built


def test_an_rl_run_on_a_sliding_window_model(tmp_path, tokenizer):
    """The issue's case: a tiny Mistral (window 64, prompts of ~256 tokens) crashed at the first rollout."""
    from pathlib import Path

    from transformers import MistralConfig, MistralForCausalLM

    from longrl.cli import main
    from longrl.models.tiny import save_pretrained

    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, sliding_window=64,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    save_pretrained(MistralForCausalLM(config), tokenizer, tmp_path / "mistral")
    smoke = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")
    code = main(["rl", "--config", smoke, "--out", str(tmp_path / "run"), f"model.path={tmp_path / 'mistral'}",
                 "train.steps=1", "data.train.0.synth.n=2", "rollout.group_size=2", "rollout.max_new_tokens=8",
                 "reward.overlong.buffer=4", "run.progress=none"])
    assert code == 0 and (tmp_path / "run" / "final" / "model.safetensors").exists()
