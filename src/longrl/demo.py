"""`longrl demo`: the whole recipe on the embedded default, on a laptop CPU (`make demo`).

    longrl demo                         # configs/demo.yaml -> runs/demo
    longrl demo --out runs/demo-s1 run.seed=1

Runs `longrl pipeline` on configs/demo.yaml (the tiny base model, synthetic long-document tasks:
warm-up SFT on short documents, two RL phases of growing length with retrospective sampling
between them, the SFT-long control arm, evaluation of every arm), then compares the arms on the
same held-out items at each length and writes `DIR/summary.json`:

    {"sft_accuracy": %, "rl_accuracy": %, "gap": points, "gap_se": points, "n_eval": items,
     "arms": [{"arm": "base"|"sft"|"sft-long"|"rl", "accuracy": %, "se": %, "n_eval": items}, ...], "gap_vs_sft_long": points,
     "gap_vs_sft_long_se": points, "by_length": {...}, ...}

The arms: base (`builtin:tiny-base`), sft (the warm-up SFT checkpoint RL starts from), sft-long (SFT
continued from that checkpoint on the RL phases' documents, their gold traces, for as many optimizer
steps as RL made: the control for "more training on longer documents") and rl. Gaps' standard
errors are paired (the arms answer the same items), so `gap > 2 * gap_se` reads as "beyond noise".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longrl.eval.benchmarks import SYNTHETIC_RE
from longrl.eval.metrics import standard_error


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
    return {"n_eval": n, "sft_accuracy": 100 * sum(a) / n, "rl_accuracy": 100 * sum(b) / n,
            "sft_se": 100 * standard_error(a), "rl_se": 100 * standard_error(b), "gap": 100 * sum(diff) / n,
            "gap_se": 100 * standard_error(diff)}


def arm_names(cfg) -> list[str]:
    """The evaluated policies in training order: base (before SFT), sft, sft-long (the control), rl."""
    start = "sft" if cfg.sft.data else "base"
    arms = ["base"] if cfg.eval.include_base and start == "sft" else []
    return arms + [start] + (["sft-long"] if cfg.sft.long_control else []) + ["rl"]


def arm_table(scores: dict[str, dict[str, float]], start: str) -> dict[str, Any]:
    """Accuracy and SE (%) of every arm on their common items; RL's paired gap to the start policy and
    to the SFT-long control."""
    pair = paired_comparison(scores[start], scores["rl"])
    out: dict[str, Any] = {k: pair[k] for k in ("n_eval", "sft_accuracy", "rl_accuracy", "sft_se", "rl_se", "gap", "gap_se")}
    out["arms"] = []                                  # a list: the order (training order) survives JSON
    for arm, by_id in scores.items():
        p = paired_comparison(by_id, scores["rl"])
        out["arms"].append({"arm": arm, "accuracy": p["sft_accuracy"], "se": p["sft_se"], "n_eval": p["n_eval"]})
    if "sft-long" in scores:
        control = paired_comparison(scores["sft-long"], scores["rl"])
        out["gap_vs_sft_long"], out["gap_vs_sft_long_se"] = control["gap"], control["gap_se"]
    return out


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _z(gap: float, se: float) -> float | None:
    return round(gap / se, 2) if se else None


def demo_summary(out: Path, cfg) -> dict[str, Any]:
    """summary.json: every arm's accuracy at each synthetic length, RL's paired gaps (to the policy it
    started from and to the SFT-long control), headline figures at the longest length."""
    lengths = sorted(int(m.group(1)) for b in cfg.eval.benchmarks if (m := SYNTHETIC_RE.match(b)))
    if not lengths:
        raise ValueError("the demo config needs synthetic-<length> suites in eval.benchmarks")
    arms = arm_names(cfg)
    start = "sft" if cfg.sft.data else "base"
    by_length = {}
    for length in lengths:
        scores = {arm: item_scores(out / "eval" / arm / f"synthetic-{length}" / "samples.jsonl") for arm in arms}
        by_length[str(length)] = _rounded(arm_table(scores, start))
    summary = dict(by_length[str(lengths[-1])])
    summary["z"] = _z(summary["gap"], summary["gap_se"])
    if "gap_vs_sft_long" in summary:
        summary["z_vs_sft_long"] = _z(summary["gap_vs_sft_long"], summary["gap_vs_sft_long_se"])
    return {**summary, "eval_length": lengths[-1], "eval_samples_per_item": cfg.eval.samples, "seed": cfg.run.seed,
            "start_policy": start, "by_length": by_length}
