"""RL under torchrun on the CPU (gloo, 2 processes, 1 thread each): the same weights as one process, exact resume.

Each rank rolls out whole groups (seeded per group), rewards are gathered, the loss normaliser is
global and FSDP2 sums the sharded gradients, so a 2-rank run must end where a 1-rank run of the
same config ends. A run whose rank is killed mid-way and rerun resumes both ranks from the sharded
checkpoint to the same final weights; a sharded checkpoint also resumes in a single process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrl.cli import main
from longrl.files import umask
from longrl.tracking import read_metrics

pytestmark = pytest.mark.slow          # each module run starts torchrun a few times (about 40 s each on 2 cores)
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
STEPS = 6


def overrides(model_dir: Path) -> list[str]:
    return [f"model.path={model_dir}", "run.progress=none", "run.torch_threads=1", f"train.steps={STEPS}",
            "run.save_every=2", "run.keep_checkpoints=3", "reward.overlong.buffer=16", "rollout.max_new_tokens=16",
            "rollout.group_size=4", "train.prompts_per_step=4", "train.mini_batches=2", "algo.dynamic_sampling=true",
            "algo.filter_metric=reward", "algo.max_refills=2", "train.micro_batch_tokens=300", "algo.kl_coef=0.01",
            "optim.lr=1e-3", "data.train=[{synth: {tasks: [docmath, multihop, choice], n: 12, length: 200, seed: 0}}]"]


def torchrun(out: Path, model_dir: Path, nproc: int = 2) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "longrl.cli", "rl", "--config", str(SMOKE), "--out", str(out), *overrides(model_dir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]
    return output


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest ||a - b|| / ||b|| over tensors."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, stoppy_model_dir):
    """The same config on one process (in this one) and on two torchrun ranks."""
    root = tmp_path_factory.mktemp("dist")
    torch.set_num_threads(1)
    assert main(["rl", "--config", str(SMOKE), "--out", str(root / "one"), *overrides(stoppy_model_dir)]) == 0
    finish(torchrun(root / "two", stoppy_model_dir))
    return root / "one", root / "two"


def test_two_ranks_end_with_the_weights_of_one(runs, stoppy_model_dir):
    one, two = runs
    start = load_file(str(stoppy_model_dir / "model.safetensors"))
    a, b = weights(one), weights(two)
    # The updates themselves agree too (weights alone would hide a wrong update under the initial values).
    moved = {k: a[k] - start[k] for k in a}
    weight_diff, update_diff = relative_difference(b, a), relative_difference({k: b[k] - start[k] for k in b}, moved)
    print(f"2 ranks vs 1: relative difference of weights {weight_diff:.2e}, of the updates {update_diff:.2e}")
    assert weight_diff < 1e-4 and update_diff < 1e-3
    assert all(float(v.abs().max()) > 0 for v in moved.values())
    rows1, rows2 = read_metrics(one / "metrics.jsonl"), read_metrics(two / "metrics.jsonl")
    assert [r["step"] for r in rows2] == list(range(1, STEPS + 1))
    assert {r["dist/world_size"] for r in rows1} == {1} and {r["dist/world_size"] for r in rows2} == {2}
    for r1, r2 in zip(rows1, rows2):              # the same rollouts, refills and filtering; the same losses
        for key in ["reward/mean", "accuracy", "response_len/mean", "rollout/groups", "rollout/refills",
                    "filtered_groups_frac", "optim/updates", "update/tokens"]:
            assert r1[key] == r2[key], key
        for key in ["loss/total", "entropy", "kl", "optim/grad_norm"]:
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-7), key
    assert read_metrics(one / "item_scores.jsonl") == read_metrics(two / "item_scores.jsonl")
    assert sorted(p.name for p in (two / "samples").iterdir()) == sorted(p.name for p in (one / "samples").iterdir())


def test_sharded_checkpoints_and_a_plain_final_folder(runs):
    _, two = runs
    last = two / "checkpoints" / f"step-{STEPS:08d}"
    state = json.loads((last / "state.json").read_text())
    assert state["format"] == "sharded" and state["world_size"] == 2 and state["step"] == STEPS
    assert len(list((last / "shards").glob("*.safetensors"))) == 2           # one file per rank
    mode = 0o666 & ~umask()                                                    # as every run output: the umask's
    assert {f.name: f.stat().st_mode & 0o777 for f in last.rglob("*") if f.is_file()} == {
        str(f.name): mode for f in last.rglob("*") if f.is_file()}
    assert not list((two / "checkpoints").glob(".*"))                         # no temporary directories left
    final = sorted(p.name for p in (two / "final").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(final)


def rewound(run: Path, copy: Path) -> Path:
    """A copy of a finished run as it stood at its step-4 checkpoint (final/ and the last checkpoint gone)."""
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "final")
    shutil.rmtree(copy / "checkpoints" / f"step-{STEPS:08d}")
    return copy


def test_a_sharded_checkpoint_resumes_in_one_process(runs, stoppy_model_dir, tmp_path):
    """2 ranks wrote step 4; one process finishes steps 5-6 and ends where the 2-rank run ended."""
    _, two = runs
    copy = rewound(two, tmp_path / "copy")
    assert main(["rl", "--config", str(SMOKE), "--out", str(copy), *overrides(stoppy_model_dir)]) == 0
    assert relative_difference(weights(copy), weights(two)) < 1e-4
    assert [r["step"] for r in read_metrics(copy / "metrics.jsonl")] == list(range(1, STEPS + 1))
    assert [r["dist/world_size"] for r in read_metrics(copy / "metrics.jsonl")] == [2, 2, 2, 2, 1, 1]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found + [g for c in found for g in _children(c)]


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the rank processes through /proc (Linux)")
def test_killing_a_rank_mid_run_and_rerunning_resumes_to_the_same_weights(runs, stoppy_model_dir, tmp_path):
    _, two = runs
    out = tmp_path / "killed"
    proc = torchrun(out, stoppy_model_dir)
    first = out / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.monotonic() + 400
    while not first.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)
    victims = [c for c in _children(proc.pid) if _rank_of(c) == 1]
    assert victims, "rank 1 not found"
    os.kill(victims[0], signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0                                    # torchrun saw its rank die
    saved = [p.name for p in (out / "checkpoints").iterdir() if (p / "state.json").exists()]
    assert not (out / "final").exists() and f"step-{STEPS:08d}" not in saved   # killed before the end
    finish(torchrun(out, stoppy_model_dir))                        # the same command again
    a, b = weights(out), weights(two)
    assert all(torch.equal(a[k], b[k]) for k in a)                 # both ranks resumed exactly
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, STEPS + 1))


def test_a_checkpoint_of_another_model_is_a_clear_error(runs, tiny_arch, tokenizer):
    from longrl import checkpoint
    from longrl.errors import CheckpointError
    from longrl.models.tiny import build_tiny_model

    _, two = runs
    other = build_tiny_model(tiny_arch.model_copy(update={"intermediate_size": 96}), tokenizer)
    with pytest.raises(CheckpointError, match="does not match this model"):
        checkpoint.load(two / "checkpoints" / f"step-{STEPS:08d}", other, torch.optim.AdamW(other.parameters()))


def test_a_single_process_checkpoint_resumes_on_two_ranks(runs, stoppy_model_dir, tmp_path):
    """One process wrote step 4 (plain format); two ranks shard it, optimizer state included, and finish."""
    one, _ = runs
    copy = rewound(one, tmp_path / "copy")
    assert (copy / "checkpoints" / "step-00000004" / "model.safetensors").exists()     # the plain format
    finish(torchrun(copy, stoppy_model_dir))
    assert relative_difference(weights(copy), weights(one)) < 1e-4
    assert [r["dist/world_size"] for r in read_metrics(copy / "metrics.jsonl")] == [1, 1, 1, 1, 2, 2]
