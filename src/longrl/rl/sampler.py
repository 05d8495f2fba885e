"""Training prompts: hand the loaded items out in seeded epochs, resume exactly.

    items = load_items(cfg.data.train, tokenizer, skip_bad=cfg.data.skip_bad)     # longrl.data.sources
    sampler = PromptSampler(items, seed=cfg.run.seed, cursor=state.get("cursor", 0))
    draws = sampler.next(4)          # [Draw(index=0, item=...), ...]
    sampler.cursor                   # 4: saved in the checkpoint; a new sampler at 4 continues identically

Each epoch visits every item once in an order drawn from (seed, epoch); the cursor counts
draws since the start, so the sampler's whole state is one integer. A draw's `index` is unique
over the run and seeds the rollout of its group: sampling does not depend on which other
prompts share a batch or how many processes share the work.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from longrl.data.schema import Sample
from longrl.errors import UserError


@dataclass(frozen=True)
class Draw:
    index: int        # position in the run's stream of draws (0, 1, 2, ...)
    item: Sample


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of range(n), fixed by (seed, epoch)."""
    order = list(range(n))
    random.Random(f"longrl-sampler:{seed}:{epoch}").shuffle(order)
    return order


class PromptSampler:
    """Items in a fresh seeded order each epoch; the state is the number of draws so far."""

    def __init__(self, items: Sequence[Sample], seed: int, cursor: int = 0):
        if not items:
            raise UserError("no training items: the data sources are empty (or every item was filtered out)")
        self.items = list(items)
        self.seed = seed
        self.cursor = cursor
        self._epoch, self._order = -1, []

    def next(self, n: int) -> list[Draw]:
        """The next `n` draws (wrapping into a new epoch as needed); advances the cursor."""
        draws = []
        for _ in range(n):
            epoch, pos = divmod(self.cursor, len(self.items))
            if epoch != self._epoch:
                self._epoch, self._order = epoch, epoch_order(len(self.items), self.seed, epoch)
            draws.append(Draw(self.cursor, self.items[self._order[pos]]))
            self.cursor += 1
        return draws
