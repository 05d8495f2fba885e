"""Benchmark of the SFT loop's training step, against a plain padded Hugging Face step in the same process.

    longrl bench sft [--json FILE] [--tiny] [--quick] [--threads N]

One optimizer step over `BATCH_TOKENS` tokens of examples 128-512 tokens long (48 reply tokens
each, the loss on those only), for the two shapes the embedded default is made in: hidden 128 / 2
layers and hidden 256 / 4 layers (GQA 4/2 heads, the shipped 1.3K-token vocabulary).

- longrl: `micro_batches` (first-fit packing into rows of `ROW_TOKENS`, block-diagonal attention
  `engine/packed.py`), `token_nll` (LM head on reply positions only), AdamW: what `train_loop` runs.
- longrl_bf16: the same under `torch.autocast(bfloat16)` (`sft.bf16_autocast: true`); pays off on
  CPUs with AMX / AVX512-BF16 and on GPUs, costs on others.
- baseline: what a plain loop does: examples in data order, one per row, padded to the longest of
  a micro-batch of the same token budget, `model(input_ids, attention_mask, labels)` (full logits).

Each figure is the median of `REPEATS` timed steps after one warm-up, the two steps interleaved so
a busy machine slows both alike; tokens/s counts real tokens (padding excluded). `--tiny` runs only
the hidden-128 shape, `--quick` a small shape and budget (a check that it runs). Figures:
benchmarks/sft.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from longrl.bench import BENCHMARKS
from longrl.config.model import TinyArchConfig
from longrl.engine.packed import packed_attention
from longrl.models.tiny import build_tiny_model
from longrl.models.tokenizer import load_default_tokenizer
from longrl.sft.packing import Example, micro_batches
from longrl.sft.trainer import autocast, token_nll

BATCH_TOKENS = 8192
ROW_TOKENS = 2048
REPLY_TOKENS = 48
REPEATS = 5
SHAPES = {"h128_l2": (128, 2, 512), "h256_l4": (256, 4, 768)}


def bench_examples(budget: int, seed: int = 0, low: int = 128, high: int = 512) -> list:
    """Random-token examples of lengths in [low, high] filling `budget` tokens, the last REPLY_TOKENS as reply."""

    rng = random.Random(seed)
    examples, used = [], 0
    while True:
        n = rng.randint(low, high)
        if used + n > budget:
            return examples
        examples.append(Example(str(len(examples)), [rng.randrange(3, 1300) for _ in range(n)], n - REPLY_TOKENS))
        used += n


def longrl_step(model, optimizer, examples: list, budget: int, row_tokens: int, bf16: bool = False) -> None:
    batches = micro_batches(examples, budget, row_tokens)
    n_labels = sum(b.n_labels for b in batches)
    optimizer.zero_grad(set_to_none=True)
    with packed_attention(model):
        for batch in batches:
            with autocast(model, bf16):
                loss = token_nll(model, batch).sum() / n_labels
            loss.backward()
    optimizer.step()


def padded_step(model, optimizer, examples: list, budget: int) -> None:
    """One example per row, data order, padded to the micro-batch's longest; HF loss on full logits."""
    optimizer.zero_grad(set_to_none=True)
    groups, group = [], []
    for ex in examples:
        if group and max(e.n_tokens for e in group + [ex]) * (len(group) + 1) > budget:
            groups.append(group)
            group = []
        group.append(ex)
    groups.append(group)
    n_labels = sum(e.n_labels for e in examples)
    for group in groups:
        width = max(e.n_tokens for e in group)
        ids = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, ex in enumerate(group):
            ids[r, :ex.n_tokens] = torch.tensor(ex.ids)
            mask[r, :ex.n_tokens] = 1
            labels[r, ex.n_prompt:ex.n_tokens] = torch.tensor(ex.ids[ex.n_prompt:])
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        (out.loss * sum(e.n_labels for e in group) / n_labels).backward()
    optimizer.step()


def measure(shape: tuple[int, int, int], budget: int, repeats: int) -> dict:
    hidden, layers, inter = shape
    model = build_tiny_model(TinyArchConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                            num_key_value_heads=2, intermediate_size=inter), load_default_tokenizer())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    examples = bench_examples(budget)
    tokens = sum(e.n_tokens for e in examples)
    runs = {"longrl": lambda: longrl_step(model, optimizer, examples, budget, ROW_TOKENS),
            "longrl_bf16": lambda: longrl_step(model, optimizer, examples, budget, ROW_TOKENS, bf16=True),
            "padded": lambda: padded_step(model, optimizer, examples, budget)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():                                   # warm-up
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    best = {name: statistics.median(t) for name, t in times.items()}
    return {"parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "tokens": tokens,
            "examples": len(examples), "longrl_tokens_per_s": round(tokens / best["longrl"]),
            "longrl_bf16_tokens_per_s": round(tokens / best["longrl_bf16"]),
            "padded_tokens_per_s": round(tokens / best["padded"]), "speedup": round(best["padded"] / best["longrl"], 2),
            "bf16_speedup": round(best["longrl"] / best["longrl_bf16"], 2)}


@BENCHMARKS.register("sft")
def bench_sft(args: argparse.Namespace) -> dict:
    """Training-step throughput of the SFT loop vs a padded HF step (see the module docstring)."""
    if args.quick:
        return {"shapes": {"h32_l1": measure((32, 1, 64), 1024, 1)}}
    shapes = {"h128_l2": SHAPES["h128_l2"]} if args.tiny else SHAPES
    return {"batch_tokens": BATCH_TOKENS, "row_tokens": ROW_TOKENS, "lengths": "128-512",
            "shapes": {name: measure(shape, BATCH_TOKENS, REPEATS) for name, shape in shapes.items()}}
