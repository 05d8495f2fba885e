"""`longrl bench NAME [--json FILE] [--tiny] [--quick] [--threads N] [--device cpu|cuda] [--preset P]`: benchmarks.

Each benchmark compares longrl with a naive baseline (or a peer) in the same run and reports
ratios, so figures hold on a busy machine. The benchmarks live beside the code they measure
(`engine/bench.py`, `sft/bench.py`, `eval/bench.py`, `rewards/bench.py`) and register in
`longrl.bench.BENCHMARKS`; this command imports them and runs one.
"""

from __future__ import annotations

import argparse
import json
import time

from longrl.errors import UserError

# Modules whose import registers benchmarks (imported only when `longrl bench` or `longrl ls benchmarks` runs).
BENCH_MODULES = ["longrl.rewards.bench", "longrl.engine.bench", "longrl.eval.bench", "longrl.sft.bench", "longrl.serve.bench"]


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed/memory benchmarks against naive baselines (ratios in one run)",
                       description="Run a benchmark; prints the figures and the ratio to its baseline. "
                                   "`longrl ls benchmarks` lists them.")
    p.add_argument("name", help="benchmark name (see `longrl ls benchmarks`)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--tiny", action="store_true", help="use the tiny default model where the benchmark has a model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check that it runs")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to run (default cpu; cuda: the rollout, forward and logprobs benchmarks)")
    p.add_argument("--preset", choices=["bench", "tiny", "0.5b", "1.5b"],
                   help="model shape of the engine benchmarks (default: bench, or tiny with --tiny; "
                        "0.5b / 1.5b: Qwen2.5 shapes)")
    p.set_defaults(handler=run_bench)


def load_benchmarks():
    """The benchmark registry, filled by importing every module that registers benchmarks."""
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    import importlib

    from longrl.bench import BENCHMARKS

    for name in BENCH_MODULES:
        importlib.import_module(name)  # lazy: each pulls torch and its stage; a fixed list, never user input
    return BENCHMARKS


def run_bench(args: argparse.Namespace) -> int:
    import torch  # lazy: keeps `longrl --help` fast

    from longrl.bench import machine_info
    from longrl.files import atomic_write_json

    registry = load_benchmarks()
    if args.name not in registry.names():
        raise UserError(f"unknown benchmark {args.name!r}; known: {', '.join(registry.names()) or '(none)'}")
    bench = registry.get(args.name)
    if args.device not in getattr(bench, "devices", ("cpu",)):
        raise UserError(f"benchmark {args.name!r} runs on the CPU only (drop --device {args.device})")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    result = bench(args)
    result = {"benchmark": args.name, **result, "machine": machine_info(), "wall_s": round(time.time() - start, 2)}
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
