"""`longrl bench NAME [--json FILE] [--tiny] [--quick] [--threads N] [--device cpu|cuda] [--preset P] [--model M]`: benchmarks.

Each benchmark compares longrl with a naive baseline (or a peer) in the same run and reports
ratios, so figures hold on a busy machine. The benchmarks live beside the code they measure
(`engine/bench.py`, `sft/bench.py`, `eval/bench.py`, `rewards/bench.py`) and register in
`longrl.bench.BENCHMARKS`; this command imports them and runs one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from longrl.errors import UserError

# Modules whose import registers benchmarks (imported only when `longrl bench` or `longrl ls benchmarks` runs).
BENCH_MODULES = ["longrl.rewards.bench", "longrl.engine.bench", "longrl.eval.bench", "longrl.sft.bench",
                 "longrl.engine.memory_bench", "longrl.serve.bench", "longrl.cli.bench"]
# Benchmarks that take `--model NAME_OR_PATH` and `--prompt-tokens N`.
MODEL_BENCHMARKS = ("rollout", "forward")
# Commands whose start-up `longrl bench startup` times (they must not import torch or transformers).
STARTUP_COMMANDS = [["--help"], ["ls", "advantages"], ["ls", "benchmarks"], ["ls", "evals"], ["ls", "tasks"]]


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
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="a real model for the rollout and forward benchmarks (builtin:smollm2-135m, a folder, a hub "
                        "name) instead of a random preset")
    p.add_argument("--prompt-tokens", type=int, metavar="N",
                   help="prompt length of the rollout and forward benchmarks (default: theirs)")
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

    if not 0 <= args.threads <= 4096:
        raise UserError(f"--threads {args.threads}: use 0 (torch's default) to 4096")
    registry = load_benchmarks()
    if args.name not in registry.names():
        raise UserError(f"unknown benchmark {args.name!r}; known: {', '.join(registry.names()) or '(none)'}")
    bench = registry.get(args.name)
    for flag, value in (("--model", args.model), ("--prompt-tokens", args.prompt_tokens)):
        if value is not None and args.name not in MODEL_BENCHMARKS:
            raise UserError(f"{flag} applies to the {' and '.join(MODEL_BENCHMARKS)} benchmarks, not {args.name!r}")
    if args.model is not None and (args.preset or args.tiny):
        raise UserError("--model replaces --preset and --tiny: give one of them")
    if args.prompt_tokens is not None and args.prompt_tokens < 2:
        raise UserError(f"--prompt-tokens {args.prompt_tokens}: give at least 2")
    if args.model is not None:
        from longrl.models.packaged import PACKAGED, check_available  # lazy: only --model needs it

        short = args.model.removeprefix("builtin:")
        if args.model.startswith("builtin:") and short in PACKAGED:
            check_available(short)                   # the `real` extra missing: said before any work
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


def time_command(argv: list[str], repeats: int) -> dict[str, float]:
    """Fastest wall and CPU seconds (child user + system) of `python ARGV` over `repeats` runs."""
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        before = os.times()
        began = time.perf_counter()
        subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - began
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return {"wall_s": round(best_wall, 3), "cpu_s": round(best_cpu, 3)}


# Registered by `load_benchmarks` importing this module (see BENCH_MODULES).
from longrl.bench import BENCHMARKS  # noqa: E402 - after the command's own code, which must not need it


@BENCHMARKS.register("startup")
def bench_startup(args: argparse.Namespace) -> dict:
    """Start-up of `longrl --help` and `longrl ls KIND` against a bare interpreter and `import torch`.

    Each command runs in a fresh `python -m longrl.cli` process, `repeats` times, keeping the fastest
    wall and CPU time; the CPU time (user + system of the child) is what an idle core would take.
    Target: < 1 s each (neither torch nor transformers is imported; tests/cli/test_tools.py checks that).
    """
    repeats = 2 if args.quick else 5
    python = time_command(["-c", "pass"], repeats)
    torch_import = time_command(["-c", "import torch"], repeats)
    transformers_import = time_command(["-c", "import transformers"], 1 if args.quick else 3)
    commands = {" ".join(argv): time_command(["-m", "longrl.cli", *argv], repeats) for argv in STARTUP_COMMANDS}
    slowest = max(c["cpu_s"] for c in commands.values())
    return {"repeats": repeats, "python": python, "import_torch": torch_import, "import_transformers": transformers_import,
            "commands": commands, "slowest_cpu_s": slowest, "target_s": 1.0, "meets_target": slowest < 1.0,
            "ratio_to_import_torch": round(slowest / max(torch_import["cpu_s"], 1e-9), 3),
            "load_average": list(os.getloadavg())}


@BENCHMARKS.register("synth")
def bench_synth(args: argparse.Namespace) -> dict:
    """Tokens/s of synthetic data generation, memoised vs plain tokenizer calls (`longrl.data.bench`)."""
    # lazy: torch/transformers load only when this benchmark runs (`longrl ls benchmarks` stays fast)
    from longrl.data.bench import bench_synth as measure_synth
    from longrl.models.tokenizer import load_default_tokenizer

    return measure_synth(args, load_default_tokenizer())
