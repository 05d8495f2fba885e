"""CPU offload under torchrun (`train.offload`, `sft.offload`): what lives in host memory between uses.

    check_offload(cfg.train.offload, dist, "train.offload")    # ConfigError without torchrun
    policy = offload_policy(cfg.train.offload, dist)           # fully_shard(..., offload_policy=policy)
    keep_optimizer_state_on_cpu(optimizer, cfg.train.offload)  # AdamW moments parked on the CPU between steps

Two settings, as in verl's `param_offload` / `optimizer_offload` (the official QwenLong-L1-32B script sets both):

  params: true, optimizer: true
      FSDP2's `CPUOffloadPolicy`: each rank's shards of the fp32 master weights and of their
      gradients live on the CPU. A layer's shards are copied to the GPU just before it is
      all-gathered for its forward (and again for its backward); its reduce-scattered gradients are
      copied back to the CPU. AdamW's state is created beside the parameters, so it lives on the CPU
      and the optimizer step (and the gradient-norm clip) runs there. The GPU holds the gathered
      layers (in the compute dtype), their gradients and the activations only.
  params: false, optimizer: true
      The parameters and gradients stay on the GPU; AdamW's moments are moved to the GPU just
      before each optimizer step and back to the CPU right after it (`keep_optimizer_state_on_cpu`),
      so they take no GPU memory during the rollout, the log-prob forwards and the backward. The
      step itself runs on the GPU (a step on the CPU would copy every gradient and weight both ways).
  params: true, optimizer: false
      refused by the config (`OffloadConfig`): with the parameters on the CPU, AdamW's state and
      step are there too.

Offload needs FSDP2, so it needs torchrun; one process is refused rather than silently ignored (verl,
too, offloads FSDP shards only). One GPU can offload with `torchrun --nproc_per_node 1`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from longrl.config.model import OffloadConfig
from longrl.engine.distributed import Dist
from longrl.errors import ConfigError

STEP_KEY = "step"        # AdamW's step count: a CPU scalar by design (torch keeps it there unless capturable)


def wanted(offload: OffloadConfig | None) -> bool:
    return offload is not None and (offload.params or offload.optimizer)


def check_offload(offload: OffloadConfig | None, dist: Dist, key: str) -> None:
    """ConfigError naming `key` when offload is asked of a process not started by torchrun."""
    if wanted(offload) and not dist.launched:
        raise ConfigError(f"{key}: CPU offload moves FSDP2 shards, which exist only under torchrun; start the run "
                          f"with `torchrun --nproc_per_node N -m longrl.cli ...` (N = 1 on one GPU), or set "
                          f"{key}.params=false {key}.optimizer=false")


def offload_policy(offload: OffloadConfig | None, dist: Dist):
    """The `offload_policy` of `fully_shard`: CPUOffloadPolicy when parameters are offloaded, else none."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy  # lazy: FSDP is only needed under torchrun

    if offload is None or not offload.params:
        return OffloadPolicy()
    return CPUOffloadPolicy(pin_memory=dist.device.type == "cuda")   # pinned host memory: async copies to the GPU


def offloaded_params(module: torch.nn.Module) -> bool:
    """FSDP2 keeps `module`'s parameter shards on the CPU (its CPUOffloadPolicy is applied)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule  # lazy: FSDP is only needed under torchrun

    groups = [m._get_fsdp_state()._fsdp_param_group for m in module.modules() if isinstance(m, FSDPModule)]
    groups = [g for g in groups if g is not None]
    return bool(groups) and all(isinstance(g.offload_policy, CPUOffloadPolicy) for g in groups)


def move_optimizer_state(optimizer: torch.optim.Optimizer, where: Callable[[torch.Tensor], torch.device]) -> None:
    """Move each parameter's optimizer state tensors (not AdamW's CPU step count) to `where(param)`."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            device = where(param)
            for key, value in state.items():
                if key != STEP_KEY and isinstance(value, torch.Tensor) and value.device != device:
                    state[key] = value.to(device)


def park(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state to the CPU (also after a checkpoint load, which puts it beside the parameters)."""
    move_optimizer_state(optimizer, lambda param: torch.device("cpu"))


def fetch(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state to each parameter's device, for the step."""
    move_optimizer_state(optimizer, lambda param: param.device)


def keep_optimizer_state_on_cpu(optimizer: torch.optim.Optimizer, offload: OffloadConfig | None) -> bool:
    """With `optimizer` offload and parameters on the GPU: state on the CPU except during `optimizer.step()`.

    Returns whether hooks were installed (parameters offloaded with FSDP2 need none: their state is already
    on the CPU, where they are).
    """
    if offload is None or not offload.optimizer or offload.params:
        return False
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: fetch(opt))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: park(opt))
    return True


def after_load(optimizer: torch.optim.Optimizer, offload: OffloadConfig | None) -> None:
    """Park the optimizer state again after a checkpoint load put it beside GPU parameters (optimizer-only offload)."""
    if offload is not None and offload.optimizer and not offload.params:
        park(optimizer)


def state_devices(optimizer: torch.optim.Optimizer) -> set[str]:
    """Device types of the optimizer's state tensors, AdamW's step count left out ({} before the first step)."""
    return {value.device.type for state in optimizer.state.values() for key, value in state.items()
            if key != STEP_KEY and isinstance(value, torch.Tensor)}
