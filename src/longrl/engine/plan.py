"""A phase's memory on N GPUs of M GiB, whether it fits, and the micro-batch and checkpointing that make it fit.

    spec = PhaseSpec("p2_60k", "rl", prompt_len=60000, response_len=10000, group_size=8, micro_batch_tokens=72000,
                     checkpointing=True, chunk_tokens=1024, groups_per_batch=1, reference=False)
    result = plan_phase(shape, spec, Layout(gpus=32), gpu_memory_gib=80)
    result.fits, result.update.total, result.proposal      # {"train.micro_batch_tokens": 71680, ...}

`longrl plan` (cli/plan.py) builds the specs from a config (SFT, then each curriculum phase with
its overrides) and prints the tables. An update micro-batch is planned for its worst case: the
longest prompt with completions filling the rest of the token budget, or short prompts (a tenth
of the budget) with completions filling the rest (completion tokens keep more than prompt tokens).
A usable fraction (`USABLE`) of each GPU's memory is planned for, the rest is left to the CUDA
context and the allocator's fragmentation.

Each phase runs on its own layout: `train.sequence_parallel` / `sft.sequence_parallel` (Ulysses: each
sequence split over SP ranks; the world must be a multiple of SP and the attention heads too) and
`train.offload` / `sft.offload` (states in host memory: `PhasePlan.host` bytes per rank). With
`rollout.backend: server` the rollout runs in the server, whose memory (weights over its tensor-parallel
GPUs, KV cache, CUDA graphs) the planner does not know: the rollout column is then what the trainer keeps
on the GPU meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from longrl.engine.memory import (
    Estimate,
    GiB,
    Layout,
    host_states,
    rollout_memory,
    sft_memory,
    states,
    train_memory,
)
from longrl.errors import ConfigError
from longrl.models.shapes import Shape

USABLE = 0.9          # planned fraction of a GPU's memory
STEP = 1024           # proposed token budgets are multiples of this


@dataclass(frozen=True)
class PhaseSpec:
    """What a phase asks of each GPU (from the config)."""

    name: str
    kind: str                      # "rl" or "sft"
    prompt_len: int                # longest prompt (rl: rollout.max_input_tokens; sft: a packed row's length)
    response_len: int              # response limit (rl); 0 for sft
    group_size: int                # G (rl)
    micro_batch_tokens: int        # train.micro_batch_tokens (rl) / sft.micro_batch_tokens (sft)
    checkpointing: bool            # model.gradient_checkpointing
    chunk_tokens: int              # train.logprob_chunk_tokens (rl)
    groups_per_batch: int = 1      # rollout.groups_per_batch (rl)
    reference: bool = False        # a reference policy is loaded (algo.kl_coef > 0 or algo.track_kl)
    logits_chunk_mb: float = 256.0  # sft.logits_chunk_mb (sft)
    budget_key: str | None = None  # the config key of micro_batch_tokens; None = train.* (rl) / sft.* (sft)
    sp: int = 1                    # train.sequence_parallel (rl) / sft.sequence_parallel (sft)
    offload_params: bool = False   # train.offload.params / sft.offload.params
    offload_optimizer: bool = False  # train.offload.optimizer / sft.offload.optimizer
    server: bool = False           # rollout.backend == "server": the rollout runs outside the trainer


@dataclass
class PhasePlan:
    spec: PhaseSpec
    update: Estimate                       # the update (or SFT) micro-batch as configured
    rollout: Estimate | None               # rl phases
    usable: float                          # bytes planned per GPU
    proposal: dict[str, object] = field(default_factory=dict)   # settings that fit (empty: none does)
    activations: dict[str, float] = field(default_factory=dict)  # activations with and without checkpointing
    host: float = 0.0                      # bytes of offloaded state per rank in host memory
    advice: str = ""                       # what to change when no setting of the phase's own fits

    @property
    def fits(self) -> bool:
        return self.update.total <= self.usable and (self.rollout is None or self.rollout.total <= self.usable)


def update_estimate(shape: Shape, spec: PhaseSpec, layout: Layout, budget: int, checkpointing: bool) -> Estimate:
    """The worst micro-batch of `budget` tokens (see the module docstring)."""
    if spec.kind == "sft":
        return sft_memory(shape, layout, budget, budget, checkpointing, spec.logits_chunk_mb)
    longest = min(spec.prompt_len, max(budget - spec.response_len, 1))
    scenarios = [(longest, max(budget - longest, spec.response_len), spec.prompt_len)]
    short = max(1, min(spec.prompt_len, budget // 10))
    scenarios.append((short, max(budget - short, spec.response_len), short))
    estimates = [train_memory(shape, layout, p, c, length, checkpointing, spec.chunk_tokens, spec.reference)
                 for p, c, length in scenarios]
    return max(estimates, key=lambda e: e.total)


def minimum_budget(spec: PhaseSpec) -> int:
    """The smallest token budget that runs: one longest prompt and one longest completion (a split group)."""
    return spec.prompt_len + spec.response_len if spec.kind == "rl" else min(spec.micro_batch_tokens, spec.prompt_len)


def check_sequence_parallel(sp: int, world: int, heads: int, key: str) -> None:
    """ConfigError naming `key` unless `sp` ranks can split each sequence: world and heads both multiples of it."""
    if world % sp:
        raise ConfigError(f"{key}={sp}: the {world} ranks cannot form sequence-parallel groups of {sp} "
                          f"(the number of GPUs must be a multiple of it)")
    if heads % sp:
        raise ConfigError(f"{key}={sp}: the model's {heads} attention heads cannot be split over {sp} ranks "
                          f"(Ulysses gives each rank heads / {key}); use a divisor of {heads}")


def phase_layout(spec: PhaseSpec, layout: Layout) -> Layout:
    """`layout` with the phase's sequence parallelism and offload (offload implies torchrun + FSDP2)."""
    return replace(layout, sp=spec.sp, offload_params=spec.offload_params, offload_optimizer=spec.offload_optimizer)


def served_rollout(shape: Shape, layout: Layout, reference: bool) -> Estimate:
    """What the trainer holds on each GPU while a server rolls out: its resident states, nothing gathered."""
    return Estimate({**states(shape, layout, reference, grads=False), "compute copies": 0.0})


def plan_phase(shape: Shape, spec: PhaseSpec, layout: Layout, gpu_memory_gib: float) -> PhasePlan:
    """Estimates as configured, whether they fit, and a proposal (largest budget that fits, checkpointing if needed)."""
    usable = USABLE * gpu_memory_gib * GiB
    layout = phase_layout(spec, layout)
    update = update_estimate(shape, spec, layout, spec.micro_batch_tokens, spec.checkpointing)
    rollout = None
    if spec.kind == "rl" and spec.server:
        rollout = served_rollout(shape, layout, spec.reference)
    elif spec.kind == "rl":
        rollout = rollout_memory(shape, layout, spec.prompt_len, spec.response_len, spec.group_size,
                                 spec.groups_per_batch, spec.reference)
    plan = PhasePlan(spec, update, rollout, usable, host=host_states(shape, layout, spec.reference))
    if spec.kind == "rl" and not spec.server:
        one = rollout_memory(shape, layout, spec.prompt_len, spec.response_len, spec.group_size, 1, spec.reference)
        if one.total > usable:
            plan.advice = (f"the in-process rollout of one group needs {one.total / GiB:.1f} GiB (full weights "
                           f"{one.parts['compute copies'] / GiB:.1f}, KV cache {one.parts['rollout KV'] / GiB:.1f}): "
                           "roll out from a server (rollout.backend=server), or shorten the limits")
    plan.activations = {
        "without checkpointing": update_estimate(shape, spec, layout, spec.micro_batch_tokens, False).parts["activations"],
        "with checkpointing": update_estimate(shape, spec, layout, spec.micro_batch_tokens, True).parts["activations"]}
    low = minimum_budget(spec)
    high = max(spec.micro_batch_tokens, spec.prompt_len + spec.group_size * spec.response_len if spec.kind == "rl" else 0)
    for checkpointing in (False, True):
        budget = largest_budget(shape, spec, layout, usable, checkpointing, low, high)
        if budget is not None:
            key = spec.budget_key or ("train.micro_batch_tokens" if spec.kind == "rl" else "sft.micro_batch_tokens")
            plan.proposal = {key: budget, "model.gradient_checkpointing": checkpointing}
            break
    if rollout is not None and plan.proposal and spec.server:
        if rollout.total > usable:
            plan.proposal = {}
    elif rollout is not None and plan.proposal:
        def rollout_bytes(groups: int) -> float:
            return rollout_memory(shape, layout, spec.prompt_len, spec.response_len, spec.group_size, groups,
                                  spec.reference).total

        groups = spec.groups_per_batch
        while groups > 1 and rollout_bytes(groups) > usable:
            groups //= 2
        if rollout_bytes(groups) > usable:
            plan.proposal = {}
        elif groups != spec.groups_per_batch:
            plan.proposal["rollout.groups_per_batch"] = groups
    return plan


def largest_budget(shape: Shape, spec: PhaseSpec, layout: Layout, usable: float, checkpointing: bool, low: int,
                   high: int) -> int | None:
    """The largest multiple of STEP in [low, high] (at least `low`) whose worst micro-batch fits; None if `low` does not."""
    fits = lambda b: update_estimate(shape, spec, layout, b, checkpointing).total <= usable  # noqa: E731
    if not fits(low):
        return None
    best, top = low, max(low, (high // STEP) * STEP)
    lo, hi = (low + STEP - 1) // STEP, top // STEP                  # search multiples of STEP
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid * STEP):
            best, lo = max(best, mid * STEP), mid + 1
        else:
            hi = mid - 1
    return best
