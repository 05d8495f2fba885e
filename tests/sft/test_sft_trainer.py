"""The SFT loop: schedule, chunked loss, learning, metrics, final model, exact resume (in process and after SIGKILL)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from longrl.config import load_config
from longrl.data.io import write_samples
from longrl.engine.packed import packed_attention
from longrl.sft.packing import encode_examples, micro_batches
from longrl.sft.trainer import (
    lr_factor,
    settings_from_sft,
    token_nll,
    train_loop,
    train_sft,
)
from longrl.tracking import read_metrics

TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 4096}


def tiny_cfg(lora=None, **sft):
    raw = {"model": {"path": "random", "tiny": TINY, "lora": lora}, "run": {"torch_threads": 2, "save_every": 2, "progress": "none"},
           "sft": {"lr": 3e-3, "batch_tokens": 1000, "eval_fraction": 0.2, "eval_every": 2, "warmup_steps": 1, **sft}}
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in raw.items()])


def test_lr_factor_matches_hand_values():
    assert [lr_factor(s, 7, 3, "constant") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = [lr_factor(s, 4, 0, "cosine") for s in range(4)]
    assert cosine == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    assert [lr_factor(s, 4, 0, "linear", 0.2) for s in range(4)] == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert lr_factor(10, 4, 0, "cosine", 0.1) == pytest.approx(0.1)   # past the end: the floor


def test_chunked_loss_equals_unchunked_in_value_and_gradient(tokenizer, samples, tiny_model):
    examples, _ = encode_examples(tokenizer, samples[:4])
    batch = micro_batches(examples, 4000, 1000)[0]
    assert batch.n_labels > 2 * 39
    results = []
    for chunk_mb in (256.0, 0.2):                                     # 0.2 MB = 39 rows of logits per chunk
        tiny_model.zero_grad()
        with packed_attention(tiny_model):
            nll = token_nll(tiny_model, batch, chunk_mb)
        nll.sum().backward()
        results.append((nll.detach(), [p.grad.clone() for p in tiny_model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_stays_close_to_fp32(tokenizer, samples, tiny_model):
    from longrl.sft.trainer import autocast

    examples, _ = encode_examples(tokenizer, samples[:3])
    batch = micro_batches(examples, 4000, 1000)[0]
    with packed_attention(tiny_model), torch.no_grad():
        exact = token_nll(tiny_model, batch)
        with autocast(tiny_model, True):
            fast = token_nll(tiny_model, batch)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast.mean(), exact.mean(), rtol=2e-2, atol=0.0)


def test_sft_learns_and_writes_a_loadable_model(tmp_path, samples):
    from longrl.config.model import ModelConfig
    from longrl.models.loading import load_policy, load_tokenizer

    cfg = tiny_cfg(epochs=4)
    final = train_sft(cfg, tmp_path / "run", examples=samples)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 8
    assert {"step", "phase", "loss/total", "optim/lr", "optim/grad_norm", "tokens_per_s", "batch/tokens",
            "batch/label_tokens", "time/step"} <= set(rows[0])
    assert all(r["phase"] == "sft" for r in rows)
    assert rows[-1]["loss/total"] < rows[0]["loss/total"] - 1.0     # learns within a few steps
    evals = [r["loss/eval"] for r in rows if "loss/eval" in r]
    assert len(evals) == len(rows) // 2 and evals[-1] < evals[0]     # every 2 steps, held-out loss falls too
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["train_examples"] + summary["eval_examples"] == len(samples)
    model = load_policy(ModelConfig(path=str(final)))
    tokenizer = load_tokenizer(ModelConfig(path=str(final)))
    assert tokenizer.eos_token == "<|im_end|>" and model.config.hidden_size == 64
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert train_sft(cfg, tmp_path / "run", examples=samples) == final   # finished: nothing redone
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_interrupted_loop_resumes_to_identical_weights(tmp_path, tokenizer, samples, tiny_arch):
    from longrl.models.tiny import build_tiny_model

    cfg = tiny_cfg(steps=6)
    examples, _ = encode_examples(tokenizer, samples)
    steps = [examples[i:i + 3] for i in range(0, 12, 2)]             # 6 steps, overlapping on purpose
    settings = settings_from_sft(cfg, 6)

    def run(out: Path, stop_at: int | None = None):
        model = build_tiny_model(tiny_arch, tokenizer)

        def examples_at(step):
            if step == stop_at:
                raise KeyboardInterrupt
            return steps[step - 1]

        train_loop(model, examples_at, settings, out, examples[-2:], tokenizer.pad_token_id)
        return model

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=5)                               # dies before step 5; newest checkpoint: step 4
    resumed = run(tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows_a, rows_b = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4, 5, 6]         # each step logged once
    assert [r["loss/total"] for r in rows_a] == [r["loss/total"] for r in rows_b]


def test_lora_sft_trains_only_adapters_and_resumes_exactly(tmp_path, samples):
    import shutil

    from longrl.models.loading import load_policy

    lora = {"rank": 4, "alpha": 16, "target_modules": ["q_proj", "v_proj", "down_proj"], "dropout": 0.1}
    cfg = tiny_cfg(lora, steps=6)
    straight = train_sft(cfg, tmp_path / "a", examples=samples)
    train_sft(cfg, tmp_path / "b", examples=samples)
    shutil.rmtree(tmp_path / "b" / "final")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000006")   # killed after step 6, before its save
    resumed = train_sft(cfg, tmp_path / "b", examples=samples)

    ckpt = tmp_path / "a" / "checkpoints" / "step-00000006"
    assert not (ckpt / "model.safetensors").exists()
    assert all(".lora_" in k for k in load_file(str(ckpt / "trainable.safetensors")))   # adapters only
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)                   # dropout included: the same RNG streams
    base = {k: v.detach() for k, v in load_policy(cfg.model).named_parameters()}
    assert sorted(base) == sorted(k for k in a if k != "lm_head.weight")   # merged: a plain model folder
    changed = sorted(k for k in base if not torch.equal(base[k], a[k]))
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight")) for k in changed)
    rows = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert rows[-1]["loss/total"] < rows[0]["loss/total"]


def test_bad_settings_fail_before_any_work(tmp_path):
    from longrl.errors import ConfigError

    with pytest.raises(ConfigError, match="sft.data is empty"):
        train_sft(tiny_cfg(), tmp_path / "x")
    with pytest.raises(ConfigError, match="micro_batch_tokens"):
        tiny_cfg(micro_batch_tokens=5000)


@pytest.mark.slow
def test_sigkill_and_rerun_gives_the_uninterrupted_weights(tmp_path, samples):
    data = tmp_path / "demos.jsonl"
    write_samples(data, samples)
    small = {**TINY, "hidden_size": 32, "num_hidden_layers": 1}
    raw = {"model": {"path": "random", "tiny": small}, "run": {"torch_threads": 2, "save_every": 2, "progress": "none"},
           "sft": {"data": [{"path": str(data)}], "lr": 3e-3, "batch_tokens": 700, "steps": 10, "eval_every": 5}}
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump(raw))
    from longrl.cli import main

    assert main(["sft", "--config", str(config), "--out", str(tmp_path / "straight")]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    command = [sys.executable, "-m", "longrl.cli", "sft", "--config", str(config), "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = tmp_path / "killed" / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists(), proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "killed" / "final").exists()               # really killed mid-run
    assert main(["sft", "--config", str(config), "--out", str(tmp_path / "killed")]) == 0
    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(tmp_path / "killed" / "metrics.jsonl")]
    assert steps == list(range(1, 11))
