"""The engine benchmarks on a CUDA device: `longrl bench rollout|forward|logprobs --device cuda --preset 0.5b`.

Each measures longrl and the Hugging Face way in the same process, at the sizes of the GPU-speed
targets, with clocks that wait for the device and the CUDA allocator's peak memory:

- rollout: 4 prompts of 8K tokens, G=8, 256 new tokens each (temperature 0.7, top-p 0.95). longrl's
  shared-prefix generator with the static decode captured as a CUDA graph, the same generator's
  dynamic decode (the path before CUDA graphs), and `model.generate(num_return_sequences=8)` on the
  4 prompts at once. Decode step = (time for 256 tokens - time for 1) / 255. Targets: a decode step
  <= 4 ms, >= 5x faster than generate, group K,V <= 1/4 of generate's cache.
- forward: one 8K prompt, 8 completions of 256: shared-prompt forward+backward of log-probs and
  entropy (`completion_stats`, its default attention: flex on CUDA; also the blocks and sdpa kernels,
  `shared_blocks`, `shared_sdpa`) vs the per-sample forward, and vs plain `model(ids, logits_to_keep)`
  + log_softmax (what Hugging Face trainers do).
- logprobs: log-prob + entropy + backward over 16K tokens x 151,936 vocabulary (hidden size of the
  preset), chunked vs full logits.
A side that runs out of memory is reported as such ({"error": "out of memory"}), not as a failure.
`--quick` shrinks everything (a check that the script runs); the tests run these functions on the
CPU at those sizes (the static decode eager instead of the CUDA graph).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from longrl.config.model import TinyArchConfig
from longrl.engine.bench_models import GIB, PRESETS, QWEN_VOCAB, BenchDevice, bench_policy, is_oom, model_label
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator
from longrl.engine.logprobs import chunked_token_stats, completion_stats
from longrl.engine.masked import resolve_backend

GB = 1e9
OTHER_BACKENDS = ("blocks", "sdpa")     # shared-prompt attention kernels timed beside the default (flex on CUDA)


def _ids(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(1, vocab, (n,), generator=torch.Generator(device="cpu").manual_seed(seed), device="cpu").tolist()


def _guarded(fn) -> dict:
    """fn()'s figures, or {"error": "out of memory"} (the allocator is emptied either way)."""
    try:
        return fn()
    except RuntimeError as exc:
        if not is_oom(exc):
            raise
        return {"error": "out of memory"}
    finally:
        torch.cuda.empty_cache()


def hf_generate(model, prompts: list[list[int]], group_size: int, params: SamplingParams, device: torch.device) -> int:
    """`model.generate(num_return_sequences=G)` on equal-length prompts, exactly max_new_tokens each; cache bytes."""
    ids = torch.tensor(prompts, dtype=torch.long, device=device)
    out = model.generate(       # the mask is given: a real model's pad id may be a token of the prompt (SmolLM2's eos)
        input_ids=ids, attention_mask=torch.ones_like(ids), num_return_sequences=group_size,
        do_sample=params.temperature > 0, temperature=params.temperature or None, top_p=params.top_p,
        top_k=params.top_k or None, max_new_tokens=params.max_new_tokens, min_new_tokens=params.max_new_tokens,
        pad_token_id=model.config.pad_token_id, return_dict_in_generate=True,
    )
    cache = getattr(out, "cache", None) or out.past_key_values      # transformers renamed it in 5.x
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def rollout(args: argparse.Namespace, preset: str) -> dict:
    device = BenchDevice(args.device)
    prompt_len, new, group, groups = (256, 8, 4, 2) if args.quick else (8192, 256, 8, 4)
    prompt_len = getattr(args, "prompt_tokens", None) or prompt_len
    model = bench_policy(args, preset, device.device)
    vocab = model.config.vocab_size
    prompts = [_ids(prompt_len, vocab, g) for g in range(groups)]
    seeds = list(range(groups))
    params = SamplingParams(max_new_tokens=new, temperature=0.7, top_p=0.95)     # no stop token: exactly `new`
    first = dataclasses.replace(params, max_new_tokens=1)
    warm = SamplingParams(max_new_tokens=4, temperature=0.7, top_p=0.95)
    figures: dict = {}
    with torch.no_grad():
        for name in ("graph" if device.cuda else "static", "dynamic"):
            generator = SharedPrefixGenerator(model, pad_token_id=0, groups_per_batch=groups, decode=name)
            generator.generate([_ids(64, vocab, 99)] * groups, group, warm, seeds)

            def run(p=params, g=generator):
                return g.generate(prompts, group, p, seeds)

            def measure(g=generator, run=run):
                box = {}
                wall, cpu, peak = device.measure(lambda: box.setdefault("groups", run()))
                kv, path = g.kv_bytes, g.decode_path
                one, _, _ = device.measure(lambda: run(first))
                lengths = sorted({len(c) for out in box["groups"] for c in out.completions})
                return {"s": round(wall, 3), "cpu_s": round(cpu, 3), "decode_step_ms": round((wall - one) / (new - 1) * 1e3, 2),
                        "peak_gib": round(peak / GIB, 3), "kv_gib": round(kv / GIB, 3), "path": path,
                        "new_tokens_per_sample": lengths}
            figures[name] = _guarded(measure)
        hf_generate(model, [_ids(64, vocab, 99)] * groups, group, warm, device.device)

        def measure_hf():
            cache = {}
            wall, cpu, peak = device.measure(lambda: cache.setdefault("bytes", hf_generate(model, prompts, group, params,
                                                                                              device.device)))
            one, _, _ = device.measure(lambda: hf_generate(model, prompts, group, first, device.device))
            return {"s": round(wall, 3), "cpu_s": round(cpu, 3), "decode_step_ms": round((wall - one) / (new - 1) * 1e3, 2),
                    "peak_gib": round(peak / GIB, 3), "kv_gib": round(cache["bytes"] / GIB, 3)}
        figures["hf_generate"] = _guarded(measure_hf)
    ours, dynamic, hf = figures.get("graph", figures.get("static")), figures["dynamic"], figures["hf_generate"]
    out = {"preset": preset, "model": model_label(args), **figures,
           "sizes": {"prompt": prompt_len, "new_tokens": new, "group": group, "groups": groups, "vocab": vocab,
                     "hidden": model.config.hidden_size, "layers": model.config.num_hidden_layers,
                     "dtype": str(model.dtype).removeprefix("torch.")}}
    if "s" in ours:
        out["decode_step_ms"] = ours["decode_step_ms"]
        out["graph_captured"] = ours["path"] == "cuda-graph"
        if "s" in hf:
            out["speedup"] = round(hf["s"] / ours["s"], 2)
            out["kv_memory_ratio"] = round(ours["kv_gib"] / max(hf["kv_gib"], 1e-9), 4)
            out["peak_memory_ratio"] = round(ours["peak_gib"] / max(hf["peak_gib"], 1e-9), 4)
        if "s" in dynamic:
            out["speedup_vs_dynamic"] = round(dynamic["s"] / ours["s"], 2)
        out["targets"] = {"decode_step_ms<=4": out["decode_step_ms"] <= 4.0,
                          "speedup>=5": out.get("speedup", 0) >= 5.0,
                          "kv_memory_ratio<=0.25": out.get("kv_memory_ratio", 1.0) <= 0.25}
    return out


def _hf_token_stats(model, prompt: list[int], completions: list[list[int]], device: torch.device):
    """Per-sample forward as Hugging Face trainers run it: logits of the completion positions, log_softmax."""
    ids = torch.tensor([prompt + c for c in completions], dtype=torch.long, device=device)      # (G, P+C)
    width = len(completions[0])
    logits = model(input_ids=ids, logits_to_keep=width + 1).logits[:, :-1].float()            # (G, C, V)
    logp = torch.log_softmax(logits, -1)
    targets = ids[:, -width:]
    return logp.gather(-1, targets[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def forward(args: argparse.Namespace, preset: str) -> dict:
    device = BenchDevice(args.device)
    prompt_len, comp_len, group = (256, 16, 4) if args.quick else (8192, 256, 8)
    prompt_len = getattr(args, "prompt_tokens", None) or prompt_len
    model = bench_policy(args, preset, device.device)
    vocab = model.config.vocab_size
    prompt = _ids(prompt_len, vocab, 0)
    completions = [_ids(comp_len, vocab, 10 + g) for g in range(group)]
    results: dict = {}

    def step(kind: str) -> None:
        model.zero_grad(set_to_none=True)
        if kind == "hf":
            logprobs, entropy = _hf_token_stats(model, prompt, completions, device.device)
        else:
            attention = kind.removeprefix("shared_") if kind.startswith("shared_") else "auto"
            stats = completion_stats(model, [prompt], [completions], shared_prompt=kind != "per_sample",
                                     attention=attention)
            logprobs, entropy = stats.logprobs, stats.entropy
        (logprobs.float().sum() + entropy.float().sum()).backward()
        results[kind] = logprobs.detach().float()

    figures = {}
    for kind in ("shared", *(f"shared_{b}" for b in OTHER_BACKENDS), "per_sample", "hf"):
        def measure(kind=kind):
            first, _, _ = device.measure(lambda: step(kind))   # warm-up (flex's compile, kernel selection, allocator)
            wall, cpu, peak = device.measure(lambda: step(kind))
            return {"s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_gib": round(peak / GIB, 3),
                    "first_call_s": round(first, 2)}
        figures[kind] = _guarded(measure)
    model.zero_grad(set_to_none=True)
    out = {"preset": preset, "model": model_label(args), **figures,
           "sizes": {"prompt": prompt_len, "completion": comp_len, "group": group, "vocab": vocab,
                     "hidden": model.config.hidden_size, "layers": model.config.num_hidden_layers,
                     "dtype": str(model.dtype).removeprefix("torch.")}}
    out["attention"] = resolve_backend("auto", device.device)
    for kind in ("per_sample", "hf", *(f"shared_{b}" for b in OTHER_BACKENDS)):
        if "s" in figures["shared"] and "s" in figures[kind]:
            out[f"speedup_vs_{kind}"] = round(figures[kind]["s"] / figures["shared"]["s"], 2)
            out[f"memory_ratio_vs_{kind}"] = round(figures["shared"]["peak_gib"] / max(figures[kind]["peak_gib"], 1e-9), 4)
        if "shared" in results and kind in results:
            out[f"max_logprob_diff_vs_{kind}"] = float((results["shared"] - results[kind]).abs().max())
    return out


def logprobs(args: argparse.Namespace, preset: str) -> dict:
    device = BenchDevice(args.device)
    if args.quick:
        tokens, vocab, hidden = 512, 8192, 64
    else:
        tokens, vocab = 16384, QWEN_VOCAB
        hidden = preset_model_hidden(preset)
    gen = torch.Generator(device="cpu").manual_seed(0)
    base_hidden = torch.randn(tokens, hidden, generator=gen, device="cpu").to(device.device)
    base_weight = (torch.randn(vocab, hidden, generator=gen, device="cpu") * 0.05).to(device.device)
    targets = torch.randint(0, vocab, (tokens,), generator=gen, device="cpu").to(device.device)

    def run(kind: str) -> None:
        h = base_hidden.clone().requires_grad_()
        w = base_weight.clone().requires_grad_()
        if kind == "chunked":
            lp, ent = chunked_token_stats(h, w, targets, 1024, True)
        else:
            logp = torch.log_softmax(h @ w.T, -1)                                          # (N, V)
            lp, ent = logp.gather(1, targets[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)
        (lp.sum() + ent.sum()).backward()

    figures = {}
    for kind in ("chunked", "full_logits"):
        def measure(kind=kind):
            wall, _, peak = device.measure(lambda: run(kind))
            return {"s": round(wall, 3), "peak_gb": round(peak / GB, 3)}
        figures[kind] = _guarded(measure)
    out = {"preset": preset, **figures, "naive_logits_gb_analytic": round(2 * tokens * vocab * 4 / GB, 2),
           "sizes": {"tokens": tokens, "vocab": vocab, "hidden": hidden, "chunk_tokens": 1024, "dtype": "float32"}}
    if "peak_gb" in figures["chunked"]:
        out["peak_gb"] = figures["chunked"]["peak_gb"]
        if "peak_gb" in figures["full_logits"]:
            out["memory_ratio"] = round(figures["full_logits"]["peak_gb"] / max(figures["chunked"]["peak_gb"], 1e-9), 1)
    return out


def preset_model_hidden(preset: str) -> int:
    return TinyArchConfig().hidden_size if preset == "tiny" else PRESETS[preset][0]
