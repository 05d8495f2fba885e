"""Difficulty-aware retrospective sampling: carry the hardest earlier items into the next phase.

Two ways to know how hard an item is for the current policy:

  offline  (as the QwenLong-L1 authors describe it) at a phase transition, roll the policy out
           K times on the earlier phases' items under the next phase's limits and score them
           (`score_offline`); costs K rollouts per item.
  online   at no extra rollout cost: the G rewards the training rollouts already produced for
           each item (`item_scores.jsonl` of the earlier phases) feed a persistent store
           (`DifficultyStore`); an item's latest observation counts (the policy has moved since
           the earlier ones).

Either way, per item K values of `curriculum.retrospective.metric` (accuracy, the default:
1 when the rule or the judge marks a response correct, whatever overlong shaping did; or the
shaped reward): difficulty = 1 - their mean (or 1 / mean; the paper leaves the formula open),
items solved K/K are excluded, items solved 0/K optionally, and the hardest `count` (or
`fraction`) are carried. The selection and every item's scores are saved in the run
directory (`scores.jsonl`, `selection.json`). How the carried items join the next phase's own
(`new_plus_carried`: beside its new items; `replay`: as extra copies) is `curriculum.retrospective.carry`
(`curriculum/phases.py:mix_phase`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from longrl.config import apply_overrides
from longrl.config.curriculum import RetrospectiveConfig
from longrl.data.schema import Sample
from longrl.engine.distributed import SINGLE, Dist
from longrl.files import atomic_open, atomic_write_json
from longrl.registry import Registry
from longrl.rl.groups import roll_across_ranks
from longrl.rl.rollout import Roller
from longrl.rl.sampler import Draw
from longrl.tracking import Timers, read_metrics

SOLVED = 1.0 - 1e-9  # a reward at or above this counts as a solve


def one_minus_mean(rewards: Sequence[float]) -> float:
    """1 - mean reward: 0 for an item always solved, 1 for one never solved."""
    return 1.0 - sum(rewards) / len(rewards)


def inverse_mean(rewards: Sequence[float]) -> float:
    """1 / mean reward (infinite when never solved): grows faster than 1 - mean as solves get rare."""
    mean = sum(rewards) / len(rewards)
    return math.inf if mean <= 0 else 1.0 / mean


DIFFICULTY: Registry = Registry("difficulty")
DIFFICULTY.add("one_minus_mean", one_minus_mean)
DIFFICULTY.add("inverse_mean", inverse_mean)


@dataclass(frozen=True)
class Scored:
    id: str
    rewards: list[float]
    difficulty: float

    @property
    def solves(self) -> int:
        return sum(r >= SOLVED for r in self.rewards)


def select_hard(scores: Mapping[str, Sequence[float]], cfg: RetrospectiveConfig) -> tuple[list[Scored], list[Scored]]:
    """(selected hardest first, all scored) from per-item scores (accuracy flags or rewards).

    Items solved K/K are never selected; with `exclude_unsolved`, neither are those solved 0/K.
    Among the rest, the `count` hardest (or the hardest `fraction` of all scored items, rounded
    up) are selected; ties are broken by item id so the selection is deterministic.
    """
    difficulty = DIFFICULTY.get(cfg.difficulty)
    scored = [Scored(i, list(r), difficulty(r)) for i, r in scores.items() if len(r) > 0]
    eligible = [s for s in scored if s.solves < len(s.rewards) and not (cfg.exclude_unsolved and s.solves == 0)]
    eligible.sort(key=lambda s: (-s.difficulty, s.id))
    if cfg.count is not None:
        limit = cfg.count
    else:
        limit = math.ceil((cfg.fraction if cfg.fraction is not None else 1.0) * len(scored))
    return eligible[:limit], scored


class DifficultyStore:
    """Per-item scores observed during training (online retrospective sampling).

    Fed by the `item_scores.jsonl` rows the RL loop writes ({"step", "phase", "id", "rewards",
    "correct"}), the latest observation of each item wins. Persisted as JSONL (`save` / `load`).
    Rows written before correctness was recorded count a reward >= 1 as correct.
    """

    def __init__(self) -> None:
        self._latest: dict[str, tuple[tuple[str, int], dict[str, list[float]]]] = {}

    def observe(self, rows: Iterable[dict]) -> None:
        for row in rows:
            rewards = [float(r) for r in row["rewards"]]
            correct = [float(c) for c in row["correct"]] if "correct" in row else [float(r >= SOLVED) for r in rewards]
            self._latest[row["id"]] = ((str(row.get("phase", "")), int(row["step"])),
                                       {"reward": rewards, "accuracy": correct})

    def observe_file(self, path: str | Path) -> None:
        self.observe(read_metrics(path))

    def scores(self, ids: Iterable[str] | None = None, metric: str = "accuracy") -> dict[str, list[float]]:
        """Per item, the latest G values of `metric` (accuracy: 1.0 correct / 0.0 not; reward: shaped)."""
        wanted = set(ids) if ids is not None else None
        return {i: v[metric] for i, (_, v) in self._latest.items() if wanted is None or i in wanted}

    def save(self, path: str | Path) -> None:
        with atomic_open(path, "w") as fh:
            for item_id, ((phase, step), values) in sorted(self._latest.items()):
                fh.write(json.dumps({"id": item_id, "phase": phase, "step": step, "rewards": values["reward"],
                                     "correct": values["accuracy"]}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DifficultyStore:
        store = cls()
        store.observe_file(path)
        return store


def score_offline(cfg, policy, tokenizer, items: Sequence[Sample], samples: int, seed_key: str,
                  metric: str = "accuracy", dist: Dist = SINGLE) -> dict[str, list[float]]:
    """Roll `policy` out `samples` times on each item under `cfg`'s limits; per item, the K values of `metric`.

    `cfg` is the next phase's config (its max_input_tokens / max_new_tokens apply); `metric` is
    accuracy (1.0 when the rule or the judge marks a response correct) or reward (the shaped reward).
    Randomness comes from (run seed, `seed_key`, item position), independent of batching and of the
    number of ranks (under torchrun each rank rolls out every N-th item; all get every score).
    """
    cfg = apply_overrides(cfg, {"rollout.group_size": samples})
    roller = Roller(cfg, policy, tokenizer, Timers())
    step = _stable_step(seed_key)
    batch = max(1, cfg.rollout.groups_per_batch) * dist.world      # each rank rolls out groups_per_batch
    scores: dict[str, list[float]] = {}
    for start in range(0, len(items), batch):
        draws = [Draw(start + i, item) for i, item in enumerate(items[start:start + batch])]
        for group in roll_across_ranks(roller.roll, step, draws, dist):
            scores[group.draw.item.id] = list(group.correct if metric == "accuracy" else group.rewards)
    return scores


def _stable_step(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def save_selection(out: str | Path, scored: Sequence[Scored], selected: Sequence[Scored], info: dict) -> None:
    """`scores.jsonl` (every scored item) and `selection.json` (what is carried, and why)."""
    out = Path(out)
    with atomic_open(out / "scores.jsonl", "w") as fh:
        for s in sorted(scored, key=lambda s: s.id):
            fh.write(json.dumps({"id": s.id, "rewards": s.rewards, "solves": s.solves,
                                 "difficulty": None if math.isinf(s.difficulty) else s.difficulty}) + "\n")
    atomic_write_json(out / "selection.json", {
        **info, "selected": [s.id for s in selected], "count": len(selected), "scored": len(scored),
        "solved_all": sum(s.solves == len(s.rewards) for s in scored), "solved_none": sum(s.solves == 0 for s in scored),
    })
