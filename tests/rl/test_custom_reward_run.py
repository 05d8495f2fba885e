"""A custom reward file named in a config scores an RL smoke run (`reward.custom`), end to end."""

from __future__ import annotations

import json
from pathlib import Path

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
    samples = [json.loads(line) for step in (1, 2)
               for line in (tmp_path / "run" / "samples" / f"step-{step:08d}.jsonl").read_text().splitlines()]
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
