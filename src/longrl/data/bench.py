"""Benchmark of synthetic data generation, memoised tokenization against plain tokenizer calls.

    longrl bench synth [--json FILE] [--quick]

What `longrl pretrain` makes for every item, and `longrl data synth` for every sample: a synthetic
document filled to a token length (each filler sentence measured as it is added, the whole prompt
counted, a correction when off), then the prompt and the reply as token ids. Two ways, timed on
the same items in one process, interleaved so a busy machine slows both alike:

- baseline: every count and encoding is a `tokenizer.encode` call (how the generator worked before
  `PieceTokenizer`): ~25K tokens/s on one core of the 2-core machine.
- longrl: the same generator with a `PieceTokenizer` (memoised pre-tokens and sentences, the chat
  template rendered once per item), warmed up on other items first as a long pretraining run is.

Both must produce identical samples and ids (checked). Items: the four families round-robin at
each length of `LENGTHS` (the pretraining range and longer documents). Figures: benchmarks/synth.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from longrl.data.prompt import encode_prompt
from longrl.data.synthetic import synthesize
from longrl.data.tokens import PieceTokenizer

LENGTHS = [256, 384, 1024, 4096]
TASKS = ["lookup", "multihop", "docmath", "choice"]
ITEMS = 24     # per length and timed pass
REPEATS = 3


def make_items(tokenizer, length: int, n: int, seed: int) -> tuple[list, int]:
    """`n` samples at `length` and their prompt + reply token ids; returns (ids per item, total tokens)."""
    rows = []
    for i in range(n):
        sample = synthesize([TASKS[i % len(TASKS)]], 1, length, seed * 100_003 + i, tokenizer=tokenizer)[0]
        rows.append(encode_prompt(tokenizer, sample).ids + tokenizer.encode(sample.trace, add_special_tokens=False))
    return rows, sum(len(r) for r in rows)


def measure(tokenizer, lengths: list[int], items: int, repeats: int) -> dict:
    plain, fast = PieceTokenizer(tokenizer, memoise=False), PieceTokenizer(tokenizer)
    for length in lengths:                                   # warm-up: other seeds, as a running stream would be
        make_items(fast, length, items, seed=-1)
    result = {}
    for length in lengths:
        times: dict[str, list[float]] = {"baseline": [], "longrl": []}
        tokens = 0
        for r in range(repeats):
            for name, tok in (("baseline", plain), ("longrl", fast)):
                start = time.perf_counter()
                rows, tokens = make_items(tok, length, items, seed=r)
                times[name].append(time.perf_counter() - start)
                if name == "baseline":
                    expected = rows
                elif rows != expected:
                    raise AssertionError(f"length {length}: memoised tokenization differs from the tokenizer's")
        best = {k: statistics.median(v) for k, v in times.items()}
        result[str(length)] = {"tokens": tokens, "baseline_tokens_per_s": round(tokens / best["baseline"]),
                               "longrl_tokens_per_s": round(tokens / best["longrl"]),
                               "speedup": round(best["baseline"] / best["longrl"], 2)}
    return result


def bench_synth(args: argparse.Namespace, tokenizer) -> dict:
    """Tokens/s of synthetic item generation with `tokenizer`, memoised vs plain calls (see the module docstring).

    Registered as `longrl bench synth` by `longrl.cli.bench`, which loads the default tokenizer.
    """
    if args.quick:
        return {"lengths": measure(tokenizer, [256], 4, 1)}
    per_length = measure(tokenizer, LENGTHS, ITEMS, REPEATS)
    total = {k: sum(v[k] for v in per_length.values()) for k in ("tokens",)}
    return {"items_per_length": ITEMS, "tasks": TASKS, "lengths": per_length,
            "speedup_min": min(v["speedup"] for v in per_length.values()), **total}
