"""`longrl bench NAME [--json FILE] [--tiny]`: speed and memory benchmarks, measured in one process.

Each benchmark compares longrl with a naive baseline (or a peer) in the same run and reports
ratios, so figures hold on a busy machine. Benchmarks register themselves here:

    @BENCHMARKS.register("rollout")
    def bench_rollout(args: argparse.Namespace) -> dict: ...   # returns {"speedup": x, ...}

`--json FILE` writes the returned dict; `--tiny` runs on the tiny default model instead of the
larger benchmark model where that applies. Results and commands are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time

import torch

from longrl.registry import Registry

BENCHMARKS: Registry = Registry("benchmark")

# Modules whose import registers benchmarks (imported only when `longrl bench` runs).
BENCH_MODULES: list[str] = ["longrl.rewards.bench", "longrl.rl.perf", "longrl.eval.bench", "longrl.sft.bench", "longrl.data.bench"]


def load_benchmarks() -> Registry:
    for name in BENCH_MODULES:
        importlib.import_module(name)
    return BENCHMARKS


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed/memory benchmarks against naive baselines (ratios in one run)",
                       description="Run a benchmark; prints the figures and the ratio to its baseline. "
                                   "`longrl ls benchmarks` lists them.")
    p.add_argument("name", help="benchmark name (see `longrl ls benchmarks`)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--tiny", action="store_true", help="use the tiny default model where the benchmark has a model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check that it runs")
    p.set_defaults(handler=run_bench)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def run_bench(args: argparse.Namespace) -> int:
    from longrl.errors import UserError
    from longrl.files import atomic_write_json

    registry = load_benchmarks()
    if args.name not in registry.names():
        raise UserError(f"unknown benchmark {args.name!r}; known: {', '.join(registry.names()) or '(none)'}")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    result = registry.get(args.name)(args)
    result = {"benchmark": args.name, **result, "machine": machine_info(), "wall_s": round(time.time() - start, 2)}
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
