"""Hand a model's weights to another process through a folder: safetensors out, checked loading in.

    save_weights(policy, "runs/x/served/step-3")      # config.json + model.safetensors, written atomically
    load_weights(served_model, "runs/x/served/step-3")  # every tensor checked before any is copied

The RL trainer writes the policy after each update for a rollout server to reload (`engine/remote.py`);
`longrl serve` loads such a folder into the model it serves (`serve/`). The folder is a Hugging Face
checkpoint, so SGLang and vLLM read it too. Loading is all or nothing: names, shapes and finiteness
are checked first, and a bad folder leaves the served weights as they were. Only regular files
inside the folder are read: an index naming a shard elsewhere (`../x`, an absolute path, a symlink
out of the folder) or a shard that is a FIFO, device or folder is refused before anything is opened.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.utils import logging as hf_logging

from longrl.errors import UserError
from longrl.files import atomic_dir

INDEX = "model.safetensors.index.json"


class WeightsError(UserError):
    """A weights folder that cannot be loaded into the model (missing, mismatched or unreadable tensors)."""


def save_weights(model, path: str | Path) -> Path:
    """`model` as a Hugging Face folder (config.json + safetensors), built beside `path` and renamed into place."""
    path = Path(path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()          # a bar per RL step is noise
    try:
        with atomic_dir(path) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return path


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a folder: the shards its index names, else every *.safetensors file;
    each a regular file inside the folder (WeightsError otherwise, before any is opened)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such folder")
    index = folder / INDEX
    if index.is_file():
        _regular_inside(folder, index)
        try:
            names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{index}: not a safetensors index ({type(exc).__name__})") from None
        odd = [n for n in names if not isinstance(n, str) or not n or n != os.path.basename(n) or n in (".", "..")]
        if odd:
            raise WeightsError(f"{index}: shard {odd[0]!r} is not a file name in {folder}")
        return [_regular_inside(folder, folder / name) for name in sorted(names)]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{folder}: no *.safetensors weights")
    return [_regular_inside(folder, file) for file in files]


def _regular_inside(folder: Path, file: Path) -> Path:
    """`file`, once it is known to resolve to a regular file inside `folder` (symlinks followed)."""
    real = file.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise WeightsError(f"{file}: points outside {folder}")
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise WeightsError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise WeightsError(f"{file}: not a regular file")
    return file


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files, on the CPU (no pickle is ever read)."""
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        try:
            with safe_open(str(file), framework="pt", device="cpu") as fh:
                for name in fh.keys():
                    if name in tensors:
                        raise WeightsError(f"{file}: tensor {name!r} appears in more than one file")
                    tensors[name] = fh.get_tensor(name)
        except WeightsError:
            raise
        except Exception as exc:  # safetensors raises its own error types for truncated or corrupt files
            raise WeightsError(f"{file}: unreadable safetensors file ({type(exc).__name__}: {exc})") from None
    return tensors


def tied_names(model) -> set[str]:
    """Parameter names that share storage with an earlier one (e.g. a tied LM head): a checkpoint may omit them."""
    seen: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = tensor.data_ptr()
        if key in seen:
            tied.add(name)
        else:
            seen[key] = name
    return tied


def load_weights(model, folder: str | Path) -> int:
    """Copy the folder's tensors into `model` in place (cast to each parameter's dtype); returns the count.

    Raises WeightsError, leaving the model untouched, when a tensor is missing (tied copies excepted),
    unexpected, of another shape, or not finite.
    """
    tensors = read_tensors(folder)
    state = model.state_dict()
    tied = tied_names(model)
    missing = [n for n in state if n not in tensors and n not in tied]
    unexpected = [n for n in tensors if n not in state]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) the model does not have, e.g. {', '.join(unexpected[:3])}")
    for name, tensor in tensors.items():
        if name in state and tuple(tensor.shape) != tuple(state[name].shape):
            problems.append(f"{name}: shape {tuple(tensor.shape)}, the model's is {tuple(state[name].shape)}")
        elif name in state and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            problems.append(f"{name}: holds NaN or infinite values")
    if problems:
        raise WeightsError(f"{folder}: cannot load into the served model: " + "; ".join(problems[:5]))
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor)
    return len(tensors)
