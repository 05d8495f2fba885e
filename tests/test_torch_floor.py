"""pyproject.toml's torch floor covers the torch APIs longrl uses that a later release introduced.

Each entry below names a use in src/longrl and the first torch release that has it, read from that
release's wheel (torch/distributed/fsdp/_fully_shard/_fully_shard.py of 2.6.0, 2.7.1 and 2.8.0 for the
FSDPModule methods; torch/distributed/checkpoint/hf_storage.py of 2.8.0 and 2.9.0 for save_distributed).
A new use of a newer API belongs here, and the floor moves with it. The floor itself was run: the
engine, checkpoint, update and two-rank torchrun tests pass on torch 2.9.0 in a fresh venv (2.8.0
fails in the sharded checkpoint, 2.6.0 at set_gradient_divide_factor).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INTRODUCED = [
    (r"torch\.get_autocast_dtype\(", (2, 4)),                            # engine/attention.py
    (r"enable_gqa=", (2, 5)),                                            # SDPA's grouped-query attention
    (r"from torch\.distributed\.tensor import", (2, 5)),                 # the public DTensor
    (r"from torch\.distributed\.fsdp import \([^)]*\bfully_shard\b", (2, 6)),   # the public FSDP2 namespace
    (r"\.set_gradient_divide_factor\(", (2, 8)),                         # FSDPModule (2.6/2.7: a different name)
    (r"\.set_force_sum_reduction_for_comms\(", (2, 8)),                  # FSDPModule
    (r"HuggingFaceStorageWriter\([^)]*save_distributed=", (2, 9)),       # checkpoint/sharded.py
]


def torch_floor() -> tuple[int, ...]:
    match = re.search(r'"torch>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert match, "pyproject.toml declares no torch floor"
    return tuple(int(part) for part in match.group(1).split("."))


def test_the_torch_floor_covers_every_api_the_code_uses():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "longrl").rglob("*.py"))
    used = [(pattern, release) for pattern, release in INTRODUCED if re.search(pattern, source)]
    assert any("set_gradient_divide_factor" in pattern for pattern, _ in used)        # the table is about this code
    needed = max(release for _, release in used)
    assert torch_floor() >= needed, f"torch>={'.'.join(map(str, torch_floor()))} in pyproject.toml, the code needs " \
                                    f"{'.'.join(map(str, needed))}: " + ", ".join(p for p, r in used if r > torch_floor())
