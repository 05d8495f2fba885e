"""Benchmarks of the RL engine's performance core, each against a naive baseline in the same process.

    longrl bench rollout  [--json FILE] [--tiny] [--quick]   # group sampling vs generate(num_return_sequences=G)
    longrl bench forward  [--json FILE] [--tiny] [--quick]   # shared-prompt training forward+backward vs per-sample
    longrl bench logprobs [--json FILE] [--tiny] [--quick]   # peak memory of chunked log-probs + entropy + backward
    longrl bench rollout --device cuda --preset 0.5b         # the same on a GPU (bf16), at the sizes below
    longrl bench rollout --model builtin:smollm2-135m --prompt-tokens 1024   # on a real model (rollout, forward)

On the CPU (the default) the model is a random-init Qwen2 decoder with hidden size 256, 4 layers,
GQA 4/2 heads and a 32K vocabulary (`--tiny`: the embedded default's shape with its own 1.3K
vocabulary; `--preset` picks another shape: `engine/bench_models.py`; `--model NAME_OR_PATH` a real
model, e.g. `builtin:smollm2-135m`, with `--prompt-tokens N` for its prompt length). Times are the best of
`REPEATS` alternating runs after a warm-up; ratios are what to compare across machines. `--quick`
shrinks every size so a test can check that the benchmark runs. Figures and commands: benchmarks/perf.md.

Peak memory (logprobs) on the CPU is measured in a fresh Python process per measurement: the inputs are
built, the kernel's peak-RSS counter is reset (/proc/self/clear_refs; ru_maxrss otherwise), and
the figure is the peak resident set size during the measured work minus the RSS just before it.

On CUDA (`--device cuda`, `engine/bench_cuda.py`) the sizes are the GPU-speed targets': an 8K prompt,
G=8, 4 groups, 256 new tokens (rollout); an 8K prompt and 8 completions of 256 (forward); 16K tokens
x 151,936 vocabulary (logprobs). Clocks wait for the device (torch.cuda.synchronize) and memory is
torch.cuda.max_memory_allocated above what was allocated before each measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import longrl
from longrl.bench import BENCHMARKS
from longrl.engine import bench_cuda
from longrl.engine.bench_models import QWEN_VOCAB, bench_policy, model_label
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator
from longrl.engine.logprobs import chunked_token_stats, completion_stats
from longrl.engine.masked import resolve_backend

REPEATS = 3
FULL_VOCAB = QWEN_VOCAB    # a Qwen2.5-size vocabulary ("150K")
GB = 1e9
TRAINED_BACKENDS = ("blocks", "sdpa")   # shared-prompt attention timed with backward on the CPU (engine/masked.py)


def bench_model(args: argparse.Namespace):
    """The benchmark policy on the CPU: fp32, eval mode (`--model NAME_OR_PATH`, or seeded: `--preset`, `--tiny`,
    or the 32K-vocabulary default)."""
    return bench_policy(args, preset_of(args))


def prompt_tokens(args: argparse.Namespace, default: int) -> int:
    """`--prompt-tokens N` where given, else the benchmark's own prompt length."""
    return getattr(args, "prompt_tokens", None) or default


def preset_of(args: argparse.Namespace) -> str:
    """`--preset NAME`, else "tiny" with `--tiny`, else "bench"."""
    return getattr(args, "preset", None) or ("tiny" if getattr(args, "tiny", False) else "bench")


def on_cuda(args: argparse.Namespace) -> bool:
    return getattr(args, "device", "cpu") == "cuda"


def time_alternately(fns: dict, repeats: int = REPEATS) -> dict:
    """{name: (wall, cpu)}: each fn timed `repeats` times in turn with the others (so all meet the same
    machine load); the minimum seconds of each."""
    best = {name: [float("inf")] * 2 for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            best[name] = [min(best[name][0], time.perf_counter() - start), min(best[name][1], time.process_time() - start_cpu)]
    return {name: tuple(b) for name, b in best.items()}


def timing_figures(ours: tuple[float, float], naive: tuple[float, float]) -> dict:
    """Speedups from wall time (the headline) and from CPU time (steadier on a shared machine)."""
    return {"speedup": round(naive[0] / ours[0], 2), "cpu_speedup": round(naive[1] / ours[1], 2),
            "longrl_s": round(ours[0], 3), "naive_s": round(naive[0], 3),
            "longrl_cpu_s": round(ours[1], 3), "naive_cpu_s": round(naive[1], 3),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def random_ids(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(1, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def naive_generate(model, prompt: list[int], group_size: int, params, seed: int):
    """Baseline: `model.generate(num_return_sequences=G)`, exactly max_new_tokens each. Returns (ids, cache bytes)."""
    torch.manual_seed(seed)
    out = model.generate(       # the mask is given: a real model's pad id may be a token of the prompt (SmolLM2's eos)
        input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        num_return_sequences=group_size, do_sample=params.temperature > 0,
        temperature=params.temperature or None, top_p=params.top_p, top_k=params.top_k or None,
        max_new_tokens=params.max_new_tokens, min_new_tokens=params.max_new_tokens,
        pad_token_id=model.config.pad_token_id, return_dict_in_generate=True,
    )
    cache = out.past_key_values
    cache_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    return out.sequences[:, len(prompt):], cache_bytes


@BENCHMARKS.register("rollout")
def bench_rollout(args: argparse.Namespace) -> dict:
    """SharedPrefixGenerator vs generate(num_return_sequences=G): prompt 4K, 64 new tokens, G=8."""
    if on_cuda(args):
        return bench_cuda.rollout(args, preset_of(args))
    prompt_len, new, group = (128, 4, 4) if args.quick else (4096, 64, 8)
    prompt_len = prompt_tokens(args, prompt_len)
    repeats = 1 if args.quick else REPEATS
    model = bench_model(args)
    vocab = model.config.vocab_size
    prompt = random_ids(prompt_len, vocab, 0)
    params = SamplingParams(max_new_tokens=new, temperature=0.7, top_p=0.95)   # no stop token: exactly `new`
    generator = SharedPrefixGenerator(model, pad_token_id=0, groups_per_batch=1)
    warm = random_ids(32, vocab, 1)
    generator.generate([warm], group, SamplingParams(max_new_tokens=2), [0])
    naive_generate(model, warm, group, SamplingParams(max_new_tokens=2), 0)
    with torch.no_grad():
        times = time_alternately({"ours": lambda: generator.generate([prompt], group, params, [0]),
                                  "naive": lambda: naive_generate(model, prompt, group, params, 0)}, repeats)
        ours, naive = times["ours"], times["naive"]
        naive_ids, naive_bytes = naive_generate(model, prompt, group, params, 0)
        lengths = {len(c) for c in generator.generate([prompt], group, params, [0])[0].completions}
    return {
        **timing_figures(ours, naive), "kv_memory_ratio": round(generator.kv_bytes / naive_bytes, 4),
        "longrl_tokens_per_s": round(group * new / ours[0], 1), "naive_tokens_per_s": round(group * new / naive[0], 1),
        "longrl_kv_mb": round(generator.kv_bytes / 1e6, 2), "naive_kv_mb": round(naive_bytes / 1e6, 2),
        "new_tokens_per_sample": sorted(lengths), "naive_new_tokens_shape": list(naive_ids.shape),
        "model": model_label(args), "sizes": {"prompt": prompt_len, "new_tokens": new, "group": group, "vocab": vocab,
                  "hidden": model.config.hidden_size, "layers": model.config.num_hidden_layers},
    }


@BENCHMARKS.register("forward")
def bench_forward(args: argparse.Namespace) -> dict:
    """completion_stats forward+backward, shared prompt vs per-sample: prompt 4K, completion 64, G=8.

    The shared-prompt side runs the CPU's default attention (`train.attention: auto`); every backend
    that runs here is timed too (blocks, sdpa with backward; flex forward only, torch has no CPU backward).
    """
    if on_cuda(args):
        return bench_cuda.forward(args, preset_of(args))
    prompt_len, comp_len, group = (128, 4, 4) if args.quick else (4096, 64, 8)
    prompt_len = prompt_tokens(args, prompt_len)
    repeats = 1 if args.quick else REPEATS
    model = bench_model(args)
    vocab = model.config.vocab_size
    prompts = [random_ids(prompt_len, vocab, 0)]
    completions = [[random_ids(comp_len, vocab, 10 + g) for g in range(group)]]
    default = resolve_backend("auto", "cpu")
    results = {}

    def step(shared: bool, attention: str = "auto") -> None:
        model.zero_grad(set_to_none=True)
        stats = completion_stats(model, prompts, completions, shared_prompt=shared, attention=attention)
        (stats.logprobs.sum() + stats.entropy.sum()).backward()
        results[attention if shared else "per_sample"] = stats.logprobs.detach()

    fns = {"per_sample": lambda: step(False), **{name: (lambda name=name: step(True, name)) for name in TRAINED_BACKENDS}}
    for fn in fns.values():
        fn()         # warm-up, and the results compared below
    times = time_alternately(fns, repeats)
    ours, naive = times[default], times["per_sample"]
    backends = {name: {"s": round(times[name][0], 3), "cpu_s": round(times[name][1], 3),
                       "max_logprob_diff_vs_per_sample": float((results[name] - results["per_sample"]).abs().max())}
                for name in TRAINED_BACKENDS}
    return {
        **timing_figures(ours, naive), "attention": default, "backends": backends,
        "flex_forward_only": flex_forward_only(model, prompts, completions, default, repeats, args.quick),
        "max_logprob_diff": float((results[default] - results["per_sample"]).abs().max()),
        "model": model_label(args), "sizes": {"prompt": prompt_len, "completion": comp_len, "group": group, "vocab": vocab,
                  "hidden": model.config.hidden_size, "layers": model.config.num_hidden_layers},
    }


def flex_forward_only(model, prompts, completions, default: str, repeats: int, quick: bool) -> dict:
    """Forward-only (no grad) times of the flex path and of `default`: flex_attention has no CPU backward.

    The first flex call compiles (minutes on a 2-core CPU: reported as compile_s); `--quick` skips it.
    """
    if quick:
        return {"skipped": "--quick: compiling flex_attention on the CPU takes minutes"}
    results = {}

    def forward(attention: str) -> None:
        with torch.no_grad():
            results[attention] = completion_stats(model, prompts, completions, attention=attention).logprobs

    start = time.perf_counter()
    try:
        forward("flex")
    except Exception as exc:                     # no C++ compiler, an unsupported torch: say why, keep the rest
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    compile_s = time.perf_counter() - start
    forward(default)
    times = time_alternately({"flex": lambda: forward("flex"), default: lambda: forward(default)}, repeats)
    return {"note": "forward only, no grad (torch has no flex_attention backward on the CPU); compiled for the CPU",
            "flex_s": round(times["flex"][0], 3), f"{default}_s": round(times[default][0], 3),
            "flex_cpu_s": round(times["flex"][1], 3), f"{default}_cpu_s": round(times[default][1], 3),
            "compile_s": round(compile_s, 1), "max_logprob_diff_flex_vs_" + default:
                float((results["flex"] - results[default]).abs().max())}


@BENCHMARKS.register("logprobs")
def bench_logprobs(args: argparse.Namespace) -> dict:
    """Peak memory of log-prob + entropy + backward over 16K tokens x 150K vocab (chunked vs naive)."""
    if on_cuda(args):
        return bench_cuda.logprobs(args, preset_of(args))
    hidden = 64 if args.quick else 256
    tokens, vocab = (512, 8192) if args.quick else (16384, FULL_VOCAB)
    naive_sizes = (128, 256) if args.quick else (256, 512, 1024)
    chunk = 1024
    threads = torch.get_num_threads()
    ours = measure_in_subprocess({"kind": "chunked", "tokens": tokens, "vocab": vocab, "hidden": hidden,
                                  "chunk": chunk, "threads": threads})
    naive = [measure_in_subprocess({"kind": "naive", "tokens": n, "vocab": vocab, "hidden": hidden,
                                    "chunk": chunk, "threads": threads}) for n in naive_sizes]
    # Least-squares line through the small naive runs, evaluated at the full size.
    xs, ys = [float(n) for n in naive_sizes], [m["peak_bytes"] for m in naive]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    extrapolated = mean_y + slope * (tokens - mean_x)
    return {
        "peak_gb": round(ours["peak_bytes"] / GB, 3), "chunked_s": round(ours["seconds"], 2),
        "naive_measured": [{"tokens": n, "peak_gb": round(m["peak_bytes"] / GB, 3)} for n, m in zip(naive_sizes, naive)],
        "naive_peak_gb_extrapolated": round(extrapolated / GB, 2),
        "naive_logits_gb_analytic": round(2 * tokens * vocab * 4 / GB, 2),
        "memory_ratio_extrapolated": round(extrapolated / ours["peak_bytes"], 1),
        "method": "fresh process per measurement; peak RSS during the measured work minus RSS before it",
        "sizes": {"tokens": tokens, "vocab": vocab, "hidden": hidden, "chunk_tokens": chunk, "dtype": "float32"},
    }


for _bench in (bench_rollout, bench_forward, bench_logprobs):
    _bench.devices = ("cpu", "cuda")           # `longrl bench NAME --device cuda` is allowed


def measure_in_subprocess(spec: dict) -> dict:
    """Run `measure_peak(spec)` in a fresh interpreter and return its result."""

    env = dict(os.environ)
    src = str(Path(longrl.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "import json, sys; from longrl.engine.bench import measure_peak; print(json.dumps(measure_peak(json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_peak(spec: dict) -> dict:
    """In this process: build inputs, then measure the peak extra RSS of one log-prob+entropy+backward."""

    torch.set_num_threads(int(spec["threads"]))
    gen = torch.Generator().manual_seed(0)
    n, vocab, width = int(spec["tokens"]), int(spec["vocab"]), int(spec["hidden"])
    hidden = torch.randn(n, width, generator=gen).requires_grad_()
    weight = (torch.randn(vocab, width, generator=gen) * 0.05).requires_grad_()
    targets = torch.randint(0, vocab, (n,), generator=gen)
    gc.collect()
    before = _reset_peak_rss()
    start = time.perf_counter()
    if spec["kind"] == "chunked":
        logprobs, entropy = chunked_token_stats(hidden, weight, targets, int(spec["chunk"]), True)
    else:
        logp = torch.log_softmax(hidden @ weight.T, -1)                                    # (N, V)
        logprobs, entropy = logp.gather(1, targets[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)
    (logprobs.sum() + entropy.sum()).backward()
    seconds = time.perf_counter() - start
    return {"peak_bytes": _peak_rss() - before, "seconds": seconds}


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS counter where possible; return the current RSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss = _status_kb("VmRSS")
    return (rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _peak_rss() -> int:
    peak = _status_kb("VmHWM")
    return (peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
