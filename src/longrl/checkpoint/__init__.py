"""Atomic checkpoints and exact resume for the training loops (SFT and RL).

    state = resume(run_dir, model, optimizer, scheduler)      # {} on a fresh run
    ...
    save(run_dir, step, model, optimizer, scheduler, {"cursor": ..., "phase": ...}, keep=2)

A checkpoint is a directory `checkpoints/step-00000012/` built under a temporary name and
renamed when complete (a kill at any point leaves the previous checkpoint intact). One process
writes the plain format:

    model.safetensors     weights (shared tensors such as tied embeddings stored once); or, when some
                          parameters are frozen (LoRA), trainable.safetensors: the trainable ones only
                          (the frozen ones never change: they come from the model path on resume)
    trainer.pt            optimizer + scheduler state and torch RNG states (loaded with weights_only=True)
    state.json            step, caller state (data cursor, phase, ...), Python and NumPy RNG states
    manifest.json         size and SHA-256 of each file above, written last

A model sharded by FSDP2 (under torchrun) writes the sharded format with
`torch.distributed.checkpoint` (`longrl.checkpoint.sharded`): every rank writes its own shards,
nothing is gathered. The files both formats share (manifest, RNG streams, the checkpoint list)
are `longrl.checkpoint.layout`.

    shards/               weights and AdamW state as safetensors files, one per rank, each tensor
                          stored with its offsets in the full tensor (no pickle anywhere)
    state.json            as above, plus "format": "sharded", the world size and rank 0's torch RNG state
    manifest.json         the size of each shard file and the size and SHA-256 of state.json

Ranks write into `.step-00000012.tmp/`; once all have finished, rank 0 adds state.json and the
manifest and renames the directory. Either format loads into a plain or a sharded model with any number of ranks: the
sharded reader reassembles each rank's slices from whatever slices were saved, and a plain
checkpoint is scattered from its full tensors. A checkpoint that does not fit the model or
optimizer (another architecture, another config) raises CheckpointMismatch (a CheckpointError).

`resume` restores all RNG streams, so an fp32 CPU run killed and resumed ends with the same
weights as an uninterrupted run. It checks each checkpoint against its manifest before loading
anything: a damaged newest one (a truncated weight file, a broken state.json: a disk fault, a
copy cut short) is set aside as `step-N.damaged` and the next older intact one is used, and it
says which. If none is intact it stops with an error rather than silently start over. The
newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from longrl.checkpoint.layout import (
    MANIFEST,
    STEP_DIR,
    STEP_NAME,
    TRAINABLE,
    UNREADABLE,
    CheckpointMismatch,
    checkpoint_dir,
    first_line,
    latest_checkpoint,
    list_checkpoints,
    prune,
    refuse_other_names,
    rng_state,
    set_rng_state,
    sha256,
    unwrap,
    verify,
)
from longrl.checkpoint.sharded import is_sharded, load_plain_into_sharded, load_shards, save_sharded
from longrl.console import info, secondary_rank
from longrl.errors import CheckpointError
from longrl.files import atomic_dir
from longrl.limits import load_json, read_small_file

__all__ = ["MANIFEST", "STEP_DIR", "TRAINABLE", "CheckpointMismatch", "checkpoint_dir", "is_sharded",
           "latest_checkpoint", "list_checkpoints", "load", "load_trainable", "prune", "resume", "save", "sha256",
           "trainable_state", "verify"]


def save(run_dir: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
         scheduler: Any | None, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint `step` atomically, then drop all but the newest `keep` (every rank calls it when sharded)."""
    target = checkpoint_dir(run_dir) / f"step-{step:08d}"
    if is_sharded(model):
        return save_sharded(run_dir, target, step, model, optimizer, scheduler, state, keep)
    with atomic_dir(target) as tmp:
        trainable = trainable_state(model)
        if trainable is None:
            save_model(unwrap(model), str(tmp / "model.safetensors"))
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
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256(tmp / name)}
                 for name in (TRAINABLE if trainable is not None else "model.safetensors", "trainer.pt", "state.json")}
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=1, sort_keys=True))
    prune(run_dir, keep)
    return target


def load(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
         scheduler: Any | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore a checkpoint directory into the given objects; returns {"step": int, **caller state}.

    The small files are read first and the weights file is read whole before the model is
    touched, so an unreadable checkpoint (CheckpointError) leaves the objects as they were.
    """
    path = Path(path)
    try:
        payload = load_json(read_small_file(path / "state.json"))
        step, caller_state, rng = check_state(path, payload)
        sharded = payload.get("format") == "sharded"
        if not sharded:
            trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if sharded:                       # optimizer state is in the shards; the rest in state.json
        load_shards(path, model, optimizer)
        trainer = {"scheduler": payload.get("scheduler"), "cuda_rng": [],
                   "torch_rng": payload.get("torch_rng")}
    elif is_sharded(model):
        if (path / TRAINABLE).exists():
            raise CheckpointMismatch(f"{path}: a single-process LoRA checkpoint ({TRAINABLE}) cannot be resumed "
                                     "on several ranks; resume it with one process")
        load_plain_into_sharded(path, model, optimizer, trainer["optimizer"])
    else:
        load_plain_weights(path, model)
        if optimizer is not None and trainer["optimizer"] is not None:
            try:
                optimizer.load_state_dict(trainer["optimizer"])
            except ValueError as exc:
                raise CheckpointMismatch(f"{path}: the optimizer state does not match this run's ({exc})") from None
    if scheduler is not None and trainer["scheduler"] is not None:
        scheduler.load_state_dict(trainer["scheduler"])
    if restore_rng:
        torch.set_rng_state(torch.as_tensor(trainer["torch_rng"], dtype=torch.uint8, device="cpu"))
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        set_rng_state(rng)
    return {"step": step, **caller_state}


MAX_COUNTER = 1 << 53   # steps and data cursors: integers JSON readers everywhere keep exact


def check_state(path: Path, payload: Any) -> tuple[int, dict[str, Any], Any]:
    """(step, caller state, rng) of a checkpoint's state.json, each checked; CheckpointError naming the field.

    The step must be the one in the folder's name (`step-00000012`), a data cursor a non-negative integer:
    a hand-edited or foreign state.json is refused, not trusted (a negative step would rerun finished
    steps, a huge one skip the run, a cursor of another type break the sampler).
    """
    where = path / "state.json"
    if not isinstance(payload, dict):
        raise CheckpointError(f"{where}: not a checkpoint state (a JSON object is expected)")
    step, state, rng = payload.get("step"), payload.get("state"), payload.get("rng")
    if not _counter(step):
        raise CheckpointError(f"{where}, field 'step': {step!r} is not a step number (an integer 0..2^53)")
    named = STEP_NAME.match(path.name)
    if named and int(named.group(1)) != step:
        raise CheckpointError(f"{where}, field 'step': {step} is not the step of the folder {path.name}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}, field 'state': expected an object, got {type(state).__name__}")
    if "cursor" in state and not _counter(state["cursor"]):
        raise CheckpointError(f"{where}, field 'state.cursor': {state['cursor']!r} is not a data position "
                              "(an integer 0..2^53)")
    if not isinstance(rng, dict):
        raise CheckpointError(f"{where}, field 'rng': expected an object, got {type(rng).__name__}")
    return step, dict(state), rng


def _counter(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER


def load_plain_weights(path: Path, model: torch.nn.Module) -> None:
    """The plain format's weights into a model on one process: trainable.safetensors (LoRA) or model.safetensors."""
    if (path / TRAINABLE).exists():
        try:
            load_trainable(model, path / TRAINABLE)
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"{path}: unreadable {TRAINABLE} ({exc})") from None
        return
    try:
        missing, unexpected = load_model(unwrap(model), str(path / "model.safetensors"), strict=False)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: unreadable model.safetensors ({exc})") from None
    except RuntimeError as exc:   # shapes differ
        raise CheckpointMismatch(f"{path}: checkpoint does not match the model ({first_line(exc)}); "
                                 "it was written by a run with another model or config") from None
    refuse_other_names(path, model, missing, unexpected)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The trainable parameters by name when some parameters are frozen (LoRA); None when all train."""
    params = list(unwrap(model).named_parameters())
    if all(p.requires_grad for _, p in params):
        return None
    return {name: p.detach().contiguous() for name, p in params if p.requires_grad}


def load_trainable(model: torch.nn.Module, file: Path) -> None:
    """Copy a trainable-only checkpoint into the model's trainable parameters (names must match exactly)."""
    saved = load_file(str(file))
    params = {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise CheckpointMismatch(f"{file}: checkpoint does not match the model's trainable parameters "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])


def resume(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
           scheduler: Any | None = None, say: Callable[[str], None] = info) -> dict[str, Any]:
    """Load the newest intact checkpoint of `run_dir`; {} when there is none at all.

    Damaged newer checkpoints are renamed `step-N.damaged` (kept for a look, out of the way of
    pruning) once an intact one has loaded; `say` reports which checkpoint was used and why
    others were skipped. CheckpointError if checkpoints exist but none is intact.
    """
    damaged: list[tuple[Path, str]] = []
    for step, path in reversed(list_checkpoints(run_dir)):
        problem = verify(path)
        if problem is None:
            try:
                state = load(path, model, optimizer, scheduler)
            except CheckpointMismatch:        # intact but another run's: falling back would not help
                raise
            except (CheckpointError, *UNREADABLE) as exc:
                problem = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
        if problem is not None:
            damaged.append((path, problem))
            continue
        for bad, why in damaged:
            aside = bad.with_name(bad.name + ".damaged")
            if not secondary_rank():          # under torchrun rank 0 moves it (every rank has loaded by now)
                shutil.rmtree(aside, ignore_errors=True)
                bad.rename(aside)
            say(f"checkpoint {bad.name} is damaged ({why}); moved aside to {aside.name}")
        say(f"resuming from {path} (step {step})")
        return state
    if damaged:
        detail = "; ".join(f"{p.name}: {why}" for p, why in damaged)
        raise CheckpointError(f"{checkpoint_dir(run_dir)}: no intact checkpoint to resume from ({detail}); "
                              "delete that folder to start the run over, or use another --out")
    return {}
