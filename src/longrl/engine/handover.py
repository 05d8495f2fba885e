"""Hand the policy to a rollout server: a Hugging Face weights folder in the served dtype, streamed from any rank count.

    written = write_served(policy, "runs/x/served/step-3", torch.bfloat16, dist, max_shard_bytes=4 << 30)
    written.bytes, written.files         # tensor bytes written (0 on ranks other than 0), the safetensors files

The trainer holds fp32 master weights (sharded with FSDP2 under torchrun); a server serving bf16
needs bf16 weights, and writing the fp32 masters would double the bytes on disk and the server's
read. `write_served` walks the model's parameters and persistent buffers in order, casts each
rank's shard to the served dtype, gathers one full tensor at a time (every rank takes part in each
FSDP2 all-gather, which then moves served-dtype bytes; a plain model has nothing to gather) and, on
rank 0 only, adds it to the current shard file on the CPU. A shard is written as soon as it is complete, so rank 0 holds at most one shard of served-dtype
tensors besides the model: never the full state dict, never an fp32 copy.

Layout (what `from_pretrained`, SGLang, vLLM and `longrl serve` all read): one `model.safetensors`
when everything fits in `max_shard_bytes`, else `model-0000i-of-0000n.safetensors` plus
`model.safetensors.index.json` (`metadata.total_size`, `weight_map`); `config.json` with the
served dtype and `generation_config.json`. Tied parameters (a tied LM head) are written once, as
`save_pretrained` does. The folder is built under a temporary name and renamed into place (atomic):
a server never sees half a hand-over.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.sharding import full_tensor
from longrl.errors import OutputError
from longrl.files import atomic_dir, explain, write_failure

INDEX = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


@dataclass
class Written:
    """What one hand-over wrote (on rank 0; other ranks see bytes 0 and no files)."""

    path: Path
    bytes: int = 0                                   # tensor bytes in the safetensors files
    files: list[str] = field(default_factory=list)   # safetensors file names, in order


def plan_shards(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    """Split named tensors (in order, with their byte sizes) into consecutive shards of at most `max_bytes`.

    A tensor larger than `max_bytes` gets a shard of its own; order is kept (a reader may rely on it).
    Example: [("a", 6), ("b", 5), ("c", 4)], max 10 -> [["a"], ["b", "c"]].
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
    shards: list[list[str]] = []
    used = 0
    for name, size in sizes:
        if not shards or (used + size > max_bytes and shards[-1]):
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def shard_file_names(count: int) -> list[str]:
    """Hugging Face's shard names: one file is `model.safetensors`, more are `model-0000i-of-0000n.safetensors`."""
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def served_tensors(model) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of what a weights folder holds: parameters (tied ones once) and persistent buffers, in order."""
    saved = set(model.state_dict().keys())
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [(name, tensor) for name, tensor in named if name in saved]


def served_size(tensor: torch.Tensor, dtype: torch.dtype) -> int:
    """Bytes of the full tensor once cast to `dtype` (floating tensors only are cast)."""
    kept = dtype if tensor.is_floating_point() else tensor.dtype
    return math.prod(tensor.shape) * kept.itemsize             # a DTensor's shape is the full one


def write_served(model, path: str | Path, dtype: torch.dtype, dist: Dist = SINGLE,
                 max_shard_bytes: int = 4 << 30) -> Written:
    """Write `model`'s full weights in `dtype` as a Hugging Face folder at `path` (rank 0), gathering one tensor at a time.

    Every rank must call it (each gather is a collective); ranks other than 0 write nothing. A write
    that fails on rank 0 (full disk) does not leave the other ranks waiting in a gather: rank 0 keeps
    taking part in the gathers, then every rank raises the same OutputError.
    """
    path = Path(path)
    tensors = served_tensors(model)
    plan = plan_shards([(name, served_size(t, dtype)) for name, t in tensors], max_shard_bytes)
    names = shard_file_names(len(plan))
    owner = {name: index for index, shard in enumerate(plan) for name in shard}
    written = Written(path, files=names if dist.is_main else [])
    error: str | None = None
    try:
        with atomic_dir(path) if dist.is_main else contextlib.nullcontext() as tmp:
            pending: dict[str, torch.Tensor] = {}
            weight_map: dict[str, str] = {}
            for position, (name, tensor) in enumerate(tensors):
                local = tensor.detach()
                local = local.to(dtype) if local.is_floating_point() else local   # cast the shard: gather served bytes
                full = full_tensor(local)                                 # a collective when sharded
                if dist.is_main and error is None:
                    pending[name] = full.to("cpu").contiguous()
                    written.bytes += full.numel() * full.element_size()
                del full, local
                shard = owner[name]
                if dist.is_main and error is None and (position + 1 == len(tensors)
                                                       or owner[tensors[position + 1][0]] != shard):
                    error = _attempt(path, lambda: save_file(pending, str(tmp / names[shard]), metadata={"format": "pt"}))
                    weight_map.update({n: names[shard] for n in pending})
                    pending = {}
            if dist.is_main and error is None:
                error = _attempt(path, lambda: _finish(model, tmp, dtype, written.bytes, weight_map, len(names)))
            if error is not None:
                raise OutputError(str(path), error)                       # atomic_dir removes the partial folder
    except OutputError as exc:
        error = exc.problem
    error = dist.broadcast_json(error)  # every rank learns whether rank 0 wrote it (and waits until it has)
    if error is not None:
        raise OutputError(str(path), error)
    return written


def _attempt(path: Path, write) -> str | None:
    """Run `write`; the reason it failed (an OS-level write failure), or None."""
    try:
        write()
    except Exception as exc:
        failure = write_failure(exc, finishing=True)
        if failure is None:
            raise
        return explain(path, failure)
    return None


def _finish(model, folder: Path, dtype: torch.dtype, total: int, weight_map: dict[str, str], files: int) -> None:
    """The index (when sharded) and the configs."""
    if files > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _write_configs(model, folder, dtype)


def _write_configs(model, folder: Path, dtype: torch.dtype) -> None:
    """config.json (saying the served dtype) and generation_config.json, as save_pretrained writes them."""
    config = model.config
    before = getattr(config, "dtype", None)
    config.dtype = dtype
    try:
        config.save_pretrained(str(folder))
    finally:
        config.dtype = before
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(str(folder))
