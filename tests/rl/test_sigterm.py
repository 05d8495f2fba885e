"""SIGTERM, the way `timeout`, Slurm and container runtimes stop a job: the RL run finishes its step,
checkpoints it, leaves its last line in log.txt, exits 143, and a rerun ends with the weights of an
uninterrupted run. A step that outlasts LONGRL_STOP_GRACE_S stops at once and resumes as exactly
(the grace period itself: tests/test_console.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from longrl.cli import main
from longrl.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"


def launch(out: Path, overrides: list[str], **env) -> subprocess.Popen:
    env = {**os.environ, "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src"), **env}
    return subprocess.Popen([sys.executable, "-m", "longrl.cli", "rl", "--config", str(SMOKE), "--out", str(out), *overrides],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def terminate_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> tuple[int, str]:
    """SIGTERM `proc` once `ready()` holds; (exit status, stderr). Fails if the run ended first."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the SIGTERM point: " + proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the run never reached the SIGTERM point"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def steps_logged(metrics: Path) -> list[int]:
    return [row["step"] for row in read_metrics(metrics)]


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_logs_it_exits_143_and_resumes_to_the_same_weights(tmp_path, stoppy_model_dir):
    overrides = [f"model.path={stoppy_model_dir}", "train.steps=6", "run.save_every=100", "data.train.0.synth.n=6",
                 "algo.dynamic_sampling=true", "rollout.max_new_tokens=16", "reward.overlong.buffer=16",
                 "run.progress=none"]
    straight = tmp_path / "straight"
    assert main(["rl", "--config", str(SMOKE), "--out", str(straight), *overrides]) == 0

    out = tmp_path / "stopped"
    metrics = out / "metrics.jsonl"
    # 1) SIGTERM after step 2: the step running then ends, is checkpointed (save_every would not), and the run stops
    status, err = terminate_when(launch(out, overrides), lambda: len(steps_logged(metrics)) >= 2)
    assert status == 143, err[-2000:]
    last = steps_logged(metrics)[-1]
    assert 2 <= last < 6 and (out / "checkpoints" / f"step-{last:08d}" / "state.json").exists()
    log = (out / "log.txt").read_text().splitlines()
    assert any("SIGTERM: stopping at the end of this step" in line for line in log[-3:])   # when it came
    assert log[-1].endswith(f"longrl rl: stopped by SIGTERM after rl step {last}/6, its checkpoint saved; "
                            "rerun the same command to resume from there")
    assert "stopped by SIGTERM" in err

    # 2) with no grace (0 s) the run stops at once, mid-step (or, should the step end first, after its
    #    checkpoint): the log says so either way, and what it left resumes as exactly as a kill's leftovers
    resumed_at = last
    status, err = terminate_when(launch(out, overrides, LONGRL_STOP_GRACE_S="0"),
                                 lambda: (out / "item_scores.jsonl").exists()
                                 and f'"step": {resumed_at + 1}' in (out / "item_scores.jsonl").read_text())
    assert status == 143, err[-2000:]
    final = (out / "log.txt").read_text().splitlines()[-1]
    assert "longrl rl: stopped by SIGTERM" in final and "rerun the same command to resume" in final

    # 3) the rerun resumes from the checkpoint SIGTERM left and ends where the uninterrupted run did
    assert main(["rl", "--config", str(SMOKE), "--out", str(out), *overrides]) == 0
    a, b = load_file(str(straight / "final" / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert steps_logged(metrics) == [1, 2, 3, 4, 5, 6]
