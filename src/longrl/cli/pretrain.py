"""`longrl pretrain --config FILE --out DIR`: make the tiny base model (resumable)."""

from __future__ import annotations

import argparse

from longrl.cli.args import add_config_arguments, load_config_from_args


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="make the tiny base model (synthetic short-document reasoning, resumable)",
                       description="Train a random-init tiny Qwen2 model (pretrain.architecture) on fresh synthetic "
                                   "items, score it on held-out items and save it to OUT/final with PROVENANCE.json. "
                                   "Rerunning on the same --out resumes.")
    add_config_arguments(p, example="pretrain.steps=500 pretrain.architecture.num_hidden_layers=2")
    p.set_defaults(handler=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info, print_table
    from longrl.pretrain import pretrain  # lazy: torch

    cfg = load_config_from_args(args)
    provenance = pretrain(cfg, args.out)
    acc, before = provenance["accuracy"], provenance["accuracy_before_cast"]
    table = [["overall", acc["overall"], before["overall"]]]
    table += [[f"task {k}", v, before["by_task"][k]] for k, v in acc["by_task"].items()]
    table += [[f"length {k}", v, before["by_length"][k]] for k, v in acc["by_length"].items()]
    if "retrieval" in provenance:
        table.append(["retrieval: value accuracy (teacher-forced, lookup)", provenance["retrieval"]["value_accuracy"],
                      provenance["retrieval_before_cast"]["value_accuracy"]])
    dtype = provenance["dtype"]
    print_table(f"held-out greedy accuracy, % (n={acc['n']})", ["", f"saved ({dtype})", "before save"], table)
    if abs(acc["overall"] - before["overall"]) > 2.0:
        info(f"pretrain: warning: accuracy moved from {before['overall']}% to {acc['overall']}% when saved in "
             f"{dtype}; consider pretrain.dtype_on_save: float32")
    info(f"pretrain: model written to {args.out}/final ({provenance['train_wall_s']} s of training)")
    return 0
