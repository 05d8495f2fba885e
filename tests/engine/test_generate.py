"""Group sampling: sampler math against a naive loop, greedy against HF generate, batch-independent seeds."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from longrl.engine.generate import (
    GenerationStopped,
    GroupRollout,
    SamplingParams,
    SharedPrefixGenerator,
    group_seed,
    sample_tokens,
)
from longrl.engine.logprobs import completion_stats


def test_group_seed_is_stable_distinct_and_63_bit():
    assert group_seed(0, 3, "doc-17") == group_seed(0, 3, "doc-17")
    seeds = {group_seed(s, step, key) for s in (0, 1) for step in (0, 1) for key in ("a", "b", 1)}
    assert len(seeds) == 12 and all(0 <= s < 2 ** 63 for s in seeds)
    assert group_seed(1, 2) != group_seed(12) != group_seed(1, "2")
    # The scheme is part of reproducibility: sha256 of the JSON list, first 8 bytes, top bit dropped.
    digest = hashlib.sha256(b'[0, 3, "doc-17"]').digest()
    assert group_seed(0, 3, "doc-17") == int.from_bytes(digest[:8], "big") >> 1 == 3877878245345745350


def naive_sample(row, params, u):
    """One row, plain Python: temperature, top-k, top-p, then walk the CDF."""
    if params.temperature == 0:
        best = max(range(len(row)), key=lambda i: row[i])
        return best, row[best] - math.log(sum(math.exp(x) for x in row))
    logits = [x / params.temperature for x in row]
    order = sorted(range(len(row)), key=lambda i: -logits[i])
    if params.top_k:
        kth = logits[order[params.top_k - 1]]
        order = [i for i in order if logits[i] >= kth]
    top = max(logits[i] for i in order)
    weights = {i: math.exp(logits[i] - top) for i in order}
    total = sum(weights.values())
    kept, mass = [], 0.0
    for i in order:
        if mass >= params.top_p:
            break
        kept.append(i)
        mass += weights[i] / total
    total = sum(weights[i] for i in kept)
    kept = sorted(kept)                # the CDF walks tokens in id order
    acc = 0.0
    for i in kept:
        acc += weights[i] / total
        if u < acc:
            return i, math.log(weights[i] / total)
    return kept[-1], math.log(weights[kept[-1]] / total)


@pytest.mark.parametrize("params", [
    SamplingParams(1, temperature=1.0),
    SamplingParams(1, temperature=0.7, top_p=0.9),
    SamplingParams(1, temperature=1.3, top_k=5),
    SamplingParams(1, temperature=0.5, top_k=8, top_p=0.8),
    SamplingParams(1, temperature=0.0),
])
def test_sample_tokens_matches_a_naive_loop(params):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 20, generator=g, dtype=torch.float64) * 2
    uniforms = torch.rand(64, generator=g, dtype=torch.float64)
    tokens, logprobs = sample_tokens(logits, params, uniforms)
    for row, u, t, lp in zip(logits.tolist(), uniforms.tolist(), tokens.tolist(), logprobs.tolist()):
        want_t, want_lp = naive_sample(row, params, u)
        assert t == want_t
        assert lp == pytest.approx(want_lp, abs=1e-5)


def test_sampling_params_are_validated():
    for bad in (dict(max_new_tokens=0), dict(max_new_tokens=4, temperature=-1), dict(max_new_tokens=4, top_p=0),
                dict(max_new_tokens=4, top_p=1.5), dict(max_new_tokens=4, top_k=-1)):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def _prompts(tokenizer, n=3):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, len(tokenizer), (length,), generator=g).tolist() for length in (23, 9, 16, 30)[:n]]


def test_greedy_equals_hf_generate(tiny_model, tokenizer):
    prompts = _prompts(tokenizer) + [[17]]                # a one-token prompt has an empty prefix
    generator = SharedPrefixGenerator(tiny_model, pad_token_id=tokenizer.pad_token_id, groups_per_batch=2)
    groups = generator.generate(prompts, 2, SamplingParams(max_new_tokens=12, temperature=0), [0, 1, 2, 3])
    for prompt, group in zip(prompts, groups):
        ref = tiny_model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=None)[0, len(prompt):].tolist()
        assert group.prompt_ids == prompt
        assert group.completions == [ref, ref] and group.truncated == [True, True]


def test_a_group_does_not_depend_on_its_batch(tiny_model, tokenizer):
    prompts = _prompts(tokenizer)
    params = SamplingParams(max_new_tokens=10, temperature=0.9, top_p=0.95, top_k=50)
    seeds = [group_seed(7, 0, i) for i in range(3)]
    together = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, groups_per_batch=3).generate(
        prompts, 4, params, seeds)
    by_two = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, groups_per_batch=2).generate(
        prompts, 4, params, seeds)
    alone = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, groups_per_batch=1).generate(
        prompts[1:2], 4, params, seeds[1:2])
    for other in (by_two[1], alone[0]):
        assert other.completions == together[1].completions
        for a, b in zip(other.logprobs, together[1].logprobs):
            assert a == pytest.approx(b, abs=1e-5)
    assert together[0].completions != together[1].completions
    assert len({tuple(c) for c in together[0].completions}) > 1          # samples of a group differ
    other_seed = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id).generate(prompts, 4, params, [1, 2, 3])
    assert other_seed[0].completions != together[0].completions


def test_stop_tokens_end_samples_and_finished_rows_do_not_disturb_others(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 4)
    free = SamplingParams(max_new_tokens=16, temperature=1.0)
    runs = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, groups_per_batch=4).generate(
        prompts, 4, free, [0, 1, 2, 3])
    # Pick stop tokens that occur early in some samples, so rows finish at different steps.
    stop = tuple(sorted({c[2] for g in runs for c in g.completions[:2]}))
    params = SamplingParams(max_new_tokens=16, temperature=1.0, stop_token_ids=stop)
    stopped = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, groups_per_batch=4).generate(
        prompts, 4, params, [0, 1, 2, 3])
    finished = 0
    for free_group, group in zip(runs, stopped):
        for full, cut, truncated, lps in zip(free_group.completions, group.completions, group.truncated,
                                             group.logprobs):
            ends = [i for i, t in enumerate(full) if t in stop]
            if ends:       # the same sample, cut right after its first stop token
                assert cut == full[:ends[0] + 1] and not truncated
                finished += 1
            else:
                assert cut == full and truncated
            assert len(lps) == len(cut)
    assert finished >= 4


def test_sampler_logprobs_are_the_models_at_temperature_one(tiny_model, tokenizer):
    prompts = _prompts(tokenizer, 2)
    groups = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id).generate(
        prompts, 3, SamplingParams(max_new_tokens=8), [5, 6])
    with torch.no_grad():
        stats = completion_stats(tiny_model, prompts, [g.completions for g in groups])
    sampled = torch.tensor([lp for g in groups for lp in g.logprobs])
    torch.testing.assert_close(stats.logprobs, sampled, atol=1e-4, rtol=1e-4)


def test_kv_cache_holds_the_prompt_once_and_mode_is_restored(tiny_model, tokenizer, tiny_arch):
    tiny_model.train()
    prompt = _prompts(tokenizer, 1)
    generator = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id)
    (group,) = generator.generate(prompt, 8, SamplingParams(max_new_tokens=5), [0])
    assert tiny_model.training
    assert isinstance(group, GroupRollout) and [len(c) for c in group.completions] == [5] * 8
    head_dim = tiny_arch.hidden_size // tiny_arch.num_attention_heads
    per_position = 2 * tiny_arch.num_key_value_heads * head_dim * 4 * tiny_arch.num_hidden_layers   # K+V, fp32
    # prompt[:-1] once, plus 8 buffers of 5 positions (prompt[-1] and the first 4 sampled tokens)
    assert generator.kv_bytes == per_position * (len(prompt[0]) - 1 + 8 * 5)


@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_a_stop_callback_ends_generation_within_a_step(tiny_model, tokenizer, decode):
    """How `longrl serve` drops the work of a client that left: `stop()` is asked before every decode step."""
    generator = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id, decode=decode)
    params = SamplingParams(max_new_tokens=500, stop_token_ids=())
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3
    with pytest.raises(GenerationStopped):
        generator.generate([[5, 6, 7]], 4, params, [0], stop=stop)
    assert len(asked) <= 5                                   # a few checks, not 500 steps
    (group,) = generator.generate([[5, 6, 7]], 2, SamplingParams(max_new_tokens=3), [0], stop=lambda: False)
    assert [len(c) <= 3 for c in group.completions] == [True, True]


def test_generate_validates_its_arguments(tiny_model, tokenizer):
    generator = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id)
    params = SamplingParams(max_new_tokens=2)
    with pytest.raises(ValueError, match="one seed per prompt"):
        generator.generate([[1, 2]], 2, params, [0, 1])
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generator.generate([[1], []], 2, params, [0, 1])
    with pytest.raises(ValueError, match="group_size"):
        generator.generate([[1]], 0, params, [0])
    tiny_model.config.final_logit_softcapping = 30.0       # logits the sampler would not reproduce
    with pytest.raises(NotImplementedError, match="final_logit_softcapping"):
        SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id)


def test_nucleus_threshold_equals_the_sorted_definition():
    from longrl.engine.generate import nucleus_threshold

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 50, generator=g) * 3
    logits[0, :10] = 4.0                                  # ties at the top
    probs = torch.softmax(logits, -1)
    for top_p in (0.05, 0.5, 0.9, 0.999):
        thresholds = nucleus_threshold(probs, top_p)
        for row, t in zip(probs, thresholds[:, 0].tolist()):
            values = sorted(row.tolist(), reverse=True)
            mass, cut = 0.0, values[0]
            for value in values:           # smallest prefix of the sorted row reaching top_p
                cut = value
                mass += value
                if mass >= top_p:
                    break
            assert t == pytest.approx(cut, rel=1e-6)
