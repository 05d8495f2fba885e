"""Sizes an RL run is checked against before its first step: the model's context and this machine's memory.

    check_sizes(cfg, policy.config, device, world=dist.world)   # ConfigError naming the keys, or nothing

The config's own bounds (`config/base.py`: MAX_NEW_TOKENS, MAX_GROUP_SIZE, ...) refuse absurd values
at validation, before anything loads. What depends on the model and the machine is checked here, once
the model's config is read and before the run directory is written (`rl/trainer.py`), so a refused
start leaves no `config.yaml` behind:

- context: a response limit (`rollout.max_new_tokens`, `rollout.validation.max_new_tokens`), plus the
  prompt budget `rollout.max_input_tokens` when it is set, must fit the model's context window
  (`max_position_embeddings`, after `model.max_position_embeddings`);
- memory: the rollout of one batch of groups (`rollout.groups_per_batch` prompts, or fewer when a
  generation round has fewer, with `rollout.group_size` samples of up to `rollout.max_new_tokens` each,
  the weights and optimizer state beside them; the estimate of `longrl plan`, `engine/memory.py`) must
  fit this machine: the GPU's memory, or the physical memory on a CPU. Only what cannot fit is refused
  (every sample at its limit, the smallest batch the settings allow, no prompt when
  `rollout.max_input_tokens` is not set): `longrl plan` remains the tool that says what fits comfortably.
"""

from __future__ import annotations

import os

import torch

from longrl.engine.memory import GiB, Layout, rollout_memory
from longrl.errors import ConfigError
from longrl.models.shapes import from_hf_config


def context_of(model_config) -> int | None:
    """The model's context window (max_position_embeddings), or None when its config does not say."""
    value = getattr(model_config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def check_context(cfg, context: int | None, where: str = "") -> None:
    """ConfigError when a response limit (with the prompt budget, when set) exceeds the model's context."""
    if context is None:
        return
    prefix = f"{where}: " if where else ""
    limits = [("rollout.max_new_tokens", cfg.rollout.max_new_tokens)]
    if cfg.rollout.validation.max_new_tokens is not None:
        limits.append(("rollout.validation.max_new_tokens", cfg.rollout.validation.max_new_tokens))
    budget = cfg.rollout.max_input_tokens
    for key, value in limits:
        if value > context:
            raise ConfigError(f"{prefix}{key}={value} is longer than the model's context ({context} tokens, "
                              f"max_position_embeddings of {cfg.model.path}); lower it")
        if budget is not None and budget + value > context:
            raise ConfigError(f"{prefix}rollout.max_input_tokens={budget} + {key}={value} = {budget + value} tokens is "
                              f"longer than the model's context ({context} tokens, max_position_embeddings of "
                              f"{cfg.model.path}); lower them, or extend the context (model.rope_scaling and "
                              "model.max_position_embeddings)")


def machine_memory(device: torch.device) -> tuple[float, str] | None:
    """(bytes, what) of the memory a run on `device` has at most: the GPU's, or the machine's RAM; None if unknown."""
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory), f"{torch.cuda.get_device_name(device)} memory"
    if device.type == "cpu":
        try:
            return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "physical memory (CPU)"
        except (OSError, ValueError, AttributeError):
            return None
    return None


def check_rollout_memory(cfg, model_config, device: torch.device, world: int = 1) -> None:
    """ConfigError when one batch of groups of the rollout cannot fit this machine's memory, even estimated
    with no prompt when `rollout.max_input_tokens` is not set."""
    memory = machine_memory(device)
    if memory is None or cfg.rollout.backend == "server":     # a server's memory is its own
        return
    available, what = memory
    shape = from_hf_config(model_config)
    compute = "fp32" if cfg.model.dtype == "float32" or (cfg.model.dtype == "auto" and cfg.model.path == "random") else "bf16"
    layout = Layout(gpus=world, compute=compute, offload_params=cfg.train.offload.params,
                    offload_optimizer=cfg.train.offload.optimizer)
    reference = (cfg.algo.kl_coef > 0 or cfg.algo.track_kl) and cfg.model.lora is None
    prompt = cfg.rollout.max_input_tokens or 0
    val = cfg.rollout.validation
    round_prompts = -(-(cfg.algo.gen_prompts or cfg.train.prompts_per_step) // world)  # this rank's smallest round
    groups = min(cfg.rollout.groups_per_batch, round_prompts)
    batches = [("rollout.group_size", cfg.rollout.group_size, cfg.rollout.max_new_tokens, groups)]
    if cfg.train.eval_every:          # held-out items: at least one group at a time
        batches.append(("rollout.validation.n", val.n, val.max_new_tokens or cfg.rollout.max_new_tokens, 1))
    for key, samples, response, prompts in batches:
        need = rollout_memory(shape, layout, prompt, response, samples, prompts, reference).total
        if need > available:
            size = f"{shape.params / 1e9:.3g}B" if shape.params >= 1e9 else f"{shape.params / 1e6:.3g}M"
            raise ConfigError(
                f"the rollout needs about {need / GiB:,.1f} GiB ({prompts} prompts decoded together "
                f"(rollout.groups_per_batch, train.prompts_per_step) x {samples} samples ({key}) of up to {response} "
                f"new tokens, beside the {size}-parameter model and its optimizer state), more than this machine's "
                f"{available / GiB:,.1f} GiB of {what}; lower them (`longrl plan` estimates each phase)")


def check_sizes(cfg, model_config, device: torch.device, world: int = 1) -> None:
    """Both checks of this module (context, then memory) for the loaded model's config."""
    check_context(cfg, context_of(model_config))
    check_rollout_memory(cfg, model_config, device, world)
