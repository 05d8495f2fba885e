"""Validation during RL: held-out items (`data.eval`) sampled and scored before training and every
`train.eval_every` steps, as verl's `test_freq` / `val_before_train` do.

    rows = validate(roller, items, cfg, step, dist)    # one row per item: task, correct flags, lengths
    metrics = validation_metrics(rows)                  # val/accuracy, val/<task>/accuracy, val/response_len/mean

Sampling is `rollout.validation` (default as the official script: n = 1, temperature 0.7, top-p 0.95;
response limit = the rollout's, i.e. the phase's); each item's seed comes from (run seed, "val", step,
item id), so a resumed run scores the same tokens. Correct = the rule or the judge says so (the
evaluation reward: no overlong shaping). Under torchrun each rank samples its share of the items and
every rank gets all rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from longrl.config import Config
from longrl.data.schema import Sample
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.generate import SamplingParams, group_seed
from longrl.rl.groups import is_correct


def is_validation_step(step: int, total: int, every: int, before_train: bool) -> bool:
    """Score the held-out set at 0-based "before training" step 0 (if asked), every `every` steps and at the last."""
    if every <= 0:
        return False
    if step == 0:
        return before_train
    return step % every == 0 or step == total


def validation_params(cfg: Config, stops: tuple[int, ...]) -> SamplingParams:
    v = cfg.rollout.validation
    return SamplingParams(max_new_tokens=v.max_new_tokens or cfg.rollout.max_new_tokens, temperature=v.temperature,
                          top_p=v.top_p, top_k=0, stop_token_ids=stops)


def validate(roller, items: list[Sample], cfg: Config, step: int, dist: Dist = SINGLE) -> list[dict[str, Any]]:
    """Sample and score every held-out item; one row per item (all ranks return all rows, in item order)."""
    n = cfg.rollout.validation.n
    params = validation_params(cfg, roller.stops)
    mine = dist.shard(list(enumerate(items)))
    prompts = [roller.encode(item) for _, item in mine]
    seeds = [group_seed(cfg.run.seed, "val", step, item.id) for _, item in mine]
    outs = roller.sample(prompts, n, params, seeds, f"val-{step}")
    _, results = roller.score([item for _, item in mine], outs, params.max_new_tokens)
    rows = [{"index": i, "id": item.id, "task": item.task, "correct": [float(is_correct(r)) for r in res],
             "response_len": [len(c) for c in out.completions]}
            for (i, item), out, res in zip(mine, outs, results)]
    if dist.launched:
        rows = [row for part in dist.gather_json(rows) for row in part]
    return sorted(rows, key=lambda row: row["index"])


def validation_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """val/accuracy (over every sample), val/<task>/accuracy, val/response_len/mean, val/items."""
    if not rows:
        return {}
    by_task: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].extend(row["correct"])
    flags = [x for row in rows for x in row["correct"]]
    lengths = [x for row in rows for x in row["response_len"]]
    out = {"val/accuracy": sum(flags) / len(flags), "val/response_len/mean": sum(lengths) / len(lengths),
           "val/items": float(len(rows))}
    for task in sorted(by_task):
        out[f"val/{task}/accuracy"] = sum(by_task[task]) / len(by_task[task])
    return out
