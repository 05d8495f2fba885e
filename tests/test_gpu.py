"""End-to-end runs of every stage on a CUDA device (marked `gpu`: skipped where there is none).

`benchmarks/gpu_check.sh` runs these on a GPU machine together with the CUDA benchmarks. Each test
is the command a user types, with `run.device=cuda`, on the tiny random model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longrl.cli import main
from longrl.tracking import read_metrics

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
TINY = ("model.tiny={hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, "
        "intermediate_size: 128, max_position_embeddings: 4096}")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rl_smoke_on_cuda(tmp_path, dtype):
    out = tmp_path / f"rl-{dtype}"
    assert main(["rl", "--config", SMOKE, "--out", str(out), "run.device=cuda", f"model.dtype={dtype}",
                 "train.steps=2", "run.progress=none"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert len(rows) == 2 and all(r["optim/updates"] >= 1 for r in rows) and rows[-1]["kl"] is not None
    assert (out / "final" / "model.safetensors").exists()


def test_sft_on_cuda(tmp_path):
    data = tmp_path / "demos.jsonl"
    assert main(["data", "synth", "--tasks", "multihop,docmath", "--n", "8", "--length", "200", "--out", str(data)]) == 0
    out = tmp_path / "sft"
    assert main(["sft", "--out", str(out), "run.device=cuda", "model.path=random", TINY, f"sft.data=[{{path: {data}}}]",
                 "sft.steps=2", "sft.batch_tokens=2048", "run.progress=none"]) == 0
    assert len(read_metrics(out / "metrics.jsonl")) == 2 and (out / "final" / "model.safetensors").exists()


def test_eval_local_on_cuda(tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--model", "builtin:tiny-base", "--benchmarks", "synthetic-256", "--out", str(out),
                 "run.device=cuda", "eval.synthetic.n=6", "eval.max_new_tokens=16", "eval.temperature=0",
                 "run.progress=none"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["synthetic-256"]["n"] == 6


def test_pretrain_on_cuda(tmp_path):
    out = tmp_path / "base"
    assert main(["pretrain", "--out", str(out), "run.device=cuda", "pretrain.steps=2", "pretrain.batch_tokens=1024",
                 "pretrain.architecture={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
                 "num_key_value_heads: 1, intermediate_size: 64, max_position_embeddings: 1024}",
                 "pretrain.min_length=96", "pretrain.max_length=160", "pretrain.eval_items=4",
                 "pretrain.eval_max_new_tokens=8", "pretrain.warmup_steps=0", "run.progress=none"]) == 0
    assert (out / "final" / "PROVENANCE.json").exists()


def test_cuda_is_really_used():
    assert torch.cuda.is_available() and torch.zeros(1, device="cuda").device.type == "cuda"
