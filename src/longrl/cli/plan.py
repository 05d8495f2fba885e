"""`longrl plan --config FILE --gpus N --gpu-memory-gib M [key=value ...]`: memory per GPU of every phase, before launching.

    longrl plan --config configs/qwenlong_l1_14b.yaml --gpus 32 --gpu-memory-gib 80
    longrl plan --config configs/qwenlong_l1_1p5b.yaml --gpus 1 --gpu-memory-gib 80 --json plan.json

For pretraining (a `longrl pretrain` config), SFT (when `sft.data` is set) and each curriculum
phase (its overrides applied; or the single `rollout` limits of an RL config without phases; the
longest prompt is `rollout.max_input_tokens`, or what synthetic training data makes) it prints, in GiB (2^30 bytes) per GPU, the fp32 master weights, the bf16 copies
the math reads, gradients, AdamW state (all sharded 1/N under torchrun + FSDP2 when N > 1), the
reference policy, the activations of the worst update micro-batch with and without activation
checkpointing, the log-prob chunk, the attention score blocks and the rollout's KV cache; whether
each phase fits (90% of M); and the largest `train.micro_batch_tokens` (with checkpointing only if
needed) and `rollout.groups_per_batch` that fit. A phase that does not fit as configured is an
error (exit status 2) naming it and what to change. Each phase is planned with its
`train.sequence_parallel` / `sft.sequence_parallel` (Ulysses: a rank's share of each sequence, plus
the all-to-all buffers; it must divide --gpus and the attention heads) and `train.offload` /
`sft.offload` (the offloaded states leave the GPU; the host memory they take per rank and per node
is printed); with `rollout.backend: server` the rollout column is what the trainer keeps meanwhile
(the server's own memory is not planned). The last line lists what the plan cannot know. The model is read from its config.json (no
weights are loaded); estimates: engine/memory.py, checked against measured peaks by
`longrl bench memory`. A config that trains nothing (distill, evaluation) has nothing to plan (exit 0).

Units: every figure is GiB, and so is M: the memory a GPU's spec sheet gives ("80 GB" for an A100 or
H100 80GB, "141 GB" for an H200) is in practice GiB of HBM (nvidia-smi reports 81,920 MiB on an A100
80GB and 81,559 MiB, 79.6 GiB, on an H100 80GB), so pass that figure; the 10% left unplanned covers
what the driver reserves. `--gpu-memory-gb` is the same option under its earlier name.
"""

from __future__ import annotations

import argparse
import math

from longrl.cli.args import add_config_arguments, load_config_from_args

TEMPLATE_TOKENS = 64      # the prompt template around a synthetic document (question, instructions, chat frame)
PARTS = ["weights", "compute copies", "grads", "optimizer", "reference", "activations", "recompute", "block gradients",
         "embedding gradients", "log-prob chunk", "attention", "all-to-all", "optimizer step", "rollout KV",
         "rollout transient"]
UNKNOWN = ("not planned (the 10% left, or more): the CUDA context, NCCL's buffers, the caching allocator's "
           "fragmentation and what it keeps reserved between phases, a rollout server's own memory (weights over its "
           "tensor-parallel GPUs, KV cache, CUDA graphs) when it shares these GPUs, and host memory beyond the "
           "offloaded states (the full fp32 model each rank reads before sharding, pinned staging, the data)")


def register(sub) -> None:
    p = sub.add_parser("plan", help="memory per GPU of each phase on N GPUs; whether it fits; settings that fit",
                       description="Estimate the memory of SFT and every RL phase per GPU on --gpus GPUs of "
                                   "--gpu-memory-gib GiB (torchrun + FSDP2 when more than one), say whether each fits, "
                                   "and propose train.micro_batch_tokens, checkpointing and rollout.groups_per_batch; "
                                   "sequence parallelism and CPU offload are read from the config (train.*, sft.*).")
    add_config_arguments(p, out=False, config_required=True, example="train.micro_batch_tokens=8192 model.gradient_checkpointing=true")
    p.add_argument("--gpus", type=int, required=True, help="GPUs (ranks) the run uses, over all nodes")
    p.add_argument("--gpu-memory-gib", "--gpu-memory-gb", dest="gpu_memory_gib", type=float, required=True, metavar="GIB",
                   help="memory of one GPU in GiB: the figure on its spec sheet (80 for an A100/H100 80GB, 141 for an "
                        "H200), which is GiB in practice; every figure printed is GiB too. --gpu-memory-gb: the same option")
    p.add_argument("--torchrun", action="store_true",
                   help="plan for torchrun + FSDP2 even on one GPU (default: FSDP2 only when --gpus > 1)")
    p.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    p.set_defaults(handler=run_plan)


RL_SECTIONS = {"rollout", "algo", "train", "curriculum"}   # a config that sets any of these trains with RL


def trains_rl(cfg) -> bool:
    """The config describes an RL run (`longrl rl` / `pipeline`): it sets an RL section or its training data."""
    return bool(RL_SECTIONS & cfg.model_fields_set) or "train" in cfg.data.model_fields_set


def longest_prompt(cfg, name: str) -> int:
    """`rollout.max_input_tokens`, or the longest prompt synthetic training data can make (+10% and the
    template); ConfigError for file data without a limit (the planner reads no data)."""
    from longrl.errors import ConfigError  # lazy: as in phase_specs

    if cfg.rollout.max_input_tokens is not None:
        return cfg.rollout.max_input_tokens
    if cfg.data.train and all(source.synth is not None for source in cfg.data.train):
        return max(math.ceil(1.1 * source.synth.length) + TEMPLATE_TOKENS for source in cfg.data.train)
    raise ConfigError(f"phase {name!r}: rollout.max_input_tokens is not set and data.train reads files; the plan "
                      "needs the longest prompt: set rollout.max_input_tokens (longer documents are middle-truncated)")


def plan_model(cfg):
    """The model a config trains: `model`, or for a `longrl pretrain` config the tiny architecture it builds."""
    if "pretrain" not in cfg.model_fields_set:
        return cfg.model
    return cfg.model.model_copy(update={"path": "random", "tiny": cfg.pretrain.architecture})


def phase_specs(cfg) -> list:
    """The PhaseSpecs of a config: pretraining (a `pretrain` config), SFT when it has data, then each
    curriculum phase (or the one RL run of an RL config). [] for configs that train nothing (distill, eval)."""
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.curriculum.phases import phase_config
    from longrl.engine.plan import PhaseSpec

    specs = []
    if "pretrain" in cfg.model_fields_set:
        p = cfg.pretrain
        specs.append(PhaseSpec("pretrain", "sft", prompt_len=p.row_tokens, response_len=0, group_size=1,
                               micro_batch_tokens=p.micro_batch_tokens or p.batch_tokens,
                               checkpointing=cfg.model.gradient_checkpointing, chunk_tokens=0,
                               logits_chunk_mb=p.logits_chunk_mb, budget_key="pretrain.micro_batch_tokens"))
    if cfg.sft.data:
        specs.append(PhaseSpec("sft", "sft", prompt_len=cfg.sft.row_tokens, response_len=0, group_size=1,
                               micro_batch_tokens=cfg.sft.micro_batch_tokens or cfg.sft.batch_tokens,
                               checkpointing=cfg.model.gradient_checkpointing, chunk_tokens=0,
                               logits_chunk_mb=cfg.sft.logits_chunk_mb, sp=cfg.sft.sequence_parallel,
                               offload_params=cfg.sft.offload.params, offload_optimizer=cfg.sft.offload.optimizer))
    phases = [(p.name, phase_config(cfg, p, init_from=cfg.model.path, steps=1)) for p in cfg.curriculum.phases]
    for name, c in phases or ([("rl", cfg)] if trains_rl(cfg) else []):
        specs.append(PhaseSpec(name, "rl", prompt_len=longest_prompt(c, name), response_len=c.rollout.max_new_tokens,
                               group_size=c.rollout.group_size, micro_batch_tokens=c.train.micro_batch_tokens,
                               checkpointing=c.model.gradient_checkpointing, chunk_tokens=c.train.logprob_chunk_tokens,
                               groups_per_batch=c.rollout.groups_per_batch,
                               reference=c.algo.kl_coef > 0 or c.algo.track_kl, sp=c.train.sequence_parallel,
                               offload_params=c.train.offload.params, offload_optimizer=c.train.offload.optimizer,
                               server=c.rollout.backend == "server"))
    return specs


def layout_note(spec) -> str:
    """`, SP 8, offload params+optimizer` for a phase that splits sequences or offloads; "" otherwise."""
    offload = [name for name, on in (("params", spec.offload_params), ("optimizer", spec.offload_optimizer)) if on]
    return (f", SP {spec.sp}" if spec.sp > 1 else "") + (f", offload {'+'.join(offload)}" if offload else "")


def run_plan(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import print_table
    from longrl.engine.memory import GiB, Layout
    from longrl.engine.plan import USABLE, check_sequence_parallel, plan_phase
    from longrl.errors import ConfigError
    from longrl.files import atomic_write_json
    from longrl.models.shapes import architecture
    from longrl.rl.groups import check_split

    if args.gpus < 1 or args.gpu_memory_gib <= 0:
        raise ConfigError("--gpus must be >= 1 and --gpu-memory-gib > 0")
    cfg = load_config_from_args(args)
    specs = phase_specs(cfg)
    if not specs:
        print(f"{args.config}: nothing to train (no pretrain, SFT or RL stage: a distill or evaluation config); "
              "no GPU memory to plan")
        return 0
    if any(spec.kind == "rl" for spec in specs):
        check_split(cfg.train.prompts_per_step, cfg.train.mini_batches, args.gpus)
    model = plan_model(cfg)
    shape = architecture(model)
    for spec in specs:
        check_sequence_parallel(spec.sp, args.gpus, shape.heads,
                                "sft.sequence_parallel" if spec.name == "sft" else "train.sequence_parallel")
    compute = "fp32" if model.dtype == "float32" or (model.dtype == "auto" and model.path == "random") else "bf16"
    layout = Layout(gpus=args.gpus, compute=compute, fsdp=True if args.torchrun else None)
    how = f"torchrun + FSDP2, {args.gpus} ranks" if layout.sharded else "one process"
    print(f"{model.path}: {shape.params / 1e9:.2f}B parameters, {compute} math, fp32 master weights; {how}; "
          f"{args.gpu_memory_gib:g} GiB per GPU ({100 * USABLE:.0f}% planned)")
    plans = [plan_phase(shape, spec, layout, args.gpu_memory_gib) for spec in specs]
    failing = []
    for plan in plans:
        s = plan.spec
        columns = ["GiB per GPU", "update", "rollout"] if plan.rollout is not None else ["GiB per GPU", "update"]
        rows = []
        for part in PARTS:
            values = [plan.update.parts.get(part, 0.0)] + ([plan.rollout.parts.get(part, 0.0)] if plan.rollout else [])
            if any(values):
                rows.append([part, *[v / GiB for v in values]])
        rows.append(["peak", plan.update.total / GiB] + ([plan.rollout.total / GiB] if plan.rollout else []))
        title = (f"{s.name}: prompts <= {s.prompt_len}, responses <= {s.response_len}, G={s.group_size}, "
                 f"micro_batch_tokens {s.micro_batch_tokens}, checkpointing {'on' if s.checkpointing else 'off'}"
                 if s.kind == "rl" else f"{s.name}: micro-batches of {s.micro_batch_tokens} tokens, "
                 f"checkpointing {'on' if s.checkpointing else 'off'}") + layout_note(s)
        print_table(title, columns, rows)
        if s.server:
            print("  rollout: by the server (rollout.backend=server); the column is what the trainer keeps on each GPU "
                  "meanwhile, the server's own memory is not planned")
        if plan.host:
            per_node = plan.host * min(args.gpus, 8)
            print(f"  offloaded to host memory: {plan.host / GiB:.3g} GiB per rank ({per_node / GiB:.3g} GiB per node "
                  f"of {min(args.gpus, 8)} GPUs)")
        acts = ", ".join(f"{k} {v / GiB:.3g} GiB" for k, v in plan.activations.items())
        print(f"  activations of the worst micro-batch: {acts}")
        proposal = (", ".join(f"{k}={v}" for k, v in plan.proposal.items())
                    or f"none ({plan.advice or 'use more GPUs, or lower the limits'})")
        print(f"  {'fits' if plan.fits else 'DOES NOT FIT'}; settings that fit: {proposal}")
        if not plan.fits:
            failing.append(f"{s.name} (needs {max(plan.update.total, plan.rollout.total if plan.rollout else 0) / GiB:.1f} GiB;"
                           f" fits with: {proposal})")
    if args.json:
        atomic_write_json(args.json, {
            "model": model.path, "params": shape.params, "gpus": args.gpus, "unit": "GiB",
            "gpu_memory_gib": args.gpu_memory_gib,
            "phases": [{"name": p.spec.name, "fits": p.fits, "update_gib": p.update.total / GiB,
                        "sequence_parallel": p.spec.sp, "offload": {"params": p.spec.offload_params,
                                                                    "optimizer": p.spec.offload_optimizer},
                        "rollout_by_server": p.spec.server, "host_gib_per_rank": p.host / GiB,
                        "rollout_gib": p.rollout.total / GiB if p.rollout else None,
                        "update": {k: v / GiB for k, v in p.update.parts.items()},
                        "rollout": {k: v / GiB for k, v in p.rollout.parts.items()} if p.rollout else None,
                        "activations_gib": {k: v / GiB for k, v in p.activations.items()},
                        "proposal": p.proposal} for p in plans]})
    print(UNKNOWN)
    if failing:
        raise ConfigError(f"does not fit {args.gpus} x {args.gpu_memory_gib:g} GiB: " + "; ".join(failing))
    return 0
