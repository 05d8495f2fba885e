"""Scores of a benchmark from its per-sample rows: pass@1 averaged over n samples, unbiased pass@k.

    pass_at_k(n=10, c=3, k=1)     # 0.3
    pass_at_k(n=10, c=3, k=5)     # 1 - C(7,5)/C(10,5) = 0.9166...
    benchmark_metrics(rows_by_item, ks=[1, 4])

Unbiased pass@k (Chen et al. 2021, arXiv 2107.03374): with n samples of which c are correct,
the chance that k drawn without replacement contain a correct one is 1 - C(n-c, k) / C(n, k),
computed as a product so it never forms huge binomials. A sample is correct when its score is
>= 0.5 (scores are binary: max(rule, judge)); the headline `score` averages the raw scores, so it
equals pass@1 for binary scores.
"""

from __future__ import annotations

import math
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item.

    Args:
        n: samples drawn (>= 1).
        c: correct samples among them (0..n).
        k: samples the estimate is for (1..n).
    Returns:
        1 - C(n-c, k) / C(n, k), in [0, 1].

    Example: n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.
    """
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    miss = 1.0  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def is_correct(score: float) -> bool:
    return score >= 0.5


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def benchmark_metrics(items: list[list[dict[str, Any]]], ks: list[int]) -> dict[str, float]:
    """Aggregate of per-item rows (each item: its n rows with `score`, token counts, `finish`).

    Args:
        items: one list of n rows per item (n the same for all).
        ks: the k of the pass@k entries (each <= n).
    Returns:
        score (mean over items of the mean over samples, x100), score_se (its standard error over
        items, x100), pass@k (x100, for each k),
        prompt_tokens/mean, prompt_truncated_frac (items whose document was cut),
        response_tokens/mean, response_truncated_frac (completions that hit max_new_tokens),
        rule/<protocol> (x100, mean rule score under each protocol, when the rows record `rule_scores`).
    """
    if not items:
        return {"score": 0.0}
    n = len(items[0])
    per_item = [_mean([float(r["score"]) for r in rows]) for rows in items]
    out = {"score": 100.0 * _mean(per_item), "score_se": 100.0 * standard_error(per_item)}
    for k in sorted(set(ks)):
        correct = [sum(is_correct(float(r["score"])) for r in rows) for rows in items]
        out[f"pass@{k}"] = 100.0 * _mean([pass_at_k(n, c, k) for c in correct])
    rows = [r for item in items for r in item]
    out["prompt_tokens/mean"] = _mean([float(item[0]["prompt_tokens"]) for item in items])
    out["prompt_truncated_frac"] = _mean([float(item[0]["truncated_tokens"] > 0) for item in items])
    out["response_tokens/mean"] = _mean([float(r["completion_tokens"]) for r in rows])
    out["response_truncated_frac"] = _mean([float(r["finish"] == "length") for r in rows])
    for protocol in ("strict", "published"):
        values = [r["rule_scores"].get(protocol) for r in rows if isinstance(r.get("rule_scores"), dict)]
        if values and len(values) == len(rows) and all(v is not None for v in values):
            out[f"rule/{protocol}"] = 100.0 * _mean([float(v) for v in values])
    return out


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values` (sample standard deviation / sqrt(n)); 0 for n < 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
