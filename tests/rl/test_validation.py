"""Validation during RL (`rl/validation.py`): when it runs, what it logs, and that a resumed run keeps
what was already scored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from longrl.config import load_config
from longrl.rl.trainer import train
from longrl.rl.validation import is_validation_step, validation_metrics
from longrl.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
HELD_OUT = "{synth: {tasks: [multihop, docmath, choice], n: 6, length: 200, seed: 777}}"


def test_validation_steps():
    assert [s for s in range(11) if is_validation_step(s, 10, 4, True)] == [0, 4, 8, 10]   # and the last
    assert [s for s in range(11) if is_validation_step(s, 10, 5, False)] == [5, 10]
    assert not any(is_validation_step(s, 10, 0, True) for s in range(11))                  # 0 = never


def test_validation_metrics_against_a_plain_count():
    rows = [{"task": "docmath", "correct": [1.0, 0.0], "response_len": [10, 20]},
            {"task": "choice", "correct": [1.0, 1.0], "response_len": [4, 6]},
            {"task": "docmath", "correct": [0.0, 0.0], "response_len": [30, 30]}]
    got = validation_metrics(rows)
    assert got["val/accuracy"] == pytest.approx(3 / 6) and got["val/items"] == 3
    assert got["val/docmath/accuracy"] == pytest.approx(1 / 4) and got["val/choice/accuracy"] == 1.0
    assert got["val/response_len/mean"] == pytest.approx(100 / 6)
    assert validation_metrics([]) == {}


def config(*overrides):
    base = ["model.path=builtin:tiny-base", "run.progress=none", "run.torch_threads=1", "model.tiny=null",
            "rollout.max_new_tokens=48", "rollout.group_size=4", "train.prompts_per_step=2", "train.mini_batches=1",
            "data.train=[{synth: {tasks: [multihop, docmath, choice], n: 8, length: 200, seed: 5}}]",
            f"data.eval=[{HELD_OUT}]", "train.eval_every=2", "train.steps=3", "run.save_every=1", "run.keep_checkpoints=5",
            "rollout.validation={n: 2, temperature: 0.7, top_p: 0.95}", "optim.lr=1e-4"]
    return load_config(SMOKE, base + list(overrides))


def val_rows(path: Path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "val/accuracy" in r]


def test_rl_scores_the_held_out_items_before_training_every_n_steps_and_at_the_last(tmp_path):
    cfg = config()
    out = tmp_path / "run"
    train(cfg, out, phase="p1")
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["step"] for r in val_rows(out)] == [0, 2, 3]
    first = rows[0]
    assert first["phase"] == "p1" and "reward/mean" not in first and first["time/val"] > 0
    for r in val_rows(out):
        assert r["val/items"] == 6 and 0 <= r["val/accuracy"] <= 1 and r["val/response_len/mean"] > 0
        per_task = [r[f"val/{t}/accuracy"] for t in ("multihop", "docmath", "choice")]
        assert r["val/accuracy"] == pytest.approx(sum(per_task) / 3)       # 2 items x 2 samples per task
    assert max(r["val/accuracy"] for r in val_rows(out)) > 0                 # the base model answers some

    # Resume from the step-1 checkpoint: step 0 is not scored again (its line, wall time included, is
    # kept as it was) and steps 2-3 are scored again to the same values.
    before = val_rows(out)
    shutil.rmtree(out / "final")
    for step in (2, 3):
        shutil.rmtree(out / "checkpoints" / f"step-{step:08d}", ignore_errors=True)
    train(cfg, out, phase="p1")
    after = val_rows(out)
    assert after[0] == before[0]
    strip = [{k: v for k, v in r.items() if k.startswith("val/")} for r in after]
    assert strip == [{k: v for k, v in r.items() if k.startswith("val/")} for r in before]


def test_no_held_out_data_or_eval_every_0_logs_no_validation(tmp_path):
    train(config("train.eval_every=0", "train.steps=1"), tmp_path / "a")
    assert val_rows(tmp_path / "a") == [] and [r["step"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl")] == [1]
