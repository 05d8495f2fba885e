"""`longrl rl --config FILE [key=value ...] --out DIR`: run (or resume) GRPO/DAPO training.

    longrl rl --config configs/smoke.yaml --out runs/smoke
    longrl rl --config configs/smoke.yaml --out runs/smoke2 algo.advantage=drgrpo train.steps=8

Rerunning the same command on the same --out resumes from the newest checkpoint; a finished run
returns at once. The loop itself is `longrl.rl.trainer.train`.
"""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args
from longrl.cli.config import add_config_help


def register(sub) -> None:
    p = sub.add_parser("rl", help="RL training (GRPO / DAPO) on long-context items; resumable",
                       description="Train a policy with GRPO / DAPO: rollout -> hybrid reward -> dynamic sampling -> "
                                   "update, with checkpoints. Rerun the same command to resume; the final policy "
                                   "is written to DIR/final as a Hugging Face folder.", add_help=False)
    add_config_help(p, reads=["run", "model", "data", "reward", "rollout", "algo", "optim", "train"],
                    detail=[("rollout", 1), ("algo", 1), ("train", 1)])
    add_config_arguments(p)
    p.add_argument("--phase", default="rl", help="label recorded in metrics and checkpoints (default: rl)")
    p.set_defaults(handler=run_rl)


def run_rl(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.rl.trainer import train

    cfg = load_config_from_args(args)
    final = train(cfg, args.out, phase=args.phase)
    info(f"final policy: {final}")
    return 0
