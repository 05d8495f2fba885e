"""Scale-out on torchrun: the process group, the ranks' collectives, and the run's device.

    torchrun --nproc_per_node 8 -m longrl.cli rl --config FILE --out DIR      # the same command as `longrl rl`

    dist, device = setup(cfg.run.device)      # Dist() and the run's device when not launched by torchrun
    mine = dist.shard(draws)                  # this rank's whole groups: draws[rank::world]
    rows = dist.gather_json(payload)          # every rank's JSON payload, in rank order
    totals = dist.all_sum([loss, tokens])     # sums over ranks (float64)

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (and MASTER_ADDR/PORT) in every process it starts;
`setup` reads them, puts process LOCAL_RANK on `cuda:LOCAL_RANK` with the NCCL backend when CUDA
is there (and `run.device` allows it), on the CPU with gloo otherwise, and creates the process
group once per process (SFT, RL phases and evaluation of a pipeline share it). Without those
variables a command is one process on one device and every collective here is the identity.

Payloads travel as JSON (never pickled): rollouts, rewards and item scores are plain data. Model
sharding (FSDP2) lives in `engine/sharding.py`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

from longrl.errors import ConfigError
from longrl.models.loading import resolve_device

T = TypeVar("T")

LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place among the ranks of a run (world 1, not launched: a plain process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False                 # started by torchrun: a process group exists, models are sharded
    device: torch.device = torch.device("cpu")  # where collective buffers live (the rank's GPU with NCCL)
    sp: int = 1                            # ranks per sequence (Ulysses, `engine/ulysses.py`); consecutive ranks

    @property
    def data_rank(self) -> int:
        """Which data-parallel replica this rank belongs to (its sequence-parallel group sees that one's data)."""
        return self.rank // self.sp

    @property
    def data_world(self) -> int:
        """Data-parallel replicas: world / sp."""
        return self.world // self.sp

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, reports, samples and run files."""
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This rank's share of `items`: every world-th one, starting at its rank (whole items)."""
        return list(items)[self.rank::self.world]

    def data_shard(self, items: list[T]) -> list[T]:
        """This data replica's share of `items` (the same on the ranks of a sequence-parallel group)."""
        return list(items)[self.data_rank::self.data_world]

    def data_sum(self, values: list[float]) -> list[float]:
        """Sums over data replicas of values each sequence-parallel group holds identically on its ranks."""
        return [v / self.sp for v in self.all_sum(values)]

    def barrier(self) -> None:
        if self.launched:
            tdist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Elementwise sums over ranks, in float64 (the values themselves when not launched)."""
        if not self.launched or not values:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t.tolist()

    def all_max(self, value: int) -> int:
        if not self.launched:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def gather_json(self, payload: Any) -> list[Any]:
        """Every rank's JSON-serialisable `payload`, in rank order (on every rank)."""
        if not self.launched:
            return [payload]
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        local = torch.frombuffer(bytearray(data), dtype=torch.uint8)             # never empty: JSON has a value
        size = torch.tensor([local.numel()], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world)]
        tdist.all_gather(sizes, size)
        sizes = [int(s.item()) for s in sizes]
        width = max(max(sizes), 1)
        buffer = torch.zeros(width, dtype=torch.uint8, device=self.device)
        buffer[: local.numel()] = local.to(self.device)
        parts = [torch.empty(width, dtype=torch.uint8, device=self.device) for _ in range(self.world)]
        tdist.all_gather(parts, buffer)
        return [json.loads(p[:n].cpu().numpy().tobytes().decode("utf-8")) for p, n in zip(parts, sizes)]

    def broadcast_json(self, payload: Any) -> Any:
        """Rank 0's `payload` on every rank."""
        return self.gather_json(payload if self.is_main else None)[0]


SINGLE = Dist()


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE, RANK and LOCAL_RANK)."""
    return all(name in os.environ for name in LAUNCH_VARS)


def setup(device: str = "auto") -> tuple[Dist, torch.device]:
    """This process's Dist and device; creates the process group (once) when launched by torchrun.

    Args:
        device: `run.device`. Under torchrun, "auto" and "cuda" mean `cuda:LOCAL_RANK` (NCCL) when
            CUDA is available and the CPU (gloo) otherwise; "cpu" forces gloo on the CPU.
    Raises:
        ConfigError: a backend this torch build lacks, a CUDA index under torchrun, or an unusable device.
    """
    if not launched():
        return SINGLE, resolve_device(device)
    world, rank, local = (int(os.environ[name]) for name in LAUNCH_VARS)
    if device.startswith("cuda:"):
        raise ConfigError(f"run.device={device!r}: under torchrun each process uses cuda:LOCAL_RANK; "
                          "set run.device=cuda (or auto)")
    if device == "mps":
        raise ConfigError("run.device=mps cannot be used under torchrun; use cpu (gloo) or cuda (NCCL)")
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ConfigError("run.device=cuda but no CUDA device is available; use run.device=cpu or auto")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices are visible; "
                              "start at most that many processes per node (--nproc_per_node)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend, available = "nccl", tdist.is_available() and tdist.is_nccl_available()
    else:
        dev = torch.device("cpu")
        backend, available = "gloo", tdist.is_available() and tdist.is_gloo_available()
    if not available:
        raise ConfigError(f"torchrun started {world} processes on {dev.type}, but this torch build has no "
                          f"{backend.upper()} backend (torch {torch.__version__}); install a torch build with "
                          f"{backend.upper()}" + (" or run on the CPU with run.device=cpu (gloo)" if use_cuda else ""))
    if use_cuda and tdist.is_gloo_available():
        backend = "cuda:nccl,cpu:gloo"    # CPU-offloaded shards (grad-norm clip, checkpoints) reduce through gloo
    if not tdist.is_initialized():
        tdist.init_process_group(backend, rank=rank, world_size=world, **({"device_id": dev} if use_cuda else {}))
    return Dist(rank=rank, world=world, local_rank=local, launched=True, device=dev), dev


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window on a CUDA device (nothing to do elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """{"memory/peak_gb": GiB allocated at most since the last reset} on a CUDA device, else {}."""
    if device.type != "cuda":
        return {}
    return {"memory/peak_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}


def shutdown() -> None:
    """Destroy the process group if this process created one (the end of a command)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
