"""Atomic checkpoints and exact resume for the training loops (SFT and RL).

    state = resume(run_dir, model, optimizer, scheduler)      # {} on a fresh run
    ...
    save(run_dir, step, model, optimizer, scheduler, {"cursor": ..., "phase": ...}, keep=2)

A checkpoint is a directory `checkpoints/step-00000012/` built under a temporary name and
renamed when complete (a kill at any point leaves the previous checkpoint intact):

    model.safetensors     weights (shared tensors such as tied embeddings stored once); or, when some
                          parameters are frozen (LoRA), trainable.safetensors: the trainable ones only
                          (the frozen ones never change: they come from the model path on resume)
    trainer.pt            optimizer + scheduler state and torch RNG states (loaded with weights_only=True)
    state.json            step, caller state (data cursor, phase, ...), Python and NumPy RNG states

`resume` restores all RNG streams, so an fp32 CPU run killed and resumed ends with the same
weights as an uninterrupted run. The newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from longrl.files import atomic_dir

STEP_DIR = re.compile(r"^step-(\d{8})$")
TRAINABLE = "trainable.safetensors"


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
    """Write checkpoint `step` atomically, then drop all but the newest `keep`."""
    target = checkpoint_dir(run_dir) / f"step-{step:08d}"
    with atomic_dir(target) as tmp:
        trainable = trainable_state(model)
        if trainable is None:
            save_model(_unwrap(model), str(tmp / "model.safetensors"))
        else:
            save_file(trainable, str(tmp / TRAINABLE))
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
    if (path / TRAINABLE).exists():
        load_trainable(model, path / TRAINABLE)
    else:
        missing, unexpected = load_model(_unwrap(model), str(path / "model.safetensors"), strict=False)
        missing = sorted(m for m in missing if not _is_tied(model, m))
        if unexpected or missing:
            raise RuntimeError(f"{path}: checkpoint does not match the model "
                               f"(missing {missing[:3]}, unexpected {sorted(unexpected)[:3]})")
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    if optimizer is not None and trainer["optimizer"] is not None:
        optimizer.load_state_dict(trainer["optimizer"])
    if scheduler is not None and trainer["scheduler"] is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    payload = json.loads((path / "state.json").read_text())
    if restore_rng:
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        set_rng_state(payload["rng"])
    return {"step": payload["step"], **payload["state"]}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The trainable parameters by name when some parameters are frozen (LoRA); None when all train."""
    params = list(_unwrap(model).named_parameters())
    if all(p.requires_grad for _, p in params):
        return None
    return {name: p.detach().contiguous() for name, p in params if p.requires_grad}


def load_trainable(model: torch.nn.Module, file: Path) -> None:
    """Copy a trainable-only checkpoint into the model's trainable parameters (names must match exactly)."""
    saved = load_file(str(file))
    params = {name: p for name, p in _unwrap(model).named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise RuntimeError(f"{file}: checkpoint does not match the model's trainable parameters "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])


def resume(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
           scheduler: Any | None = None) -> dict[str, Any]:
    """Load the newest checkpoint of `run_dir` if there is one; {} otherwise."""
    path = latest_checkpoint(run_dir)
    return load(path, model, optimizer, scheduler) if path is not None else {}


def prune(run_dir: str | Path, keep: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


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
