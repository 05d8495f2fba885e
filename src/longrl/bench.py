"""The benchmark registry: speed and memory benchmarks register here, `longrl bench NAME` runs one.

    @BENCHMARKS.register("rollout")
    def bench_rollout(args: argparse.Namespace) -> dict: ...   # returns {"speedup": x, ...}

Each benchmark compares longrl with a naive baseline (or a peer) in the same run and reports
ratios, so figures hold on a busy machine. `--json FILE` writes the returned dict; `--tiny` runs
on the tiny default model instead of the larger benchmark model where that applies. Results and
commands are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import platform

from longrl.registry import Registry

BENCHMARKS: Registry = Registry("benchmark")


def machine_info() -> dict:
    """Where a benchmark ran: Python, torch, platform, threads, and the GPU when there is one."""
    import torch  # lazy: this module is imported by `longrl ls`, which must not load torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
