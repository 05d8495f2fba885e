"""Mini-batches of groups and token-budget micro-batches for the policy update.

A step's groups are shuffled into `train.mini_batches` mini-batches (one optimizer update
each); a mini-batch is cut into micro-batches by a token budget (one forward/backward each,
gradients accumulated). Groups stay whole so the shared-prompt forward runs each prompt once;
a group that alone exceeds the budget is split into parts of its completions, each part
re-running the prompt.

    plan = plan_micro_batches(prompt_lens, completion_lens, budget=16384, shared_prompt=True)
    for micro in plan:
        prompts, completions = gather(micro, prompt_ids, completion_ids)
        ...                                    # forward, loss = agg.reduce(...) / normaliser

Exactness: the loss of a micro-batch is divided by the normaliser of the whole mini-batch
(`algos.LossAgg.count` over all its completions: tokens for token-mean, sequences for
seq-mean), never by its own, so the accumulated gradient equals the gradient of the mini-batch
taken in one piece (`tests/rl/test_batching.py`).

Costs count real tokens: prompt tokens once per piece with the shared-prompt forward, once per
completion without it, plus every completion token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Piece:
    group: int              # index of the group in the mini-batch
    rows: tuple[int, ...]   # indices of its completions in this piece (all G unless the group was split)


@dataclass
class MicroBatch:
    pieces: list[Piece] = field(default_factory=list)
    tokens: int = 0         # token cost (see piece_cost)

    @property
    def sequences(self) -> list[tuple[int, int]]:
        """(group, row) of each completion, in the order a forward returns them."""
        return [(p.group, r) for p in self.pieces for r in p.rows]


def piece_cost(prompt_len: int, completion_lens: Sequence[int], shared_prompt: bool) -> int:
    """Tokens a forward over one prompt and some of its completions processes.

    Example: prompt 1000, completions [10, 20]: shared 1030, per-sample 2030.
    """
    prompts = prompt_len if shared_prompt else prompt_len * len(completion_lens)
    return prompts + sum(completion_lens)


def split_group(prompt_len: int, completion_lens: Sequence[int], budget: int, shared_prompt: bool) -> list[tuple[int, ...]]:
    """Cut one group's completions into consecutive parts whose cost fits `budget`.

    A part always holds at least one completion (a single completion over budget is a part
    of its own: nothing smaller can be run).
    """
    parts: list[tuple[int, ...]] = []
    current: list[int] = []
    for row, _ in enumerate(completion_lens):
        trial = current + [row]
        if current and piece_cost(prompt_len, [completion_lens[r] for r in trial], shared_prompt) > budget:
            parts.append(tuple(current))
            trial = [row]
        current = trial
    if current:
        parts.append(tuple(current))
    return parts


def plan_micro_batches(prompt_lens: Sequence[int], completion_lens: Sequence[Sequence[int]], budget: int,
                       shared_prompt: bool = True) -> list[MicroBatch]:
    """Pack groups, in order, into micro-batches of at most `budget` tokens each.

    Args:
        prompt_lens: (P,) prompt length of each group of the mini-batch.
        completion_lens: P lists of completion lengths (the group's G samples, or fewer).
        budget: token budget of one forward/backward (`train.micro_batch_tokens`).
        shared_prompt: whether the forward runs each prompt once per piece.

    Returns:
        Micro-batches covering every (group, row) exactly once, in order. One exceeds
        `budget` only when it holds a single completion that does by itself.
    """
    pieces: list[tuple[Piece, int]] = []
    for g, (plen, lens) in enumerate(zip(prompt_lens, completion_lens)):
        for rows in split_group(plen, lens, budget, shared_prompt):
            pieces.append((Piece(g, rows), piece_cost(plen, [lens[r] for r in rows], shared_prompt)))
    plan: list[MicroBatch] = []
    current = MicroBatch()
    for piece, cost in pieces:
        if current.pieces and current.tokens + cost > budget:
            plan.append(current)
            current = MicroBatch()
        current.pieces.append(piece)
        current.tokens += cost
    if current.pieces:
        plan.append(current)
    return plan


def split_mini_batches(n_groups: int, mini_batches: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Shuffle group indices (when a generator is given) and cut them into near-equal mini-batches.

    Example: 10 groups, 4 mini-batches -> sizes 3, 3, 2, 2. Empty mini-batches (fewer groups
    than mini-batches) are left out.
    """
    order = (torch.randperm(n_groups, generator=generator, device=generator.device).tolist() if generator is not None
             else list(range(n_groups)))
    k = min(mini_batches, n_groups)
    if k == 0:
        return []
    size, extra = divmod(n_groups, k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (i < extra)
        out.append(order[start:end])
        start = end
    return out


def gather(micro: MicroBatch, prompt_ids: Sequence[list[int]], completion_ids: Sequence[Sequence[list[int]]]
           ) -> tuple[list[list[int]], list[list[list[int]]]]:
    """The prompts and completions of a micro-batch in the form a log-prob forward takes.

    Returns:
        (prompts, completions): one prompt per piece and the piece's completions
        (completions[k] are sequences of prompts[k]).
    """
    prompts = [list(prompt_ids[p.group]) for p in micro.pieces]
    completions = [[list(completion_ids[p.group][r]) for r in p.rows] for p in micro.pieces]
    return prompts, completions


def completion_mask(lengths: Sequence[int], width: int | None = None, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, T) mask on `device`: 1 for the first lengths[b] positions of row b. T = max length unless given."""
    width = max(lengths, default=0) if width is None else width
    positions = torch.arange(width, device=device)
    return (positions[None, :] < torch.tensor(list(lengths), device=device)[:, None]).to(dtype)


def pad_rows(rows: Sequence[torch.Tensor], width: int | None = None, value: float = 0.0) -> torch.Tensor:
    """Stack 1-D tensors of different lengths into (B, T), right-padded with `value`, on the rows' device."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    if not rows:
        return torch.full((0, width), value, dtype=torch.float32, device="cpu")
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype, device=rows[0].device)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:width]
    return out
