"""Trainable models: fp32 master weights, bf16 math, and FSDP2 sharding under torchrun.

    policy = load_trainable(cfg.model, dist, device)                   # fp32 masters, sharded when launched
    stats = run_forward(policy, completion_stats_fn, prompts, comps)   # what engine/logprobs.py does
    with rollout_weights(policy) as model: generate(model, ...)        # full weights for sampling
    save_hf_folder(path, policy, tokenizer, dtype, dist)               # a plain HF folder from any rank count
    save_trained(path, policy, tokenizer, cfg.model, dist)             # the same, or LoRA's merged / adapter folder

One process (not launched by torchrun): the model stays as it is; when the compute dtype is not
the weights' dtype, every forward runs under `torch.autocast` in it, so weights, gradients and
AdamW state stay fp32 while matmuls run in bf16 (updates of 2e-6 are not rounded away).

Launched by torchrun: `fully_shard` (FSDP2) wraps each decoder layer and then the whole model,
with `MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=float32)`: each rank holds 1/world of
the fp32 weights, gradients and optimizer state, all-gathers a layer's weights in bf16 just
before using it and reduce-scatters its gradients (a plain sum: the loops normalise losses
globally themselves). longrl's forwards do not go through `model.forward` (they call the decoder
and the LM head weight directly), so they run through a method registered as an FSDP forward
(`run_forward`): the root's hooks gather the embeddings and the head around them. The shared-prompt
training forward keeps each layer's prompt keys and values for the completions' pass; their
gradient reaches the layer's projections outside the layer's own backward hooks, so
`keep_for_backward` re-gathers the layer's weights first. With `offload.params` (`engine/offload.py`)
the shards live on the CPU and FSDP2 copies each layer's in for its gathers.

Rollout on sharded weights decodes with a plain twin of the model (built on the meta device,
filled with the full weights in the compute dtype for the length of `rollout_weights`): decoding
then needs no collective, so ranks with different numbers of groups or tokens never wait for
each other.
"""

from __future__ import annotations

import contextlib
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from longrl.checkpoint import is_sharded
from longrl.config.model import ModelConfig, OffloadConfig
from longrl.engine import ulysses
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.offload import check_offload, offload_policy
from longrl.errors import ConfigError
from longrl.files import atomic_dir
from longrl.models.loading import compute_dtype, load_policy
from longrl.models.lora import attach_adapters, has_adapters, save_model_folder

FORWARD_METHOD = "longrl_forward"
_AUTOCAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()     # model -> compute dtype (one device)
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()        # sharded model -> (meta twin, dtype)


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's list of transformer blocks (the unit FSDP shards and gathers one at a time)."""
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise NotImplementedError(f"{type(model).__name__}: no `base_model.layers` list of decoder blocks to shard")
    return layers


def load_device(dist: Dist, device: torch.device) -> torch.device:
    """Where to load a model before `prepare`: the CPU under torchrun (fully_shard moves each rank's shards to
    its GPU one block at a time, so no GPU ever holds the whole fp32 model), else the run's device."""
    return torch.device("cpu") if dist.launched else device


def prepare(model, dist: Dist, compute: torch.dtype, trainable: bool = True, offload: OffloadConfig | None = None):
    """Ready `model` (fp32 master weights) for training or frozen use with `compute`-dtype math.

    Args:
        model: a Hugging Face causal LM with fp32 (or `compute`) weights on the rank's device.
        dist: this process's Dist; launched = shard with FSDP2, otherwise autocast on one device.
        compute: dtype of the matmuls (bf16 or fp32).
        trainable: False for a frozen reference (no rollout twin, no gradient settings).
        offload: `offload.params` keeps the shards on the CPU (`engine/offload.py`); torchrun only.
    Returns:
        The same module, sharded in place when launched.
    """
    if not dist.launched:
        check_offload(offload, dist, "offload")
        if compute != next(model.parameters()).dtype:
            _AUTOCAST[model] = compute
        return model
    from torch.distributed.fsdp import (  # lazy: FSDP is only needed under torchrun
        FSDPModule,
        MixedPrecisionPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    if trainable:
        with torch.device("meta"):
            twin = type(model)(model.config)
        twin.generation_config = model.generation_config
        _TWINS[model] = (twin.eval().requires_grad_(False), compute)
    mp = MixedPrecisionPolicy(param_dtype=None if compute == torch.float32 else compute, reduce_dtype=torch.float32)
    policy = offload_policy(offload, dist)
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=mp, offload_policy=policy)
    fully_shard(model, mp_policy=mp, offload_policy=policy)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)              # a sum: losses are normalised globally
            module.set_force_sum_reduction_for_comms(True)      # (gloo has no pre-multiplied sums)
    setattr(model, FORWARD_METHOD, types.MethodType(_call, model))
    register_fsdp_forward_method(model, FORWARD_METHOD)
    with torch.no_grad():
        getattr(model, FORWARD_METHOD)(lambda m: None)         # FSDP makes the first module run its root
    model.reshard()                 # the root keeps its weights gathered after a forward; the optimizer wants shards
    ulysses.attach(model, ulysses.group_of(dist))       # sequence parallelism (Dist.sp > 1): forwards split sequences
    return model


def _call(model, fn: Callable, *args, **kwargs):
    return fn(model, *args, **kwargs)


def run_forward(model, fn: Callable, *args, **kwargs):
    """`fn(model, *args, **kwargs)` as a forward of `model`: FSDP's gathers when sharded, autocast when asked."""
    method = getattr(model, FORWARD_METHOD, None)
    with autocast(model):
        if method is None:
            return fn(model, *args, **kwargs)
        out = method(fn, *args, **kwargs)
    if not torch.is_grad_enabled():
        model.reshard()             # FSDP's root stays gathered for a backward; none follows a no-grad forward
    return out


def autocast(model):
    """torch.autocast in the model's compute dtype on its device (one-device mixed precision), else a no-op."""
    dtype = _AUTOCAST.get(model)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


class _GatherInBackward(torch.autograd.Function):
    """Identity on a layer's kept prompt K,V whose backward first gathers the layer's weights."""

    @staticmethod
    def forward(ctx, layer, k, v):
        ctx.layer = layer
        return k.view_as(k), v.view_as(v)

    @staticmethod
    def backward(ctx, dk, dv):
        ctx.layer.unshard()                 # a no-op when already gathered; the layer's post-backward reshards
        return None, dk, dv


def keep_for_backward(model, kept: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Make each layer's kept prompt K,V (layer index -> (K, V), updated in place) safe to backprop when sharded."""
    if getattr(model, FORWARD_METHOD, None) is None or not torch.is_grad_enabled():
        return
    layers = decoder_layers(model)
    for index, (k, v) in list(kept.items()):
        kept[index] = _GatherInBackward.apply(layers[index], k, v)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP2 shard (DTensor) gathered from every rank; a plain tensor as it is.

    A shard offloaded to the CPU from a GPU mesh is gathered on the GPU (NCCL), not through the CPU.
    """
    if not hasattr(tensor, "full_tensor"):
        return tensor
    home = tensor.device_mesh.device_type
    if tensor.device.type != home:
        tensor = tensor.to(home)
    return tensor.full_tensor()


def clip_grad_norm(params, max_norm: float) -> float:
    """Clip the gradients of `params` to a global norm of `max_norm` (over every rank's shards); the norm before."""
    return float(full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm)))


@contextlib.contextmanager
def rollout_weights(model) -> Iterator[Any]:
    """The model to sample from: `model` itself (under autocast when asked), or its twin holding full weights."""
    entry = _TWINS.get(model)
    if entry is None:
        with autocast(model):
            yield model
        return
    twin, dtype = entry
    _fill(twin, model, lambda full: full.to(dtype))
    try:
        yield twin
    finally:
        twin.to("meta")                     # free the full weights until the next rollout


def full_weights(model, keep: Callable[[torch.Tensor], torch.Tensor], dist: Dist = SINGLE,
                 only_main: bool = False) -> dict[str, torch.Tensor]:
    """name -> full tensor (after `keep`) of every parameter and buffer, one tensor gathered at a time.

    With `only_main`, ranks other than 0 return {} (they still take part in each gather).
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        full = full_tensor(tensor)
        if not only_main or dist.is_main:
            out[name] = keep(full.detach())
        del full
    return out


def _fill(twin, model, keep: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Give the meta twin real tensors: `keep(full tensor)` of each of `model`'s parameters and buffers."""
    made: dict[int, torch.Tensor] = {}
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    for name, tensor in named:
        if id(tensor) not in made:
            full = full_tensor(tensor)
            made[id(tensor)] = keep(full.detach())
        owner_name, _, leaf = name.rpartition(".")
        owner = twin.get_submodule(owner_name)
        if leaf in owner._parameters:
            owner._parameters[leaf] = torch.nn.Parameter(made[id(tensor)], requires_grad=False)
        else:
            owner._buffers[leaf] = made[id(tensor)]


def save_hf_folder(path: str | Path, model, tokenizer, dtype: torch.dtype | None = None, dist: Dist = SINGLE) -> Path:
    """The model as a plain Hugging Face folder (config, safetensors, tokenizer), written atomically by rank 0.

    Args:
        dtype: dtype of the saved weights; None = as held (fp32 master weights stay fp32).
        dist: every rank takes part in gathering sharded weights; rank 0 writes.
    """
    path = Path(path)
    if is_sharded(model) or (dtype is not None and dtype != next(model.parameters()).dtype):
        cast = (lambda t: t.to("cpu", dtype)) if dtype is not None else (lambda t: t.to("cpu"))
        saved = set(model.state_dict())                      # no non-persistent buffers (rotary tables)
        state = full_weights(model, lambda t: cast(t) if t.is_floating_point() else t.cpu(), dist, only_main=True)
        state = {k: v for k, v in state.items() if k in saved}
    else:
        state = None
    if dist.is_main:
        config_dtype = getattr(model.config, "dtype", None)
        if dtype is not None:
            model.config.dtype = dtype
        try:
            with atomic_dir(path) as tmp:
                model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state)
                tokenizer.save_pretrained(str(tmp))
        finally:
            if dtype is not None:
                model.config.dtype = config_dtype
    dist.barrier()
    return path


def load_trainable(cfg: ModelConfig, dist: Dist, device: torch.device, offload: OffloadConfig | None = None,
                   offload_key: str = "train.offload"):
    """The model a training stage (SFT, RL) updates, ready for `compute_dtype(cfg)` math.

    fp32 master weights, sharded under torchrun (`prepare`, its shards on the CPU with `offload.params`);
    with `model.lora`, the base in `model.dtype` with adapters that alone train (one process only:
    adapters are not sharded). `offload_key` names the config key in errors.
    """
    check_offload(offload, dist, offload_key)
    if cfg.lora is None:
        model = load_policy(cfg, load_device(dist, device), dtype="float32")
    elif dist.launched:
        raise ConfigError("model.lora runs in one process (LoRA adapters are not sharded with FSDP2); "
                          "start it without torchrun")
    else:
        model = attach_adapters(load_policy(cfg, device), cfg.lora)
    return prepare(model, dist, compute_dtype(cfg), offload=offload)


def save_trained(path: Path, model, tokenizer, cfg: ModelConfig, dist: Dist = SINGLE) -> Path:
    """A trained model's `final/`: a Hugging Face folder (config, fp32 safetensors, tokenizer) written
    atomically by rank 0; with LoRA, merged or as the adapter folder (`model.lora.final`).

    The fp32 master weights: rounded to bf16, a phase's updates at lr 2e-6 would mostly be lost at the
    next phase's start.
    """
    if not has_adapters(model):
        return save_hf_folder(path, model, tokenizer, dist=dist)
    with atomic_dir(path) as tmp:
        save_model_folder(model, tokenizer, tmp, cfg)
    return path
