"""Atomic checkpoints and exact resume for the training loops (SFT and RL).

    state = resume(run_dir, model, optimizer, scheduler)      # {} on a fresh run
    ...
    save(run_dir, step, model, optimizer, scheduler, {"cursor": ..., "phase": ...}, keep=2)

A checkpoint is a directory `checkpoints/step-00000012/` built under a temporary name and
renamed when complete (a kill at any point leaves the previous checkpoint intact). One process
writes the plain format:

    model.safetensors     weights (shared tensors such as tied embeddings stored once)
    trainer.pt            optimizer + scheduler state and torch RNG states (loaded with weights_only=True)
    state.json            step, caller state (data cursor, phase, ...), Python and NumPy RNG states

A model sharded by FSDP2 (under torchrun) writes the sharded format with
`torch.distributed.checkpoint`: every rank writes its own shards, nothing is gathered.

    shards/               weights and AdamW state as safetensors files, one per rank, each tensor
                          stored with its offsets in the full tensor (no pickle anywhere)
    state.json            as above, plus "format": "sharded", the world size and rank 0's torch RNG state

Ranks write into `.step-00000012.tmp/`; once all have finished, rank 0 adds state.json and renames
the directory. Either format loads into a plain or a sharded model with any number of ranks: the
sharded reader reassembles each rank's slices from whatever slices were saved, and a plain
checkpoint is scattered from its full tensors. A checkpoint that does not fit the model or
optimizer (another architecture, another config) raises CheckpointError.

`resume` restores all RNG streams, so an fp32 CPU run killed and resumed ends with the same
weights as an uninterrupted run. The newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from longrl.errors import CheckpointError
from longrl.files import atomic_dir, atomic_write_text

STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and (path / "state.json").exists():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": _to_json(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))


def save(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
         scheduler: Any | None, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint `step` atomically, then drop all but the newest `keep` (every rank calls it when sharded)."""
    target = checkpoint_dir(run_dir) / f"step-{step:08d}"
    if is_sharded(model):
        return _save_sharded(run_dir, target, step, model, optimizer, scheduler, state, keep)
    with atomic_dir(target) as tmp:
        save_model(_unwrap(model), str(tmp / "model.safetensors"))
        trainer = {
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(trainer, tmp / "trainer.pt")
        payload = {"step": step, "state": state, "rng": rng_state()}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1, sort_keys=True))
    prune(run_dir, keep)
    return target


def load(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
         scheduler: Any | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore a checkpoint directory into the given objects; returns {"step": int, **caller state}."""
    path = Path(path)
    payload = json.loads((path / "state.json").read_text())
    if payload.get("format") == "sharded":
        _load_shards(path, model, optimizer)
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if restore_rng:
            torch.set_rng_state(torch.tensor(payload["torch_rng"], dtype=torch.uint8, device="cpu"))
            set_rng_state(payload["rng"])
        return {"step": payload["step"], **payload["state"]}
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    if is_sharded(model):
        _load_plain_into_sharded(path, model, optimizer, trainer["optimizer"])
    else:
        try:
            missing, unexpected = load_model(_unwrap(model), str(path / "model.safetensors"), strict=False)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: checkpoint does not match the model ({_first_line(exc)}); "
                                  "it was written by a run with another model or config") from None
        missing = sorted(m for m in missing if not _is_tied(model, m))
        if unexpected or missing:
            raise CheckpointError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected "
                                  f"{sorted(unexpected)[:3]}); it was written by a run with another model or config")
        if optimizer is not None and trainer["optimizer"] is not None:
            try:
                optimizer.load_state_dict(trainer["optimizer"])
            except ValueError as exc:
                raise CheckpointError(f"{path}: the optimizer state does not match this run's ({exc})") from None
    if scheduler is not None and trainer["scheduler"] is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng:
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        set_rng_state(payload["rng"])
    return {"step": payload["step"], **payload["state"]}


def resume(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
           scheduler: Any | None = None) -> dict[str, Any]:
    """Load the newest checkpoint of `run_dir` if there is one; {} otherwise."""
    path = latest_checkpoint(run_dir)
    return load(path, model, optimizer, scheduler) if path is not None else {}


def prune(run_dir: str | Path, keep: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


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
    aliases = _tied_aliases(model)
    tensors: dict[str, Any] = {"model": {k: v for k, v in get_model_state_dict(model).items() if k not in aliases}}
    groups = None
    if optimizer is not None:
        full = get_optimizer_state_dict(model, optimizer)
        tensors["optim"], groups = full["state"], full["param_groups"]
    return tensors, groups


def _save_sharded(run_dir, target: Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int) -> Path:
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
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
        prune(run_dir, keep)
    tdist.barrier()
    return target


def _load_shards(path: Path, model, optimizer) -> None:
    """Sharded checkpoint -> model (and optimizer), plain or sharded, any number of ranks."""
    import torch.distributed as tdist  # lazy: only sharded checkpoints need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_state_dict,
    )

    from torch.distributed.checkpoint.api import CheckpointException

    tensors, groups = _tensor_state(model, optimizer)
    try:
        dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(path / "shards")),
                 no_dist=not (tdist.is_available() and tdist.is_initialized()))   # one process reads every shard
    except (CheckpointException, ValueError, KeyError, RuntimeError) as exc:  # a mismatch, wrapped per rank
        failures = getattr(exc, "failures", None)                               # rank -> (exception, traceback)
        cause = next(iter(failures.values()))[0] if failures else exc
        raise CheckpointError(f"{path}: checkpoint does not match this model/optimizer ({_first_line(cause)}); "
                              "it was written by a run with another model or config") from None
    options = StateDictOptions(strict=False)          # tied aliases are not in the files
    if optimizer is None:
        set_model_state_dict(model, tensors["model"], options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=tensors["model"],
                       optim_state_dict={"state": tensors["optim"], "param_groups": groups}, options=options)


def _load_plain_into_sharded(path: Path, model, optimizer, optim_state: dict | None) -> None:
    """A plain checkpoint (full tensors) -> a sharded model and optimizer: each rank keeps its slices."""
    from safetensors.torch import load_file  # lazy: only this conversion reads the file whole

    from torch.distributed.checkpoint.state_dict import (  # lazy: only sharded models need it
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full = load_file(str(path / "model.safetensors"))
    names = set(model.state_dict())
    missing = sorted(k for k in names - set(full) if not _is_tied(model, k))   # a tied tensor is stored under one name
    unexpected = sorted(set(full) - names)
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); it was written by a run with another model or config")
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
        raise CheckpointError(f"{path}: checkpoint does not match this model/optimizer ({_first_line(exc)})") from None


def _tied_aliases(model: torch.nn.Module) -> set[str]:
    """Names of parameters that are another, earlier-named parameter (tied embeddings)."""
    seen: dict[int, str] = {}
    aliases = set()
    for name, p in _unwrap(model).named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.add(name)
        else:
            seen[id(p)] = name
    return aliases


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    """safetensors stores a shared tensor once; the alias it skipped is reported as missing."""
    params = dict(_unwrap(model).named_parameters(remove_duplicate=False))
    target = params.get(name)
    return target is not None and any(p is target and n != name for n, p in params.items())


def _to_json(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [_to_json(x) for x in obj]
    return obj


def _to_tuple(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(_to_tuple(x) for x in obj)
    return obj
