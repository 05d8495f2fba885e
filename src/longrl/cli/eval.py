"""`longrl eval`: score a model on the DocQA benchmarks (or synthetic suites) with the published protocol.

    longrl eval --model http://127.0.0.1:8000/v1 --model-name QwenLong-L1-32B --tokenizer Tongyi-Zhiwen/QwenLong-L1-32B \\
        --benchmarks docmath,frames,2wikimqa,hotpotqa,musique,narrativeqa,qasper --data-dir data/docqa --out runs/eval \\
        --judge-url https://api.deepseek.com/v1 --judge-model deepseek-chat
    longrl eval --config configs/eval_docqa7.yaml --out runs/eval eval.model=runs/x/final eval.samples=4
    longrl eval --model builtin:tiny-base --benchmarks synthetic-512,synthetic-2048 --out runs/eval-tiny
    longrl eval --protocol published ...   # prompts and rule scoring exactly as the published scripts

`--protocol` (eval.protocol): `strict` (default) builds prompts and scores with longrl's rules
(published holes closed); `published` joins documents, truncates and scores as the published
QwenLong-L1 scripts do, for numbers comparable with the paper's table. Reports name the protocol.

Flags are `eval.*` overrides of the config file, applied before the trailing `key=value` ones
(so `--judge-url U --judge-model M eval.judge.concurrency=8` works). Rerunning the same command on the
same --out resumes: finished items are read back, not asked again. `--download` fetches missing
benchmark files into --data-dir from the parquet files the hub serves (no extra package needed).
A server is evaluated with the tokenizer named by --tokenizer, else through the server's own
`/tokenize` endpoint (vLLM, SGLang).
Writes OUT/config.yaml, OUT/<benchmark>/samples.jsonl, OUT/summary.json, OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from longrl.cli.args import add_config_arguments, follow_progress_setting
from longrl.cli.config import add_config_help
from longrl.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (local or server) on the DocQA benchmarks; resumable",
                       description="Evaluate a local model or an OpenAI-compatible server on the DocQA benchmarks "
                                   "(or synthetic-<length> suites) with the published protocol. `longrl ls evals` lists them.",
                       add_help=False)
    add_config_help(p, reads=["run", "model", "reward", "eval"], detail=[("eval", 1)])
    add_config_arguments(p, example="eval.samples=4 eval.judge.concurrency=8")
    p.add_argument("--model", metavar="PATH_OR_URL", help="local model folder / builtin:NAME, or http(s) URL of a server (…/v1)")
    p.add_argument("--model-name", metavar="NAME", help="model name sent to the server (default: first of GET /models)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="tokenizer for counting and truncating prompts (a server without it: its /tokenize endpoint)")
    p.add_argument("--benchmarks", metavar="A,B", help="comma-separated benchmark names (default: the seven DocQA sets)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with one JSONL per benchmark (docmath.jsonl, ...)")
    p.add_argument("--judge-url", metavar="URL", help="OpenAI-compatible judge server (…/v1); with --judge-model")
    p.add_argument("--judge-model", metavar="NAME", help="judge model name (paper: DeepSeek-V3, i.e. deepseek-chat)")
    p.add_argument("--protocol", choices=["strict", "published"],
                   help="prompts and rule scoring: strict (default) or published (as the paper's evaluation scripts)")
    p.add_argument("--samples", type=int, metavar="N", help="completions per item (pass@1 averaged over them)")
    p.add_argument("--limit", type=int, metavar="N", help="first N items of each benchmark")
    p.add_argument("--download", action="store_true",
                   help="fetch missing benchmark files into --data-dir (the parquet files the hub serves)")
    p.set_defaults(handler=run_eval)


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The `eval.*` overrides the command-line flags stand for (JSON values: valid YAML, never re-typed)."""
    values: dict = {}
    for flag in ("model", "model_name", "tokenizer", "data_dir", "samples", "limit", "protocol"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.benchmarks is not None:
        values["benchmarks"] = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    if (args.judge_url is None) != (args.judge_model is None):
        raise ConfigError("--judge-url and --judge-model go together: pass both, or neither")
    if args.judge_url is not None:
        values["judge"] = {"base_url": args.judge_url, "model": args.judge_model}
    return [f"eval.{key}={json.dumps(value)}" for key, value in values.items()]


def check_held_out(cfg) -> None:
    """Synthetic eval suites must use a seed no training source uses (else they repeat training items)."""
    from longrl.config import data_sources  # lazy: config loads only when a command runs

    if not any(b.startswith("synthetic-") for b in cfg.eval.benchmarks):
        return
    clashes = [s for s in data_sources(cfg) if s.synth is not None and s.synth.seed == cfg.eval.synthetic.seed]
    if clashes:
        raise ConfigError(f"eval.synthetic.seed={cfg.eval.synthetic.seed} is also a training data seed, so the synthetic "
                          "suites would repeat training items; pick another eval.synthetic.seed")


def run_eval(args: argparse.Namespace) -> int:
    # lazy: torch and the stage load only when this command runs (`longrl --help` stays fast)
    import torch

    from longrl.cli.names import check_names
    from longrl.config import load_config
    from longrl.console import info, start_run_log
    from longrl.eval.backends import build_backend, eval_tokenizer
    from longrl.eval.benchmarks import load_suites
    from longrl.eval.harness import build_reward, evaluate
    from longrl.eval.report import print_results
    from longrl.files import atomic_write_text, make_dirs
    from longrl.tracking import lock_run_dir, record_holder, to_yaml

    cfg = load_config(args.config, flag_overrides(args) + list(args.overrides))
    follow_progress_setting(cfg)
    check_names(cfg)
    check_held_out(cfg)
    out = Path(args.out)
    if out.is_dir():
        lock_run_dir(out)               # one evaluation per directory (released when the command ends)
    ev = cfg.eval
    if args.download:
        from longrl.eval.fetch import fetch_missing  # lazy: the download code loads only when asked for

        fetch_missing(ev.benchmarks, ev.data_dir)
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    tokenizer = eval_tokenizer(cfg)
    suites = load_suites(ev.benchmarks, ev.data_dir, ev.synthetic, ev.limit, tokenizer,   # files checked before the
                         protocol=ev.protocol)                                             # model loads
    backend = build_backend(cfg, tokenizer)
    label = getattr(backend, "base_url", None) or backend.name  # a server's model name is asked for on first use
    info(f"evaluating {label} (protocol: {ev.protocol}) on {', '.join(f'{n} ({len(s.samples)})' for n, s in suites.items())} -> {out}")

    def start() -> None:  # every protocol checked: the evaluation starts for real
        make_dirs(out)
        lock_run_dir(out)
        record_holder(out)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
        start_run_log(out)

    summary = evaluate(backend, tokenizer, suites, ev, build_reward(cfg), out, seed=cfg.run.seed,
                       progress=cfg.run.progress, on_start=start)
    print_results(summary)
    info(f"results: {out / 'results.md'}, {out / 'summary.json'}; per-sample rows under {out}/<benchmark>/samples.jsonl")
    return 0
