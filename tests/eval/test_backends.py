"""The local backend: the tiny model end to end through the harness, seeded and resumable."""

from __future__ import annotations

import asyncio
import json

import pytest

from longrl.config import Config
from longrl.config.eval import EvalConfig
from longrl.config.reward import RewardConfig
from longrl.engine.generate import stop_token_ids
from longrl.errors import ConfigError
from longrl.eval.backends import LocalBackend, build_backend, eval_tokenizer
from longrl.eval.harness import evaluate
from longrl.eval.prompts import prepare_prompt
from longrl.eval.protocol import GenerationParams, Request
from longrl.rewards.hybrid import HybridReward


@pytest.fixture()
def local(tiny_model_dir):
    cfg = Config.model_validate({"model": {"path": str(tiny_model_dir)}, "run": {"device": "cpu"},
                                 "eval": {"batch_size": 2, "max_new_tokens": 6, "samples": 2}})
    tokenizer = eval_tokenizer(cfg)
    return build_backend(cfg, tokenizer), tokenizer, cfg


def test_local_backend_samples_n_per_prompt_with_seeds(local, samples):
    backend, tokenizer, _ = local
    assert isinstance(backend, LocalBackend) and backend.needs_ids and backend.batch_size == 2
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer, backend.model)
    requests = [Request(f"s/{s.id}", prepare_prompt(tokenizer, s, 4096), seed=i) for i, s in enumerate(samples[:3])]
    params = GenerationParams(max_new_tokens=6, temperature=1.0, top_p=1.0)
    out = asyncio.run(backend.complete(requests, 3, params))
    assert [len(item) for item in out] == [3, 3, 3]
    for item in out:
        for c in item:
            assert 1 <= c.tokens <= 6 and isinstance(c.text, str)
            assert c.tokens == 6 or not c.truncated  # only a reply at the limit can be cut
    alone = asyncio.run(backend.complete(requests[1:2], 3, params))  # same seed, other batch: same samples
    assert [c.text for c in alone[0]] == [c.text for c in out[1]]
    greedy = GenerationParams(max_new_tokens=6, temperature=0.0, top_p=1.0)
    first = asyncio.run(backend.complete(requests[:1], 2, greedy))[0]
    assert first[0].text == first[1].text


def test_local_backend_through_the_harness_and_resume(local, samples, tmp_path):
    backend, tokenizer, cfg = local
    suites = {"synthetic-200": samples[:4]}
    summary = evaluate(backend, tokenizer, suites, cfg.eval, HybridReward(RewardConfig()), tmp_path, seed=1, progress="none")
    entry = summary["benchmarks"]["synthetic-200"]
    assert entry["n"] == 4 and entry["samples"] == 2 and 0.0 <= entry["score"] <= 100.0
    assert summary["model"] == cfg.model.path
    rows = [json.loads(x) for x in (tmp_path / "synthetic-200" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["completion_tokens"] <= 6 for r in rows)
    assert {r["finish"] for r in rows} <= {"stop", "length"}
    again = evaluate(backend, tokenizer, suites, cfg.eval, HybridReward(RewardConfig()), tmp_path, seed=1, progress="none")
    assert again["benchmarks"] == summary["benchmarks"]
    assert len((tmp_path / "synthetic-200" / "samples.jsonl").read_text().splitlines()) == 8  # nothing generated again


def test_server_needs_a_tokenizer():
    cfg = Config.model_validate({"eval": {"model": "http://127.0.0.1:9/v1"}})
    with pytest.raises(ConfigError, match="--tokenizer"):
        eval_tokenizer(cfg)
    assert EvalConfig().max_input_tokens == 120_000


def test_eval_dtype_loads_the_evaluated_model_in_it(tiny_model_dir):
    import torch

    base = {"model": {"path": str(tiny_model_dir), "gradient_checkpointing": True}, "run": {"device": "cpu"}}
    default = Config.model_validate(base)
    assert next(build_backend(default, eval_tokenizer(default)).model.parameters()).dtype == torch.float32
    cfg = Config.model_validate({**base, "eval": {"dtype": "bfloat16"}})
    backend = build_backend(cfg, eval_tokenizer(cfg))
    assert next(backend.model.parameters()).dtype == torch.bfloat16
    assert cfg.model.dtype == "float32"                       # training keeps model.dtype
