"""The `longrl` command line: one module per command group, the only code that parses arguments.

    longrl data synth --tasks docmath,multihop,choice --n 300 --length 2000 --seed 0 --out data.jsonl
    longrl data import --format docqa-rl docqa_rl.parquet --out docqa_rl.jsonl
    longrl data stats data.jsonl --tokenizer builtin:tiny-base
    longrl rl --config configs/smoke.yaml --out runs/smoke algo.clip_eps_high=0.28
    longrl ls tasks
    longrl validate --config configs/demo.yaml
    longrl config keys rollout          # every key of a section with its type, default and doc

Every command that produces a run takes `--out DIR`; config commands take `--config FILE`
followed by dotted `key=value` overrides. Bad input exits with status 2 and a message that
names the file, line and field; `main(argv)` returns the exit status (it is what tests call).
`main` is the one error boundary: a UserError (bad config, data, path, server) or an OSError
that reached it (the system refused a file or device) prints one line and exits 2; Ctrl-C exits
130 and SIGTERM 143, each after a last line in the run's log.txt (a training loop first finishes
its step and checkpoints it: `console.sigterm_stops_the_command`); anything else is a bug in
longrl and keeps its traceback.
Each command module imports the stage it runs inside its handler, so `longrl --help` stays fast.
Multi-process: `torchrun --nproc-per-node N -m longrl.cli rl --config ...`. Python puts the working
directory first on the import path under `-m`; run as a module, longrl takes it off again before it
loads any command, so a file next to your data never shadows a module longrl imports
(`PYTHONSAFEPATH=1`, Python 3.11+, keeps it off from the start).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback

from longrl import __version__
from longrl.cli import (
    bench,
    config,
    data,
    demo,
    eval,
    model,
    pipeline,
    plan,
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
COMMANDS = [data, model, tools, config, demo, bench, score, rl, eval, sft, pretrain, pipeline, plan, report, serve]


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
    # lazy: rich loads only when a command runs
    from longrl.console import EXIT_TERMINATED, Terminated, command_log, error, log_only, sigterm_stops_the_command

    command = "longrl " + shlex.join(sys.argv[1:] if argv is None else argv)
    with command_log(f"$ {command}"), sigterm_stops_the_command():   # the lines go to DIR/log.txt once the run starts
        try:
            return int(handler(args) or 0)
        except UserError as exc:
            error(f"longrl {args.command}: error: {exc}")
            return 2
        except OSError as exc:  # the system refused a path or a device (disk full, read-only, no such folder)
            error(f"longrl {args.command}: error: {describe_os_error(exc)}")
            return 2
        except KeyboardInterrupt:
            error(f"longrl {args.command}: interrupted")
            return 130
        except Terminated as exc:                 # SIGTERM (timeout, Slurm, a container stop)
            error(f"longrl {args.command}: {exc}")
            return EXIT_TERMINATED
        except BaseException:
            log_only(traceback.format_exc())      # a bug: the traceback goes to the log too, then up
            raise
        finally:
            release_run_dirs()
            close_process_group()


def release_run_dirs() -> None:
    """Give up the run-directory locks the command holds (nothing to do when it opened no run directory)."""
    tracking = sys.modules.get("longrl.tracking")               # loaded only by commands that make runs
    if tracking is not None:
        tracking.release_all_run_dirs()


def close_process_group() -> None:
    """Under torchrun, destroy the process group the command created (nothing to do otherwise)."""
    distributed = sys.modules.get("longrl.engine.distributed")   # loaded only by commands that set one up
    if distributed is not None:
        distributed.shutdown()


def describe_os_error(exc: OSError) -> str:
    """`PATH: reason` for an OSError that reached the command line (UserErrors say more; this is the net)."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
