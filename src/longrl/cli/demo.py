"""`longrl demo [--out DIR] [key=value ...]`: the whole recipe on the embedded default (`make demo`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from longrl.errors import UserError

DEFAULT_CONFIG = "configs/demo.yaml"


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole recipe on the tiny default model, on this machine (CPU, offline)",
                       description="Run the pipeline on configs/demo.yaml (SFT -> two RL phases with retrospective "
                                   "sampling -> eval) and compare the RL policy with the SFT checkpoint it started from. "
                                   "Rerun the same command to resume.")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory (default: runs/demo)")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"config (default: {DEFAULT_CONFIG})")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. run.seed=1")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.cli.args import load_config_from_args
    from longrl.console import print_table
    from longrl.demo import demo_summary
    from longrl.files import atomic_write_json
    from longrl.pipeline import run_pipeline  # lazy: torch and every stage

    if not Path(args.config).exists():
        raise UserError(f"{args.config} not found: run the demo from the longrl repository root, or pass --config FILE")
    cfg = load_config_from_args(args)
    began = time.time()
    run_pipeline(cfg, args.out)
    out = Path(args.out)
    summary = {**demo_summary(out, cfg), "wall_s": round(time.time() - began, 1)}
    atomic_write_json(out / "summary.json", summary)
    rows = [[f"{length} tokens", v["n_eval"], f"{v['sft_accuracy']:.1f}", f"{v['rl_accuracy']:.1f}",
             f"{v['gap']:+.1f} ± {v['gap_se']:.1f}"] for length, v in summary["by_length"].items()]
    print_table(f"longrl demo (seed {cfg.run.seed}): accuracy % on held-out synthetic documents, temperature {cfg.eval.temperature}",
                ["length", "items", summary["start_policy"], "RL", "gap ± SE (paired)"], rows)
    print(f"summary: {out / 'summary.json'}   report: {out / 'report.md'}")
    return 0
