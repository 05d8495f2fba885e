"""The `longrl` command line: one module per command group, the only code that parses arguments.

    longrl data synth --tasks docmath,multihop,choice --n 300 --length 2000 --seed 0 --out data.jsonl
    longrl data import --format docqa-rl docqa_rl.parquet --out docqa_rl.jsonl
    longrl data stats data.jsonl --tokenizer builtin:tiny-base
    longrl rl --config configs/smoke.yaml --out runs/smoke algo.clip_eps_high=0.28
    longrl ls tasks
    longrl validate --config configs/demo.yaml

Every command that produces a run takes `--out DIR`; config commands take `--config FILE`
followed by dotted `key=value` overrides. Bad input exits with status 2 and a message that
names the file, line and field; `main(argv)` returns the exit status (it is what tests call).
Each command module imports the stage it runs inside its handler, so `longrl --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from longrl import __version__
from longrl.cli import (
    bench,
    data,
    demo,
    eval,
    model,
    pipeline,
    pretrain,
    report,
    rl,
    score,
    serve,
    sft,
    tools,
)
from longrl.errors import UserError

# Command groups in the order `longrl --help` lists them; each defines register(subparsers).
COMMANDS = [data, model, tools, demo, bench, score, rl, eval, sft, pretrain, pipeline, report, serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longrl",
        description="Train long-context reasoning models with RL (QwenLong-L1 recipe). Run `longrl COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"longrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
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


if __name__ == "__main__":
    sys.exit(main())
