"""The sharded checkpoint format: FSDP2 models under torchrun, through `torch.distributed.checkpoint`.

Every rank writes its own shards into `.step-N.tmp/shards/` (safetensors, each tensor with its
offsets in the full tensor; nothing is gathered, no pickle); rank 0 then adds state.json and the
manifest and renames the folder. Reading reassembles each rank's slices from whatever slices
were saved, so a checkpoint resumes on any number of ranks; a plain checkpoint (full tensors)
is scattered into a sharded model the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from longrl.checkpoint.layout import (
    MANIFEST,
    CheckpointMismatch,
    first_line,
    prune,
    refuse_other_names,
    rng_state,
    sha256,
    tied_aliases,
)
from longrl.files import atomic_write_text, publish_dir


def is_sharded(model: torch.nn.Module) -> bool:
    """The model's parameters are FSDP2 shards (DTensors): checkpoints use the sharded format."""
    from torch.distributed.tensor import DTensor  # lazy: torch.distributed.tensor is slow to import

    return any(isinstance(p, DTensor) for p in model.parameters())


def _tensor_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None):
    """({"model": ..., "optim": ...} of tensors keyed by parameter name, the optimizer's param groups).

    Tied aliases are left out (their tensor is saved under its first name); the optimizer's state
    is created first if no step has run yet, so it can be loaded into.
    """
    from torch.distributed.checkpoint.state_dict import (  # lazy: only checkpoints need it
        get_model_state_dict,
        get_optimizer_state_dict,
    )
    from torch.distributed.fsdp import FSDPModule  # lazy: only checkpoints of sharded models need it

    for module in model.modules():          # FSDP's root keeps its weights gathered after a forward: shards only
        if isinstance(module, FSDPModule):
            module.reshard()
    aliases = tied_aliases(model)
    tensors: dict[str, Any] = {"model": {k: v for k, v in get_model_state_dict(model).items() if k not in aliases}}
    groups = None
    if optimizer is not None:
        full = get_optimizer_state_dict(model, optimizer)
        tensors["optim"], groups = full["state"], full["param_groups"]
    return tensors, groups


def save_sharded(run_dir, target: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int) -> Path:
    import torch.distributed as tdist  # lazy: only sharded checkpoints need it
    import torch.distributed.checkpoint as dcp

    main = tdist.get_rank() == 0
    tmp = target.with_name(f".{target.name}.tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "shards").mkdir(parents=True)
    tdist.barrier()
    tensors, _ = _tensor_state(model, optimizer)
    dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(str(tmp / "shards"), save_distributed=True))
    tdist.barrier()
    if main:
        payload = {"step": step, "state": state, "rng": rng_state(), "format": "sharded",
                   "world_size": tdist.get_world_size(), "torch_rng": torch.get_rng_state().tolist(),
                   "scheduler": scheduler.state_dict() if scheduler is not None else None}
        atomic_write_text(tmp / "state.json", json.dumps(payload, indent=1, sort_keys=True))
        files = {str(f.relative_to(tmp)): {"bytes": f.stat().st_size} for f in sorted((tmp / "shards").rglob("*"))
                 if f.is_file()}          # shards: sizes only (hashing every rank's shards here would stall all ranks)
        files["state.json"] = {"bytes": (tmp / "state.json").stat().st_size, "sha256": sha256(tmp / "state.json")}
        atomic_write_text(tmp / MANIFEST, json.dumps({"files": files}, indent=1, sort_keys=True))
        publish_dir(tmp, target)             # the shards too get the umask's modes (safetensors writes 0600)
        prune(run_dir, keep)
    tdist.barrier()
    return target


def load_shards(path: Path, model, optimizer) -> None:
    """Sharded checkpoint -> model (and optimizer), plain or sharded, any number of ranks."""
    import torch.distributed as tdist  # lazy: only sharded checkpoints need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_state_dict,
    )

    tensors, groups = _tensor_state(model, optimizer)
    try:
        dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(path / "shards")),
                 no_dist=not (tdist.is_available() and tdist.is_initialized()))   # one process reads every shard
    except (CheckpointException, ValueError, KeyError, RuntimeError) as exc:  # a mismatch, wrapped per rank
        failures = getattr(exc, "failures", None)                               # rank -> (exception, traceback)
        cause = next(iter(failures.values()))[0] if failures else exc
        raise CheckpointMismatch(f"{path}: checkpoint does not match this model/optimizer ({first_line(cause)}); "
                              "it was written by a run with another model or config") from None
    options = StateDictOptions(strict=False)          # tied aliases are not in the files
    if optimizer is None:
        set_model_state_dict(model, tensors["model"], options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=tensors["model"],
                       optim_state_dict={"state": tensors["optim"], "param_groups": groups}, options=options)


def load_plain_into_sharded(path: Path, model, optimizer, optim_state: dict | None) -> None:
    """A plain checkpoint (full tensors) -> a sharded model and optimizer: each rank keeps its slices."""
    from safetensors.torch import load_file  # lazy: only this conversion reads the file whole
    from torch.distributed.checkpoint.state_dict import (  # lazy: only sharded models need it
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full = load_file(str(path / "model.safetensors"))
    names = set(model.state_dict())
    refuse_other_names(path, model, names - set(full), set(full) - names)
    options = StateDictOptions(full_state_dict=True, strict=False)
    try:
        set_model_state_dict(model, full, options=options)
        if optimizer is not None and optim_state is not None:
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            index = {i: n for i, n in enumerate(names)}
            state = {index[i]: s for i, s in optim_state["state"].items()}
            groups = [{**g, "params": [index[i] for i in g["params"]]} for g in optim_state["param_groups"]]
            set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups}, options=options)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointMismatch(f"{path}: checkpoint does not match this model/optimizer ({first_line(exc)})") from None
