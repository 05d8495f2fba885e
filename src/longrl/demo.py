"""`longrl demo`: the whole recipe on the embedded default, on a laptop CPU (`make demo`).

    longrl demo                         # configs/demo.yaml -> runs/demo
    longrl demo --out runs/demo-s1 run.seed=1

Runs `longrl pipeline` on configs/demo.yaml (the tiny base model, synthetic long-document tasks:
warm-up SFT on longer documents, two RL phases of growing length with retrospective sampling
between them, evaluation of the SFT checkpoint and of the final policy), then compares the two
policies on the same held-out items at the longest length and writes `DIR/summary.json`:

    {"sft_accuracy": %, "rl_accuracy": %, "gap": points, "gap_se": points, "n_eval": items, ...}

The gap's standard error is the paired one (both policies answer the same items), so
`gap > 2 * gap_se` reads as "RL beat its own starting point beyond noise".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from longrl.eval.benchmarks import SYNTHETIC_RE


def item_scores(path: Path) -> dict[str, float]:
    """Mean score per item id from an eval samples.jsonl (pass@1 over its samples)."""
    by_id: dict[str, list[float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_id.setdefault(row["id"], []).append(float(row["score"]))
    return {k: sum(v) / len(v) for k, v in by_id.items()}


def paired_comparison(base: dict[str, float], new: dict[str, float]) -> dict[str, Any]:
    """Accuracies (%) of two policies on their common items, the gap and its paired standard error."""
    ids = sorted(set(base) & set(new))
    n = len(ids)
    if n == 0:
        raise ValueError("the two evaluations share no item")
    a = [base[i] for i in ids]
    b = [new[i] for i in ids]
    diff = [y - x for x, y in zip(a, b)]
    mean_diff = sum(diff) / n
    var = sum((d - mean_diff) ** 2 for d in diff) / (n - 1) if n > 1 else 0.0

    def se(values: list[float]) -> float:
        m = sum(values) / n
        return 100 * math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0

    return {"n_eval": n, "sft_accuracy": 100 * sum(a) / n, "rl_accuracy": 100 * sum(b) / n,
            "sft_se": se(a), "rl_se": se(b), "gap": 100 * mean_diff, "gap_se": 100 * math.sqrt(var / n)}


def demo_summary(out: Path, cfg) -> dict[str, Any]:
    lengths = sorted(int(m.group(1)) for b in cfg.eval.benchmarks if (m := SYNTHETIC_RE.match(b)))
    if not lengths:
        raise ValueError("the demo config needs synthetic-<length> suites in eval.benchmarks")
    start = "sft" if cfg.sft.data else "base"
    longest = f"synthetic-{lengths[-1]}"
    summary = paired_comparison(item_scores(out / "eval" / start / longest / "samples.jsonl"),
                                item_scores(out / "eval" / "rl" / longest / "samples.jsonl"))
    by_length = {}
    for length in lengths:
        name = f"synthetic-{length}"
        pair = paired_comparison(item_scores(out / "eval" / start / name / "samples.jsonl"),
                                 item_scores(out / "eval" / "rl" / name / "samples.jsonl"))
        by_length[str(length)] = {k: round(pair[k], 2) for k in ("sft_accuracy", "rl_accuracy", "gap", "gap_se", "n_eval")}
    summary = {k: round(v, 2) if isinstance(v, float) else v for k, v in summary.items()}
    return {**summary, "z": round(summary["gap"] / summary["gap_se"], 2) if summary["gap_se"] else None,
            "eval_length": lengths[-1], "eval_samples_per_item": cfg.eval.samples, "seed": cfg.run.seed,
            "start_policy": start, "by_length": by_length}
