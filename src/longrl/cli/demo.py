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
                                   "sampling -> the SFT-long control -> eval) and compare base, SFT, SFT-long and RL "
                                   "on the same held-out items (accuracy ± 2 standard errors; paired gaps). "
                                   "Rerun the same command to resume.")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory (default: runs/demo)")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"config (default: {DEFAULT_CONFIG})")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. run.seed=1")
    p.set_defaults(handler=run_demo)


def demo_rows(summary: dict) -> tuple[list[str], list[list]]:
    """The console table: every arm's accuracy ± 2 SE per length, RL's paired gaps ± 2 SE."""
    first = next(iter(summary["by_length"].values()))
    labels = {"base": "base", "sft": "SFT", "sft-long": "SFT-long", "rl": "RL"}
    header = ["length", "items", *(labels.get(a["arm"], a["arm"]) for a in first["arms"]),
              f"RL - {labels[summary['start_policy']]}"]
    if "gap_vs_sft_long" in first:
        header.append("RL - SFT-long")
    rows = []
    for length, v in summary["by_length"].items():
        row = [f"{length} tokens", v["n_eval"], *(f"{a['accuracy']:.1f} ± {2 * a['se']:.1f}" for a in v["arms"]),
               f"{v['gap']:+.1f} ± {2 * v['gap_se']:.1f}"]
        if "gap_vs_sft_long" in v:
            row.append(f"{v['gap_vs_sft_long']:+.1f} ± {2 * v['gap_vs_sft_long_se']:.1f}")
        rows.append(row)
    return header, rows


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
    print_table(f"longrl demo (seed {cfg.run.seed}): accuracy % ± 2 SE on held-out synthetic documents, "
                f"temperature {cfg.eval.temperature}", *demo_rows(summary))
    print(f"summary: {out / 'summary.json'}   report: {out / 'report.md'}")
    return 0
