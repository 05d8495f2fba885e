"""`longrl sft` (warm-up SFT) and `longrl distill` (demonstrations): the command-line side of `longrl.sft`."""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args
from longrl.cli.config import add_config_help

DISTILL_EPILOG = """\
examples:
  longrl distill --from-traces --input data.jsonl --out demos.jsonl
  longrl distill --config distill.yaml --input data.jsonl --out demos.jsonl sft.teacher.samples=8

Without --input, the items are the config's data.train sources. With --from-traces, every item's
programmatic trace (meta.trace) that passes its rule verifier becomes a demonstration. Otherwise
sft.teacher names an OpenAI-compatible server (base_url, model, api_key_env: the NAME of the
environment variable holding the key); each item gets K = sft.teacher.samples replies, scored by
the hybrid reward (reward.*, judge optional) against the gold answers, and only the correct ones
are kept. Per-item pass rates go to OUT's sidecar *.passrates.jsonl. Rerunning the same command
continues where it stopped: finished items are never requested again and no row is duplicated.
"""


def register(sub) -> None:
    p = sub.add_parser("sft", help="warm-up SFT on demonstrations (loss on the reply only, packed, resumable)",
                       description="Fine-tune the model (model.*) on the demonstrations of sft.data. Rerunning on "
                                   "the same --out resumes; the model goes to OUT/final.", add_help=False)
    add_config_help(p, reads=["run", "model", "data", "sft"], detail=[("sft", 1)])
    add_config_arguments(p, example="sft.lr=2e-5 sft.epochs=2")
    p.set_defaults(handler=run_sft)

    p = sub.add_parser("distill", help="make SFT demonstrations from traces or a teacher (rejection sampling)",
                       description="Write demonstrations (Samples whose meta.trace is the reply to train on).",
                       epilog=DISTILL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", action="append", metavar="FILE", default=[],
                   help="Samples (.jsonl / .parquet) to make demonstrations for; repeatable (default: data.train)")
    p.add_argument("--from-traces", action="store_true",
                   help="use each item's programmatic meta.trace instead of asking a teacher")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="demonstrations file (appended, resumable)")
    add_config_arguments(p, out=False, example="sft.teacher.samples=8 sft.teacher.concurrency=32")
    p.set_defaults(handler=run_distill)


def run_sft(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.sft.trainer import train_sft

    cfg = load_config_from_args(args)
    final = train_sft(cfg, args.out)
    info(f"sft: model written to {final}")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.config.data import DataSource
    from longrl.console import info, print_table, progress_bar
    from longrl.data.sources import load_items
    from longrl.errors import ConfigError
    from longrl.models.loading import load_tokenizer
    from longrl.sft.distill import demos_from_traces, distill, passrates_path

    cfg = load_config_from_args(args)
    sources = [DataSource(path=path) for path in args.input] or list(cfg.data.train)
    tokenizer = load_tokenizer(cfg.model) if any(s.synth for s in sources) else None   # synthetic items need it
    items = load_items(sources, tokenizer, cfg.data.skip_bad)
    if args.from_traces:
        stats = demos_from_traces(items, args.out, cfg.reward)
        info(f"distill: {stats.kept} demonstrations written to {args.out}; {stats.failed} items without a trace, "
             f"{stats.finished - stats.kept} traces that do not verify")
        return 0
    if cfg.sft.teacher is None:
        raise ConfigError("no teacher: set sft.teacher (base_url, model, ...) in the config, or pass --from-traces")
    with progress_bar(len(items), "distill", cfg.run.progress) as advance:
        stats = distill(items, args.out, cfg.sft.teacher, cfg.reward, progress=advance)
    print_table("distill", ["items", "done before", "finished", "failed", "replies", "correct", "kept"],
                [[stats.items, stats.already_done, stats.finished, stats.failed, stats.samples, stats.correct, stats.kept]])
    info(f"distill: demonstrations in {args.out}, pass rates in {passrates_path(args.out)}")
    if stats.failed:
        info(f"distill: {stats.failed} items failed (first: {stats.errors[0]}); rerun the same command to retry them")
        return 1
    return 0
