"""Seeds for the training loops: the global RNGs a run starts from, and stable seeds for named streams.

    seed_everything(cfg.run)                                   # threads, Python / NumPy / torch RNGs
    gen = torch.Generator().manual_seed(stream_seed(seed, "minibatch", step, epoch))

A stream seed is a function of its keys alone (not of hash(), which changes between processes),
so a resumed run or another rank draws the same numbers for the same step.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(run) -> None:
    """Threads and the global RNGs from the `run` section (`run.torch_threads`, `run.seed`)."""
    if run.torch_threads:
        torch.set_num_threads(run.torch_threads)
    random.seed(run.seed)
    np.random.seed(run.seed % 2**32)
    torch.manual_seed(run.seed)


def stream_seed(*keys: Any, bits: int = 63) -> int:
    """A `bits`-bit seed fixed by `keys`, the same in every process and on every machine."""
    return random.Random(":".join(map(str, keys))).getrandbits(bits)
