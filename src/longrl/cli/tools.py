"""`longrl ls` (registries) and `longrl validate` (a config, without loading any model)."""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args
from longrl.cli.bench import BENCH_MODULES, load_benchmarks
from longrl.registry import declared_names

KINDS = ["advantages", "benchmarks", "evals", "families", "formats", "tasks", "verifiers"]


def register(sub) -> None:
    p = sub.add_parser("ls", help="list the names a config can use", description="List a registry's names.")
    p.add_argument("kind", choices=KINDS, help="the registry: " + ", ".join(KINDS))
    p.set_defaults(handler=run_ls)

    p = sub.add_parser("validate", help="check a config file and its overrides without loading models",
                       description="Resolve a config (YAML + overrides) and the registry names it uses; exit 0 if valid.")
    add_config_arguments(p, out=False, config_required=True)
    p.set_defaults(handler=run_validate)


# Registries whose modules import torch: `ls` reads their names from the source (registry.declared_names),
# so it answers in a fraction of a second; (modules, registry variable).
DECLARED = {
    "advantages": (["longrl.rl.algos"], "ADVANTAGES"),
    "benchmarks": (BENCH_MODULES, "BENCHMARKS"),
}


def names_of(kind: str) -> list[str]:
    """The names `longrl ls KIND` lists. Neither torch nor transformers is imported (a test checks)."""
    if kind in DECLARED:
        modules, variable = DECLARED[kind]
        return sorted(name for module in modules for name in declared_names(module, variable))
    return registry(kind).names()


def registry(kind: str):
    """The registry behind `longrl ls KIND` (each import is lazy: only the one asked for loads)."""
    if kind == "tasks":
        # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
        from longrl.data.tasks import TASKS

        return TASKS
    if kind == "families":
        # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
        from longrl.data.synthetic import FAMILIES

        return FAMILIES
    if kind == "formats":
        # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
        from longrl.data.importers import IMPORTERS

        return IMPORTERS
    if kind == "benchmarks":
        return load_benchmarks()
    if kind == "advantages":
        # lazy: stage code (and torch) loads only when asked for the objects themselves
        from longrl.rl.algos import ADVANTAGES

        return ADVANTAGES
    if kind == "verifiers":
        # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
        from longrl.rewards.verifiers import VERIFIERS

        return VERIFIERS
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.eval.benchmarks import BENCHMARKS

    return BENCHMARKS


def run_ls(args: argparse.Namespace) -> int:
    for name in names_of(args.kind):
        print(name)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    check_model_sizes(cfg)
    print(f"{args.config}: ok")
    return 0


def check_model_sizes(cfg) -> None:
    """The response limits of an RL config (each curriculum phase's) against the model's context, when the
    model's config can be read offline (nothing is downloaded; memory is checked when the run starts)."""
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.cli.plan import trains_rl
    from longrl.curriculum.phases import phase_config
    from longrl.models.shapes import context_length
    from longrl.rl.sizes import check_context

    if not trains_rl(cfg):
        return
    context = context_length(cfg.model)
    phases = [(f"phase {p.name!r}", phase_config(cfg, p, init_from=cfg.model.path, steps=1)) for p in cfg.curriculum.phases]
    for where, phase_cfg in phases or [("", cfg)]:
        check_context(phase_cfg, context, where)
