"""RL and SFT under torchrun (gloo, 2 CPU ranks) with `train.offload` / `sft.offload`: the weights of the same run
without offload, sharded checkpoints that resume to them, and the CPU offload policy recorded in the resolved config.

On the CPU the offloaded shards stay where they were (the device is the CPU), so equality here checks the wiring:
the offload policy on every FSDP2 group, the optimizer built on the offloaded shards, checkpoints written from and
loaded into them. tests/engine/test_offload.py checks where each tensor lives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_distributed import STEPS, finish, overrides, relative_difference, rewound, weights

from longrl.config import load_config
from longrl.tracking import read_metrics

pytestmark = pytest.mark.slow          # five torchrun runs of 2 ranks (about 3 minutes on 2 cores)
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
BOTH = ["train.offload.params=true", "train.offload.optimizer=true"]
SFT = ["sft.data=[{synth: {tasks: [multihop, docmath], n: 12, length: 160, seed: 1}}]", "sft.steps=4",
       "sft.batch_tokens=1024", "sft.row_tokens=512", "sft.lr=1e-3", "sft.eval_fraction=0.0", "run.save_every=2",
       "run.progress=none", "run.torch_threads=1"]


def launch(command: str, out: Path, args: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "longrl.cli", command, "--config", str(SMOKE), "--out", str(out), *args]
    return finish(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))


@pytest.fixture(scope="module")
def rl_runs(tmp_path_factory, stoppy_model_dir):
    root = tmp_path_factory.mktemp("offload")
    torch.set_num_threads(1)
    launch("rl", root / "plain", overrides(stoppy_model_dir))
    launch("rl", root / "offload", overrides(stoppy_model_dir) + BOTH)
    return root / "plain", root / "offload"


def test_rl_with_offload_ends_with_the_weights_of_rl_without(rl_runs, stoppy_model_dir):
    plain, offload = rl_runs
    start = load_file(str(stoppy_model_dir / "model.safetensors"))
    a, b = weights(plain), weights(offload)
    diff = relative_difference(b, a)
    print(f"RL, 2 ranks, offload vs none: relative difference of weights {diff:.1e}")
    assert diff <= 1e-6 and relative_difference(a, start) > 1e-4              # trained, and trained alike
    assert load_config(offload / "config.yaml").train.offload.params            # the run recorded its offload
    rows = read_metrics(offload / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r1, r2 in zip(read_metrics(plain / "metrics.jsonl"), rows):
        assert r2["loss/total"] == pytest.approx(r1["loss/total"], rel=1e-6, abs=1e-9)


def test_an_offloaded_run_resumes_from_its_sharded_checkpoint_to_the_same_weights(rl_runs, stoppy_model_dir, tmp_path):
    _, offload = rl_runs
    copy = rewound(offload, tmp_path / "copy")                                  # back at its step-4 checkpoint
    launch("rl", copy, overrides(stoppy_model_dir) + BOTH)
    assert relative_difference(weights(copy), weights(offload)) <= 1e-6
    assert [r["step"] for r in read_metrics(copy / "metrics.jsonl")] == list(range(1, STEPS + 1))


def test_sft_with_offload_ends_with_the_weights_of_sft_without(tmp_path):
    launch("sft", tmp_path / "plain", SFT)
    launch("sft", tmp_path / "offload", SFT + ["sft.offload.params=true", "sft.offload.optimizer=true"])
    a, b = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("plain", "offload"))
    diff = relative_difference(b, a)
    print(f"SFT, 2 ranks, offload vs none: relative difference of weights {diff:.1e}")
    assert diff <= 1e-6
    assert [r["step"] for r in read_metrics(tmp_path / "offload" / "metrics.jsonl")] == [1, 2, 3, 4]
