"""Evaluation benchmarks: `longrl bench eval-server` and `longrl bench eval-overhead` (figures in benchmarks/eval.md).

eval-server: 1,000 items through the whole harness (prompt, server backend, hybrid reward,
per-item JSONL rows, summary) against a loopback OpenAI-compatible server that answers each
request after 200 ms, with 64 requests in flight. The floor is ceil(1000/64) x 0.2 s = 3.2 s;
the figure is the wall time and its ratio to that floor.

eval-overhead: what the harness spends per item outside the model at 120K-token documents:
render + tokenize + middle-truncate the prompt, score a reply, write its row. Reported with the
cost of one bare tokenizer pass over the same text (the floor any exact truncation pays) and of
`longrl.data.prompt.encode_prompt` (encode, then re-encode the cut prompt until it fits) as baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from longrl.bench import BENCHMARKS
from longrl.config.eval import EvalConfig
from longrl.config.reward import RewardConfig
from longrl.data.prompt import encode_prompt
from longrl.data.schema import Sample
from longrl.data.synthetic import synthesize
from longrl.eval.harness import evaluate
from longrl.eval.loopback import LoopbackServer, chat_reply
from longrl.eval.prompts import prepare_prompt, template_parts
from longrl.eval.records import SampleLog
from longrl.eval.remote import OpenAIBackend
from longrl.models.tokenizer import load_default_tokenizer
from longrl.rewards.hybrid import HybridReward, RewardInput


def _samples(n: int, words: int):
    filler = " ".join(f"Entry {i} notes that the ledger of unit {i % 97} was audited in period {i % 12}." for i in range(words // 12))
    return [Sample(f"item-{i:05d}", "qa", f"{filler} The code of item {i} is K{i}.", f"What is the code of item {i}?", [f"K{i}"])
            for i in range(n)]


def _answer_from_prompt(path: str, body) -> tuple[int, dict]:
    content = body["messages"][0]["content"]
    start = content.rindex("What is the code of item ") + len("What is the code of item ")
    item = int(content[start: content.index("?", start)])
    answer = f"K{item}" if item % 2 == 0 else "K0"  # half right, half wrong
    return 200, chat_reply([f"<think>The text says so.</think> Therefore, the answer is {answer}."] * body.get("n", 1))


@BENCHMARKS.register("eval-server")
def bench_eval_server(args: argparse.Namespace) -> dict:
    n, latency, concurrency = (200 if args.quick else 1000), 0.2, 64
    tokenizer = load_default_tokenizer()
    samples = _samples(n, 600)
    cfg = EvalConfig(benchmarks=["loopback"], concurrency=concurrency, max_new_tokens=64)
    with tempfile.TemporaryDirectory() as out, LoopbackServer(_answer_from_prompt, latency_s=latency) as server:
        backend = OpenAIBackend(server.url, "bench-model", tokenizer, concurrency=concurrency, api_key_env=None)
        start = time.perf_counter()
        summary = evaluate(backend, tokenizer, {"loopback": samples}, cfg, HybridReward(RewardConfig()), out, progress="none")
        wall = time.perf_counter() - start
        requests = len(server.requests)
    floor = -(-n // concurrency) * latency
    score = summary["benchmarks"]["loopback"]["score"]
    return {"items": n, "latency_s": latency, "concurrency": concurrency, "wall_s": round(wall, 2),
            "floor_s": round(floor, 2), "wall_over_floor": round(wall / floor, 2), "items_per_s": round(n / wall, 1),
            "requests": requests, "score": score, "target_s": 15.0 * n / 1000}


def _long_sample(tokenizer, tokens: int, index: int):
    """A sample whose document is about `tokens` tokens of the default tokenizer (synthetic text, repeated)."""


    base = synthesize(["multihop"], n=1, length=8000, seed=index, tokenizer=tokenizer)[0]
    per_copy = len(tokenizer.backend_tokenizer.encode_batch_fast([base.context], add_special_tokens=False)[0])
    copies = max(1, round(tokens / per_copy))
    return dataclasses.replace(base, id=f"long-{index}", context="\n\n".join([base.context] * copies))


@BENCHMARKS.register("eval-overhead")
def bench_eval_overhead(args: argparse.Namespace) -> dict:
    tokenizer = load_default_tokenizer()
    budget, n = 120_000, (3 if args.quick else 10)
    reward = HybridReward(RewardConfig())
    reply = "<think>" + "Reading the report, the relevant figure appears twice. " * 150 + "</think> Therefore, the answer is Rilu."
    results = {}
    for label, doc_tokens in [("over_budget_130k", 130_000), ("under_budget_110k", 110_000)]:
        samples = [_long_sample(tokenizer, doc_tokens, i) for i in range(n)]
        for s in samples[:1]:
            prepare_prompt(tokenizer, s, budget, with_ids=False)  # warm-up
        bare, prep, score, record, truncated, naive = [], [], [], [], [], []
        with tempfile.TemporaryDirectory() as out:
            log = SampleLog.open(Path(out) / "samples.jsonl", 1)
            for s in samples:
                before, after, _, _ = template_parts(tokenizer, s)
                text = before + s.context + after
                t0 = time.perf_counter()
                tokenizer.backend_tokenizer.encode_batch_fast([text], add_special_tokens=False)
                t1 = time.perf_counter()
                prompt = prepare_prompt(tokenizer, s, budget, with_ids=False)
                t2 = time.perf_counter()
                result = reward.score([RewardInput(s.task, s.question, s.answers, reply, 1000)])[0]
                t3 = time.perf_counter()
                log.append_item([{"id": s.id, "sample": 0, "prompt_tokens": prompt.tokens, "truncated_tokens": prompt.truncated_tokens,
                                  "completion": reply, "score": result.score}])
                t4 = time.perf_counter()
                encode_prompt(tokenizer, s, budget)  # baseline: render, encode, re-encode the cut prompt until it fits
                naive.append(time.perf_counter() - t4)
                bare.append(t1 - t0), prep.append(t2 - t1), score.append(t3 - t2), record.append(t4 - t3)
                truncated.append(prompt.truncated_tokens)
            log.close()
        ms = lambda xs: round(1000 * statistics.median(xs), 2)  # noqa: E731
        results[label] = {"prompt_ms": ms(prep), "score_ms": ms(score), "record_ms": ms(record),
                          "overhead_ms": round(ms(prep) + ms(score) + ms(record), 2), "bare_tokenizer_pass_ms": ms(bare),
                          "overhead_beyond_one_tokenizer_pass_ms": round(ms(prep) + ms(score) + ms(record) - ms(bare), 2),
                          "truncated_tokens": int(statistics.median(truncated)),
                          "baseline_encode_prompt_ms": ms(naive), "speedup_vs_baseline": round(ms(naive) / ms(prep), 2)}
    return {"items": n, "max_input_tokens": budget, **results, "target_ms": 5.0}
