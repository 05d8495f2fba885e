"""Arguments shared by the commands: `--config FILE`, `key=value` overrides, `--out DIR`."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, out: bool = True, config_required: bool = False,
                         example: str = "algo.clip_eps_high=0.28 run.seed=1") -> None:
    """`--config FILE`, trailing `key=value` overrides (`example`: keys the command reads), and (for
    commands that make a run) `--out DIR`."""
    parser.add_argument("--config", metavar="FILE", required=config_required,
                        help="YAML config (see configs/); omitted = built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"dotted overrides of config keys, e.g. {example} (keys: `longrl config keys`)")
    if out:
        parser.add_argument("--out", metavar="DIR", required=True,
                            help="run directory; rerunning with the same DIR resumes")


def load_config_from_args(args: argparse.Namespace, check: bool = True):
    """The validated Config of `--config` + overrides; `check` also resolves every registry name in it."""
    from longrl.config import (
        load_config,  # lazy: `longrl --help` must not import pydantic models and stages
    )

    cfg = load_config(args.config, args.overrides)
    follow_progress_setting(cfg)
    if check:
        from longrl.cli.names import check_names  # lazy: imports every stage's registry

        check_names(cfg)
    return cfg


def follow_progress_setting(cfg) -> None:
    """Third-party progress bars (transformers, the hub) follow the command's `run.progress`."""
    from longrl.console import set_progress_mode  # lazy: rich loads only when a command runs

    set_progress_mode(cfg.run.progress)
