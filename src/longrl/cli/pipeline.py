"""`longrl pipeline --config FILE --out DIR`: SFT -> RL phases with retrospective sampling -> eval -> report."""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args
from longrl.cli.config import add_config_help


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="the whole recipe: SFT -> RL phases with retrospective sampling -> eval -> report",
                       description="Run warm-up SFT, the curriculum's RL phases (retrospective sampling between them), "
                                   "evaluation of the SFT and final policies, and the report, each stage in its own "
                                   "subdirectory of --out. Rerun the same command to resume after a crash or Ctrl-C.",
                       add_help=False)
    add_config_help(p, reads=["run", "model", "data", "reward", "rollout", "algo", "optim", "train", "sft", "curriculum",
                              "eval"], detail=[("curriculum", 2)])
    add_config_arguments(p, config_required=True, example="curriculum.phases.0.steps=5 run.seed=1")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.pipeline import run_pipeline  # lazy: torch and every stage

    cfg = load_config_from_args(args)
    run_pipeline(cfg, args.out)
    info(f"[pipeline] done: {args.out}/report.md")
    return 0
