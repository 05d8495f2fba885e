"""`longrl ls` (registries) and `longrl validate` (a config, without loading any model)."""

from __future__ import annotations

import argparse
import importlib

# kind -> "module:attribute" of its Registry; listed by `longrl ls KIND`.
REGISTRIES = {
    "tasks": "longrl.data.tasks:TASKS",
    "families": "longrl.data.synthetic:FAMILIES",
    "formats": "longrl.data.importers:IMPORTERS",
    "benchmarks": "longrl.bench:BENCHMARKS",
    "advantages": "longrl.rl.algos:ADVANTAGES",
    "verifiers": "longrl.rewards.verifiers:VERIFIERS",
    "evals": "longrl.eval.benchmarks:BENCHMARKS",
}


def register(sub) -> None:
    p = sub.add_parser("ls", help="list the names a config can use", description="List a registry's names.")
    p.add_argument("kind", choices=sorted(REGISTRIES))
    p.set_defaults(handler=run_ls)

    p = sub.add_parser("validate", help="check a config file and its overrides without loading models",
                       description="Resolve a config (YAML + overrides) and the registry names it uses; exit 0 if valid.")
    from longrl.cli import add_config_arguments

    add_config_arguments(p, out=False, config_required=True)
    p.set_defaults(handler=run_validate)


def registry(kind: str):
    if kind == "benchmarks":
        from longrl.bench import load_benchmarks

        return load_benchmarks()
    module, _, attr = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def run_ls(args: argparse.Namespace) -> int:
    for name in registry(args.kind).names():
        print(name)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from longrl.cli import load_config_from_args
    from longrl.config import check_names

    cfg = load_config_from_args(args)
    check_names(cfg)
    print(f"{args.config}: ok")
    return 0
