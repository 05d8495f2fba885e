"""The `longrl` command line.

    longrl data synth --tasks docmath,multihop,choice --n 300 --length 2000 --seed 0 --out data.jsonl
    longrl data import --format docqa-rl docqa_rl.parquet --out docqa_rl.jsonl
    longrl data stats data.jsonl --tokenizer builtin:tiny-base
    longrl rl --config configs/smoke.yaml --out runs/smoke algo.clip_eps_high=0.28
    longrl ls tasks
    longrl validate --config configs/demo.yaml

Every command that produces a run takes `--out DIR`; config commands take `--config FILE`
followed by dotted `key=value` overrides. Bad input exits with status 2 and a message that
names the file, line and field; `main(argv)` returns the exit status (it is what tests call).
Multi-process: `torchrun --nproc-per-node N -m longrl.cli rl --config ...`. Python puts the working
directory first on the import path under `-m`; run as a module, longrl takes it off again before it
loads any command, so a file next to your data never shadows a module longrl imports
(`PYTHONSAFEPATH=1`, Python 3.11+, keeps it off from the start).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from longrl import __version__
from longrl.errors import UserError

# Each module defines register(subparsers); handlers import heavy libraries lazily.
COMMAND_MODULES = [
    "longrl.data.commands",
    "longrl.models.commands",
    "longrl.tools_commands",
    "longrl.demo",
    "longrl.bench",
    "longrl.rewards.commands",
    "longrl.rl.commands",
    "longrl.eval.commands",
    "longrl.sft.commands",
    "longrl.pretrain",
    "longrl.pipeline",
    "longrl.report",
]


def add_config_arguments(parser: argparse.ArgumentParser, out: bool = True, config_required: bool = False) -> None:
    """`--config FILE`, trailing `key=value` overrides, and (for commands that make a run) `--out DIR`."""
    parser.add_argument("--config", metavar="FILE", required=config_required,
                        help="YAML config (see configs/); omitted = built-in defaults")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides of config keys, e.g. algo.clip_eps_high=0.28 run.seed=1")
    if out:
        parser.add_argument("--out", metavar="DIR", required=True,
                            help="run directory; rerunning with the same DIR resumes")


def load_config_from_args(args: argparse.Namespace):
    from longrl.config import load_config

    return load_config(args.config, args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longrl",
        description="Train long-context reasoning models with RL (QwenLong-L1 recipe). Run `longrl COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"longrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"longrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"longrl {args.command}: interrupted", file=sys.stderr)
        return 130


def drop_working_directory_from_path() -> None:
    """Undo what `python -m` does to the import path: its first entry, the working directory."""
    import os

    if sys.path and not sys.flags.safe_path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


if __name__ == "__main__":
    drop_working_directory_from_path()
    sys.exit(main())
