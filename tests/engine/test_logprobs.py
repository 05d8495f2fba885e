"""Completion log-probs, entropy and gradients against the naive per-sample forward with full logits."""

from __future__ import annotations

import math

import pytest
import torch

from longrl.engine.logprobs import chunked_token_stats, completion_stats, training_temperature


def naive_stats(hidden, weight, targets, temperature: float = 1.0):
    """Full logits divided by the temperature, log_softmax, one row at a time."""
    lps, ents = [], []
    for h, t in zip(hidden, targets):
        logp = torch.log_softmax((weight @ h) / temperature, -1)
        lps.append(logp[t])
        ents.append(-(logp.exp() * logp).sum())
    return torch.stack(lps), torch.stack(ents)


@pytest.mark.parametrize("chunk", [1, 3, 64])
@pytest.mark.parametrize("with_entropy", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_chunked_token_stats_equal_naive_values_and_gradients(chunk, with_entropy, temperature):
    g = torch.Generator().manual_seed(chunk)
    hidden = torch.randn(10, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (10,), generator=g)
    w_lp, w_ent = torch.randn(10, generator=g), torch.randn(10, generator=g)
    lp, ent = chunked_token_stats(hidden, weight, targets, chunk, with_entropy, temperature=temperature)
    ref_lp, ref_ent = naive_stats(hidden, weight, targets, temperature)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=1e-5)
    if with_entropy:
        torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
        loss, ref_loss = (lp * w_lp + ent * w_ent).sum(), (ref_lp * w_lp + ref_ent * w_ent).sum()
    else:
        assert ent is None
        loss, ref_loss = (lp * w_lp).sum(), (ref_lp * w_lp).sum()
    got = torch.autograd.grad(loss, (hidden, weight))
    want = torch.autograd.grad(ref_loss, (hidden, weight))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


def test_chunked_token_stats_worked_example():
    # logits [0, log 3]: p = [1/4, 3/4]; target 1 -> log(3/4); entropy = -(1/4 log 1/4 + 3/4 log 3/4)
    hidden = torch.tensor([[1.0]])
    weight = torch.tensor([[0.0], [math.log(3)]])
    lp, ent = chunked_token_stats(hidden, weight, torch.tensor([1]))
    assert lp.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert ent.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


def test_training_temperature_rule():
    assert training_temperature(0.7) == 0.7 and training_temperature(1.3) == 1.3
    assert training_temperature(0.0) == 1.0                  # greedy: the model's own distribution
    with pytest.raises(ValueError, match="temperature"):
        training_temperature(-0.1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        chunked_token_stats(torch.randn(2, 3), torch.randn(5, 3), torch.tensor([1, 2]), temperature=0.0)


def test_chunked_token_stats_reject_bad_targets():
    with pytest.raises(ValueError, match=r"target ids must lie in \[0, 5\)"):
        chunked_token_stats(torch.randn(2, 3), torch.randn(5, 3), torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_token_stats(torch.randn(2, 3), torch.randn(5, 3), torch.tensor([1, 2]), chunk_tokens=0)


def _model(tied: bool, **extra):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                         tie_word_embeddings=tied, use_sliding_window=False, **extra)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)


def _batch(group_size: int, seed: int = 0):
    """Three prompts of different lengths; ragged completions (lengths 1..6)."""
    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(0, 97, (n,), generator=g).tolist()

    prompts = [ids(11), ids(4), ids(8)]
    completions = [[ids(1 + (3 * p + i) % 6) for i in range(group_size)] for p in range(3)]
    return prompts, completions


def naive_model_stats(model, prompts, completions, temperature: float = 1.0):
    """The plainest reference: each prompt+completion alone, full logits / temperature, log_softmax."""
    lps, ents = [], []
    for prompt, group in zip(prompts, completions):
        for c in group:
            logits = model(torch.tensor([prompt + c])).logits[0, len(prompt) - 1:-1]
            logp = torch.log_softmax(logits / temperature, -1)
            lps.append(logp.gather(1, torch.tensor(c)[:, None]).squeeze(1))
            ents.append(-(logp.exp() * logp).sum(-1))
    return lps, ents


def _loss(lps, ents):
    """A scalar that weights every token differently, so every gradient path matters."""
    return sum(((i + 1) * 0.1 * lp).sum() + (0.05 * e).sum() for i, (lp, e) in enumerate(zip(lps, ents)))


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("group_size", [1, 4])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completion_stats_equal_the_naive_forward_with_gradients(group_size, tied, shared, temperature):
    model = _model(tied)
    prompts, completions = _batch(group_size)
    ref_lps, ref_ents = naive_model_stats(model, prompts, completions, temperature)
    want = _grads(model, _loss(ref_lps, ref_ents))
    stats = completion_stats(model, prompts, completions, chunk_tokens=5, shared_prompt=shared,
                             temperature=temperature)
    rows = [c for group in completions for c in group]
    assert stats.logprobs.shape == (len(rows), max(len(c) for c in rows))
    lps, ents = [], []
    for b, c in enumerate(rows):
        n = len(c)
        assert stats.mask[b].tolist() == [True] * n + [False] * (stats.mask.shape[1] - n)
        assert not stats.logprobs[b, n:].any() and not stats.entropy[b, n:].any()
        torch.testing.assert_close(stats.logprobs[b, :n], ref_lps[b], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats.entropy[b, :n], ref_ents[b], atol=1e-5, rtol=1e-5)
        lps.append(stats.logprobs[b, :n])
        ents.append(stats.entropy[b, :n])
    got = _grads(model, _loss(lps, ents))
    assert got.keys() == want.keys() and len(got) == len(list(model.parameters()))
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5, msg=name)


def test_a_micro_batch_may_hold_part_of_a_group():
    model = _model(True).eval()
    prompts, completions = _batch(4)
    whole = completion_stats(model, prompts, completions)
    part = completion_stats(model, prompts[1:], [completions[1][2:], completions[2][:1]])
    torch.testing.assert_close(part.logprobs[0], whole.logprobs[6, :part.logprobs.shape[1]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part.logprobs[2], whole.logprobs[8, :part.logprobs.shape[1]], atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    prompts, completions = _batch(2)
    plain = _model(True).train()
    want = _grads(plain, completion_stats(plain, prompts, completions).logprobs.sum())
    checkpointed = _model(True).train()
    from longrl.models.loading import enable_activation_checkpointing

    enable_activation_checkpointing(checkpointed)
    got = _grads(checkpointed, completion_stats(checkpointed, prompts, completions).logprobs.sum())
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5, msg=name)


def test_without_entropy_and_without_grad():
    model = _model(True).eval()
    prompts, completions = _batch(2)
    with torch.no_grad():
        stats = completion_stats(model, prompts, completions, with_entropy=False)
    assert stats.entropy is None and not stats.logprobs.requires_grad


def test_unsupported_heads_and_bad_inputs_raise():
    prompts, completions = _batch(1)
    with pytest.raises(NotImplementedError, match="final_logit_softcapping"):
        completion_stats(_model(True, final_logit_softcapping=30.0), prompts, completions)
    model = _model(False)
    model.lm_head = torch.nn.Linear(32, 97, bias=True)
    with pytest.raises(NotImplementedError, match="bias"):
        completion_stats(model, prompts, completions)
    model = _model(True)
    with pytest.raises(ValueError, match="one list of completions per prompt"):
        completion_stats(model, prompts, completions[:2])
    with pytest.raises(ValueError, match="prompt 1: every group needs"):
        completion_stats(model, prompts, [completions[0], [[]], completions[2]])
    with pytest.raises(ValueError, match=r"prompt 1: token ids must lie in \[0, 97\)"):
        completion_stats(model, prompts, [completions[0], [[500]], completions[2]])


def test_bfloat16_models_run_and_stay_close_to_float32():
    prompts, completions = _batch(2)
    model = _model(True)
    low = _model(True).to(torch.bfloat16)
    want = completion_stats(model, prompts, completions)
    got = completion_stats(low, prompts, completions)
    assert got.logprobs.dtype == torch.float32
    torch.testing.assert_close(got.logprobs, want.logprobs, atol=0.05, rtol=0.05)
    got.logprobs.sum().backward()
    assert low.lm_head.weight.grad.dtype == torch.bfloat16 and low.lm_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("prompts", [[[5], [7, 8, 9, 10]], [[5], [6]]])   # an empty prefix; no prefix at all
def test_one_token_prompts(prompts):
    model = _model(True).eval()
    completions = [[[1, 2, 3], [4]], [[9, 9], [8, 7, 6]]]
    ref_lps, _ = naive_model_stats(model, prompts, completions)
    stats = completion_stats(model, prompts, completions)
    for b, ref in enumerate(ref_lps):
        torch.testing.assert_close(stats.logprobs[b, :len(ref)], ref, atol=1e-5, rtol=1e-5)
