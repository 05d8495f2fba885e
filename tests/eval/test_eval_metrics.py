"""pass@k against brute-force enumeration; benchmark aggregates computed by hand."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from longrl.eval.metrics import benchmark_metrics, pass_at_k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_closed_form_and_edges():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert 0.0 < pass_at_k(200, 1, 100) <= 1.0  # large n: no overflow
    for bad in [(3, 1, 0), (3, 1, 4), (3, 4, 1), (0, 0, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def row(score, prompt_tokens=100, truncated=0, tokens=10, finish="stop"):
    return {"score": score, "prompt_tokens": prompt_tokens, "truncated_tokens": truncated, "completion_tokens": tokens, "finish": finish}


def test_benchmark_metrics_by_hand():
    items = [
        [row(1.0, 100, 0, 10), row(0.0, 100, 0, 30, "length"), row(1.0, 100, 0, 20)],  # 2 of 3 right
        [row(0.0, 300, 50, 40), row(0.0, 300, 50, 50), row(0.0, 300, 50, 60, "length")],  # none right, prompt cut
    ]
    m = benchmark_metrics(items, [1, 2])
    assert m["score"] == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert m["pass@1"] == pytest.approx(m["score"])
    assert m["pass@2"] == pytest.approx(100 * (1 - math.comb(1, 2) / math.comb(3, 2) + 0) / 2)  # item 1: 1.0, item 2: 0
    assert m["prompt_tokens/mean"] == 200 and m["prompt_truncated_frac"] == 0.5
    assert m["response_tokens/mean"] == pytest.approx(35) and m["response_truncated_frac"] == pytest.approx(2 / 6)


def test_benchmark_pass_at_k_matches_enumeration_over_random_items():
    rng = random.Random(0)
    n = 6
    items = [[row(float(rng.random() < 0.4)) for _ in range(n)] for _ in range(25)]
    for k in range(1, n + 1):
        expected = 100 * sum(brute_force_pass_at_k(n, sum(r["score"] for r in item), k) for item in items) / len(items)
        assert benchmark_metrics(items, [k])[f"pass@{k}"] == pytest.approx(expected)
