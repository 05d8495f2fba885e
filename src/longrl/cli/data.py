"""`longrl data synth|import|export|stats`: make, import, export and inspect Sample files."""

from __future__ import annotations

import argparse

from longrl.errors import UserError


def register(sub) -> None:
    data = sub.add_parser("data", help="make, import, export and inspect Sample files (JSONL or parquet)",
                          description="Make, import, export (verl, TRL) and inspect Sample files (JSONL or parquet).")
    data.set_defaults(handler=lambda args: _usage(data))
    actions = data.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("synth", help="synthesize long-document reasoning tasks",
                           description="Synthesize docmath / multihop / choice samples with documents of a target token length "
                                       "(tokens of the default tokenizer, chat template included, +-10%). Same seed, same bytes.")
    p.add_argument("--tasks", default="docmath,multihop,choice", help="comma-separated families (default: all three)")
    p.add_argument("--n", type=int, required=True, help="number of samples (families round-robin)")
    p.add_argument("--length", type=int, required=True, help="target prompt length in tokens")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same bytes (default 0)")
    p.add_argument("--hops", type=int, default=None, help="reasoning hops (default: per family)")
    p.add_argument("--distractors", type=int, default=None, help="decoy facts (default: grows with length)")
    p.add_argument("--tokenizer", default=None, help="count lengths with this tokenizer (default: longrl's)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .jsonl or .parquet (written atomically)")
    p.set_defaults(handler=run_synth)

    p = actions.add_parser("import", help="convert a published dataset into Samples",
                           description="Convert a published dataset file into Samples, keeping row order.")
    p.add_argument("--format", required=True, help="source format: docqa-rl (DocQA-RL-1.6K verl parquet)")
    p.add_argument("input", metavar="FILE", help="the published file (docqa-rl: a .parquet file)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .jsonl or .parquet (written atomically)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows (reported) instead of failing")
    p.set_defaults(handler=run_import)

    p = actions.add_parser("export", help="write Samples in verl's or TRL's dataset format",
                           description="Write Samples for another framework: `verl` (RL parquet: data_source, prompt, "
                                       "reward_model.ground_truth, extra_info; scored by longrl.rewards.compat.compute_score) "
                                       "or `trl` (conversational prompt + answers/task columns for longrl_reward; a "
                                       "`completion` column when every Sample carries meta.trace).")
    p.add_argument("--format", required=True, choices=["verl", "trl"], help="target framework")
    p.add_argument("input", metavar="FILE", help="Samples (.jsonl or .parquet)")
    p.add_argument("--out", required=True, metavar="FILE", help="verl: a .parquet file; trl: .jsonl or .parquet (written atomically)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows (reported) instead of failing")
    p.set_defaults(handler=run_export)

    p = actions.add_parser("stats", help="counts and length percentiles per task",
                           description="Counts and length percentiles per task: prompt tokens with --tokenizer, "
                                       "else context words and characters.")
    p.add_argument("input", metavar="FILE", help="Samples (.jsonl or .parquet)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path, hub name, or builtin:tiny-base")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows (reported) instead of failing")
    p.set_defaults(handler=run_stats)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _tokenizer(name: str | None):
    if name is None:
        # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
        from longrl.models.tokenizer import load_default_tokenizer

        return load_default_tokenizer()
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.config.model import ModelConfig
    from longrl.models.loading import load_tokenizer

    return load_tokenizer(ModelConfig(path=name))


def run_synth(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info, progress_bar
    from longrl.data.io import write_samples
    from longrl.data.synthetic import FAMILIES, plan_knobs, synthesize

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in tasks:
        if task not in FAMILIES:
            raise UserError(f"--tasks: unknown family {task!r}; known: {', '.join(FAMILIES.names())}")
    if args.n < 1:
        raise UserError(f"--n {args.n}: must be at least 1")
    for task in tasks:  # --length, --hops, --distractors: refused before the tokenizer loads
        plan_knobs(task, args.length, args.hops, args.distractors)
    tokenizer = _tokenizer(args.tokenizer)
    with progress_bar(args.n, f"synthesizing {args.n} samples") as advance:
        samples = synthesize(tasks, args.n, args.length, args.seed, args.hops, args.distractors, tokenizer,
                             progress=lambda i: advance())
    write_samples(args.out, samples)
    info(f"wrote {len(samples)} samples to {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info
    from longrl.data.importers import IMPORTERS
    from longrl.data.io import write_samples

    if args.format not in IMPORTERS:
        raise UserError(f"--format: unknown format {args.format!r}; known: {', '.join(IMPORTERS.names())}")
    loaded = IMPORTERS.get(args.format)(args.input, skip_bad=args.skip_bad)
    write_samples(args.out, loaded.samples)
    for message in loaded.skipped:
        info(f"skipped: {message}")
    info(f"imported {len(loaded.samples)} of {len(loaded.samples) + len(loaded.skipped)} rows from {args.input} "
         f"({len(loaded.skipped)} skipped) into {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from pathlib import Path

    from longrl.console import info
    from longrl.data.exporters import EXPORTERS
    from longrl.data.io import read_samples

    loaded = read_samples(args.input, skip_bad=args.skip_bad)
    for message in loaded.skipped:
        info(f"skipped: {message}")
    written = EXPORTERS.get(args.format)(loaded.samples, Path(args.out))
    info(f"exported {written} samples from {args.input} to {args.out} ({args.format} format)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info, print_table
    from longrl.data.io import read_samples
    from longrl.data.stats import PERCENTILES, length_table

    loaded = read_samples(args.input, skip_bad=args.skip_bad)
    if loaded.skipped:
        info(f"skipped {len(loaded.skipped)} malformed rows; first: {loaded.skipped[0]}")
    tokenizer = _tokenizer(args.tokenizer) if args.tokenizer else None
    table = length_table(loaded.samples, tokenizer)
    heads = [f"p{p}" if p < 100 else "max" for p in PERCENTILES]
    rows = []
    for task, entry in table.items():
        for metric, values in entry.items():
            if metric != "count":
                rows.append([task, entry["count"], metric, *[round(v) for v in values]])
    print_table(f"{args.input}: {len(loaded.samples)} samples", ["task", "count", "length", *heads], rows)
    return 0
