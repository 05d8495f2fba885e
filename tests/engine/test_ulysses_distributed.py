"""Ulysses sequence parallelism on 2 and 4 gloo ranks gives the 1-rank losses, gradients and weights.

`ulysses_worker.py` trains the tiny model two RL steps with the shared-prompt forward, two with the
per-sample forward (old and reference log-probs, KL, entropy bonus, several micro-batches per
mini-batch) and two SFT steps through the real SFT loop (packed rows, eval loss), then takes one
more gradient. It runs once in this process (one rank, no sequence parallelism) and under
torchrun: 2 ranks at sequence_parallel 2 (each rank holds half of every sequence), and 4 ranks as
data parallel 2 x sequence parallel 2.

Gradients: relative differences <= 1e-5 per tensor, except the key projections' biases (softmax
ignores a shift common to every key, so their exact gradient is 0: both runs hold rounding noise
there), and over the whole model. Weights: <= 1e-5 per tensor for the tensors that start non-zero
and over the whole model; <= 1e-4 for the biases that start at 0 (all update: AdamW's m / sqrt(v)
turns rounding-level differences of their near-zero gradient elements into ~1e-5 of the update,
2e-7 absolute at lr 1e-3).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]   # each torchrun takes ~30 s on 2 cores
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ulysses_worker.py")
PARTS = ["rl_shared", "rl_per_sample", "sft"]
COMPARED = ["loss/total", "loss/policy", "entropy", "kl", "optim/grad_norm", "loss/eval", "update/tokens",
            "batch/label_tokens"]


def worker():
    spec = importlib.util.spec_from_file_location("ulysses_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(model_dir: Path, out: Path, nproc: int, sp: int, device: str = "cpu") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    cmd = [sys.executable, *launch, str(WORKER), str(model_dir), str(out), str(sp), device]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    return torch.load(out / f"results-{nproc}.pt", weights_only=False, map_location="cpu")


def relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names: list[str]) -> float:
    """Largest ||a - b|| / ||b|| over the tensors `names` (0 for none)."""
    return max((float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in names), default=0.0)


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], per_tensor: list[str]) -> dict[str, float]:
    """Largest relative difference over the tensors `per_tensor`, over the others, and over all as one vector."""
    assert a.keys() == b.keys()
    return {"tensor": relative(a, b, per_tensor), "others": relative(a, b, [k for k in b if k not in per_tensor]),
            "all": float(sum((a[k] - b[k]).norm() ** 2 for k in b) ** 0.5 / sum(b[k].norm() ** 2 for k in b) ** 0.5)}


def start_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("one")
    torch.set_num_threads(1)
    return worker().results(tiny_model_dir, out, 1)


def check_equal(one: dict, many: dict, label: str, start: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    for part in PARTS:
        a, b = one[part], many[part]
        rows_a, rows_b = a["metrics"], b["metrics"]
        assert len(rows_a) == len(rows_b) == 2
        for ra, rb in zip(rows_a, rows_b):
            for key in COMPARED:
                if key in ra:
                    assert rb[key] == pytest.approx(ra[key], rel=tol, abs=1e-9), (part, key)
        if "loss" in a:
            assert b["loss"] == pytest.approx(a["loss"], rel=tol), part
        assert all(float((a["weights"][k] - start[k]).abs().max()) > 0 for k in start), part   # every tensor trained
        grads = compare(b["grads"], a["grads"], [k for k in a["grads"] if not k.endswith("k_proj.bias")])
        weights = compare(b["weights"], a["weights"], [k for k in a["weights"] if k not in start or start[k].norm() > 0])
        print(f"{label} {part}: gradients {grads}, weights {weights}")
        assert grads["tensor"] <= tol and grads["all"] <= tol, (part, grads)
        assert weights["tensor"] <= tol and weights["all"] <= tol and weights["others"] <= 10 * tol, (part, weights)


def test_two_ranks_at_sequence_parallel_2_match_one_rank(one_rank, tiny_model_dir, tmp_path):
    check_equal(one_rank, torchrun(tiny_model_dir, tmp_path, nproc=2, sp=2), "sp2", start_weights(tiny_model_dir))


def test_four_ranks_as_data_2_x_sequence_2_match_one_rank(one_rank, tiny_model_dir, tmp_path):
    check_equal(one_rank, torchrun(tiny_model_dir, tmp_path, nproc=4, sp=2), "dp2xsp2", start_weights(tiny_model_dir))


def test_longrl_rl_under_torchrun_at_sequence_parallel_2_ends_with_the_one_process_weights(tiny_model_dir, tmp_path):
    """The command itself (rollout, reward, update, checkpoints, final folder) at train.sequence_parallel=2."""
    from longrl.cli import main
    from longrl.tracking import read_metrics

    args = [f"model.path={tiny_model_dir}", "run.progress=none", "run.torch_threads=1", "train.steps=2", "rollout.max_new_tokens=16", "reward.overlong.buffer=16",
            "algo.kl_coef=0.01", "optim.lr=1e-3", "train.micro_batch_tokens=300"]
    command = ["rl", "--config", str(ROOT / "configs" / "smoke.yaml")]
    assert main([*command, "--out", str(tmp_path / "one"), *args]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "longrl.cli", *command, "--out", str(tmp_path / "two"), *args, "train.sequence_parallel=2"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    start = start_weights(tiny_model_dir)
    one, two = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("one", "two"))
    weights = compare(two, one, [k for k in one if start[k].norm() > 0])
    print(f"longrl rl, 2 ranks at sequence_parallel 2 vs 1 process: weights {weights}")
    assert weights["tensor"] <= 1e-5 and weights["all"] <= 1e-5 and weights["others"] <= 1e-4
    rows1, rows2 = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["dist/sequence_parallel"] for r in rows2] == [2, 2] and [r["dist/world_size"] for r in rows2] == [2, 2]
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1["update/tokens"] == r2["update/tokens"] and r1["reward/mean"] == r2["reward/mean"]
        for key in ["loss/total", "entropy", "kl", "optim/grad_norm"]:
            assert r2[key] == pytest.approx(r1[key], rel=1e-5), key


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL: one rank per GPU)")
def test_two_gpus_at_sequence_parallel_2_match_one_gpu(tiny_model_dir, tmp_path):
    """The NCCL path: 2 GPUs at sequence_parallel 2 against one GPU (CUDA kernels round differently: 1e-4)."""
    one = torchrun(tiny_model_dir, tmp_path, nproc=1, sp=1, device="cuda")
    two = torchrun(tiny_model_dir, tmp_path, nproc=2, sp=2, device="cuda")
    check_equal(one, two, "cuda sp2", start_weights(tiny_model_dir), tol=1e-4)
