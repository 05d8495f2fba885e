"""The files of a checkpoint folder: where checkpoints live, their manifest, the RNG streams they carry.

Shared by the plain format (`longrl.checkpoint`) and the sharded one (`longrl.checkpoint.sharded`).
"""

from __future__ import annotations

import hashlib
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from longrl.errors import CheckpointError
from longrl.limits import load_json, read_small_file

STEP_DIR = re.compile(r"^step-(\d{8})$")
STEP_NAME = re.compile(r"^step-(\d+)(?:\.damaged)?$")   # a checkpoint folder's name, set aside or not
TRAINABLE = "trainable.safetensors"
MANIFEST = "manifest.json"
# What reading a damaged checkpoint file raises (safetensors, torch.load of a cut zip, json).
UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError, SafetensorError, RuntimeError)


class CheckpointMismatch(CheckpointError):
    """An intact checkpoint that does not fit this model or optimizer (another run's): never skipped."""


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
        "python": to_json(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(to_tuple(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | Path) -> str | None:
    """What is wrong with checkpoint `path` against its manifest; None if every file matches.

    A checkpoint written before manifests existed has none: it counts as intact here, and
    `resume` still falls back from it if it does not load.
    """
    path = Path(path)
    if not (path / MANIFEST).exists():
        return None
    try:
        files = load_json(read_small_file(path / MANIFEST))["files"]
        expected = {str(name): (int(entry["bytes"]), entry.get("sha256")) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"
    for name, (size, digest) in sorted(expected.items()):
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
        if digest is not None and sha256(file) != digest:
            return f"{name} does not match the SHA-256 recorded when it was written"
    return None


def prune(run_dir: str | Path, keep: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def tied_groups(model: torch.nn.Module) -> list[list[str]]:
    """The names of each parameter held under several names (tied embeddings), in named order."""
    names: dict[int, list[str]] = {}
    for name, p in unwrap(model).named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def tied_aliases(model: torch.nn.Module) -> set[str]:
    """Names of parameters that are another, earlier-named parameter (tied embeddings)."""
    return {name for group in tied_groups(model) for name in group[1:]}


def refuse_other_names(path: Path, model: torch.nn.Module, missing, unexpected) -> None:
    """CheckpointMismatch when the saved tensor names are not the model's. A tied parameter may be
    missing under one of its names: safetensors stores a shared tensor once."""
    tied = {name for group in tied_groups(model) for name in group}
    missing, unexpected = sorted(set(missing) - tied), sorted(unexpected)
    if missing or unexpected:
        raise CheckpointMismatch(f"{path}: checkpoint does not match the model (missing {missing[:3]}, unexpected "
                                 f"{unexpected[:3]}); it was written by a run with another model or config")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def to_json(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [to_json(x) for x in obj]
    return obj


def to_tuple(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(to_tuple(x) for x in obj)
    return obj
