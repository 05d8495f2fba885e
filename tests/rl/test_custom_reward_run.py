"""A custom reward file named in a config scores an RL smoke run (`reward.custom`), end to end: in process,
with a rollout server (the trainer scores), and on two torchrun ranks (each loads the file and scores its groups)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longrl.cli import main
from longrl.tracking import read_metrics

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
REWARD = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None, per_char=0.001):
    """A length score, plus 0.5 on docmath: nothing the built-in rule would give a random model."""
    return len(solution_str) * per_char + (0.5 if data_source == "docmath" else 0.0)
'''


def test_a_custom_reward_file_named_in_a_config_scores_a_smoke_run(tmp_path, monkeypatch):
    (tmp_path / "my_reward.py").write_text(REWARD)
    config = yaml.safe_load(SMOKE.read_text())
    config["reward"] = {"require_think": True, "overlong": {"enabled": False},
                        "custom": {"path": "my_reward.py", "name": "compute_score", "reward_kwargs": {"per_char": 0.01}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)                          # the relative path is read from the working directory
    assert main(["rl", "--config", "config.yaml", "--out", "run", "train.steps=2", "data.train.0.synth.n=3",
                 "run.progress=none", "run.dump_samples_every=1"]) == 0
    samples = sample_rows(tmp_path / "run", 2)
    assert samples and {s["task"] for s in samples} >= {"docmath"}
    for s in samples:                                    # every reward is the custom function's
        assert s["reward"] == len(s["response"]) * 0.01 + (0.5 if s["task"] == "docmath" else 0.0), s
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["reward/custom"] for r in rows] == [1.0, 1.0] and all(r["reward/custom_errors"] == 0 for r in rows)
    assert all(r["reward/mean"] > 0 for r in rows)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["reward"]["custom"]["path"] == "my_reward.py"


def test_a_custom_reward_that_raises_stops_the_run_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
                    "    raise KeyError(data_source)\n")
    code = main(["rl", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "train.steps=1", "data.train.0.synth.n=2",
                 "run.progress=none", f"reward.custom.path={path}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"reward.custom: compute_score from {path.resolve()} failed on" in err and "KeyError" in err


MARKING = REWARD + '''
import os
with open(__file__ + ".loads", "a") as fh:     # one mark per process that loads the file
    fh.write(os.environ.get("RANK", "-"))
'''


def sample_rows(run: Path, steps: int) -> list[dict]:
    return [json.loads(line) for step in range(1, steps + 1)
            for line in (run / "samples" / f"step-{step:08d}.jsonl").read_text().splitlines()]


def assert_custom_scored(rows: list[dict]) -> None:
    assert rows
    for s in rows:
        assert s["reward"] == len(s["response"]) * 0.001 + (0.5 if s["task"] == "docmath" else 0.0), s


CUSTOM = ["reward.overlong.enabled=false", "run.progress=none", "run.dump_samples_every=1", "train.steps=1",
          "data.train.0.synth.n=4", "train.prompts_per_step=2", "train.mini_batches=1"]


def test_with_a_rollout_server_the_trainer_scores_with_the_custom_function(tmp_path, stoppy_model_dir, tiny_arch,
                                                                           tokenizer):
    from longrl.models.tiny import build_tiny_model
    from longrl.serve.server import ModelServer
    from longrl.serve.worker import ModelWorker

    (tmp_path / "my_reward.py").write_text(MARKING)
    model = build_tiny_model(tiny_arch, tokenizer)                     # the policy's architecture: it reloads its weights
    with ModelServer(ModelWorker(model, tokenizer, "policy", "startup"), port=0, weights_root=tmp_path) as server:
        url = server.url
        assert main(["rl", "--config", str(SMOKE), "--out", str(tmp_path / "run"), *CUSTOM, f"model.path={stoppy_model_dir}",
                     "run.torch_threads=1", f"reward.custom.path={tmp_path / 'my_reward.py'}", "rollout.backend=server",
                     f"rollout.server={{base_url: '{url}', api_key_env: null, timeout_s: 60, backoff_s: 0}}"]) == 0
    assert_custom_scored(sample_rows(tmp_path / "run", 1))
    assert (tmp_path / "my_reward.py.loads").read_text() == "-"          # loaded once, in the trainer


@pytest.mark.slow
def test_under_torchrun_each_rank_loads_the_file_and_scores_its_groups(tmp_path):
    (tmp_path / "my_reward.py").write_text(MARKING)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "longrl.cli", "rl",
           "--config", str(SMOKE), "--out", str(tmp_path / "run"), *CUSTOM, "run.torch_threads=1",
           f"reward.custom.path={tmp_path / 'my_reward.py'}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert sorted((tmp_path / "my_reward.py.loads").read_text()) == ["0", "1"]
    rows = sample_rows(tmp_path / "run", 1)
    assert_custom_scored(rows)
    assert len({s["id"] for s in rows}) == 2                           # both ranks' groups, gathered
