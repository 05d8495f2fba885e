"""trackers.py: TensorBoard holds every metric of a smoke run (read back with the tensorboard package),
W&B runs offline with no network, a missing package is reported before any work."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from longrl.cli import main
from longrl.errors import ConfigError
from longrl.trackers import Trackers, check_available, scalars
from longrl.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(run_dir / "metrics.jsonl"):
        for key, value in scalars(row).items():
            out.setdefault(key, []).append((row["step"], value))
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key
        for (_, a), (_, b) in zip(got[key], want[key]):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30), (key, a, b)   # stored as float32


def test_tensorboard_holds_every_metric_of_a_smoke_run_and_each_step_once_after_resume(tmp_path):
    out = tmp_path / "run"
    argv = ["rl", "--config", SMOKE, "--out", str(out), "train.steps=3", "data.train.0.synth.n=3", "run.save_every=1",
            "run.progress=none", "run.dump_samples_every=0"]
    assert main(argv + ["run.trackers=[tensorboard]"]) == 0
    want = expected_scalars(out)
    assert {"reward/mean", "entropy", "loss/total", "optim/lr", "time/step"} <= set(want)
    assert_same(tensorboard_scalars(out), want)
    # Forget step 3 (a kill before its checkpoint) and resume: the redone step replaces its events.
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "step-00000003")
    assert main(argv + ["run.trackers=[tensorboard]"]) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert_same(tensorboard_scalars(out), expected_scalars(out))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]    # the resolved config, as a text summary


def test_wandb_offline_needs_no_network(tmp_path, monkeypatch):
    # conftest blocks every connection but loopback: an online attempt would fail the test
    for var, sub in [("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trackers = Trackers(["wandb"], run_dir, {"algo": {"advantage": "grpo"}}, name="exp7", wandb_project="p")
    trackers.start(None)
    trackers.log({"step": 1, "phase": "rl", "reward/mean": 0.125, "kl": None})
    trackers.log({"step": 2, "phase": "rl", "reward/mean": 0.625})
    trackers.close()
    (record,) = list((run_dir / "wandb").glob("offline-run-*/run-longrl-*.wandb"))
    deadline = time.monotonic() + 20          # W&B's service process writes the records just after finish() returns
    while b"0.625" not in (data := record.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"reward/mean" in data and b"0.625" in data and b"grpo" in data    # history rows and the config


def test_missing_or_unknown_tracker_is_a_config_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="unknown tracker 'mlflow'"):
        Trackers(["mlflow"], tmp_path, {})
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="wandb needs the `wandb` package"):
        check_available(["tensorboard", "wandb"])
    out = tmp_path / "run"
    assert main(["rl", "--config", SMOKE, "--out", str(out), "run.trackers=[wandb]"]) == 2   # said before any work
    assert "pip install 'longrl[tracking]'" in capsys.readouterr().err and not out.exists()


# What a verl user's panels and scripts read (verl's trainer and actor metric names).
VERL_PANELS = ["critic/score/mean", "critic/rewards/mean", "critic/advantages/mean", "critic/advantages/max",
               "critic/advantages/min", "actor/pg_loss", "actor/entropy", "actor/pg_clipfrac", "actor/grad_norm",
               "actor/lr", "actor/kl_loss", "response_length/mean", "response_length/max", "response_length/min",
               "response_length/clip_ratio", "prompt_length/mean", "prompt_length/max", "timing_s/gen",
               "timing_s/step", "perf/throughput", "perf/total_num_tokens", "training/global_step"]


def test_a_smoke_run_with_verl_metric_names_shows_a_verl_dashboards_panels(tmp_path):
    out = tmp_path / "run"
    assert main(["rl", "--config", SMOKE, "--out", str(out), "train.steps=2", "data.train.0.synth.n=3",
                 "run.progress=none", "run.dump_samples_every=0", "run.trackers=[tensorboard]",
                 "run.metric_names=verl"]) == 0
    got = tensorboard_scalars(out)
    assert [name for name in VERL_PANELS if name not in got] == []
    rows = read_metrics(out / "metrics.jsonl")                      # metrics.jsonl keeps longrl's names
    assert "reward/mean" in rows[0] and "critic/score/mean" not in rows[0]
    assert not {"reward/mean", "loss/policy", "entropy", "response_len/mean"} & set(got)   # renamed, not doubled
    assert "accuracy" in got and "loss/clip_frac_high" in got       # verl has no such figure: longrl's name
    for verl, longrl in [("critic/score/mean", "reward/mean"), ("actor/pg_loss", "loss/policy"),
                         ("critic/advantages/mean", "advantage/mean"), ("response_length/min", "response_len/min")]:
        assert [s for s, _ in got[verl]] == [1, 2]
        for (_, a), row in zip(got[verl], rows):
            assert math.isclose(a, row[longrl], rel_tol=1e-6, abs_tol=1e-30), (verl, a, row[longrl])


def test_both_names_reach_the_tracker(tmp_path):
    trackers = Trackers(["tensorboard"], tmp_path, {}, metric_names="both")
    trackers.start(None)
    trackers.log({"step": 1, "phase": "rl", "reward/mean": 0.5, "entropy": 1.5})
    trackers.close()
    got = tensorboard_scalars(tmp_path)
    assert {k: v[0][1] for k, v in got.items()} == {"reward/mean": 0.5, "critic/score/mean": 0.5,
                                                     "critic/rewards/mean": 0.5, "entropy": 1.5,
                                                     "actor/entropy": 1.5, "training/global_step": 1.0}
    with pytest.raises(ConfigError, match="run.metric_names: unknown naming 'mlflow'"):
        Trackers(["tensorboard"], tmp_path, {}, metric_names="mlflow")
