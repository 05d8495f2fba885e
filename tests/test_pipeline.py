"""The whole recipe on the tiny model: SFT -> phase 1 -> retrospective -> phase 2 -> eval -> report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from longrl.config import load_config
from longrl.data.io import write_samples
from longrl.data.synthetic import synthesize
from longrl.errors import UserError
from longrl.pipeline import phase_items, run_phases, run_pipeline

CONFIG = """
run: {name: pipe, seed: 0, torch_threads: 1, save_every: 1, keep_checkpoints: 2, dump_samples_every: 0, progress: none}
model:
  path: random
  tiny: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, max_position_embeddings: 2048}
sft:
  data: [{synth: {tasks: [multihop, docmath], n: 6, length: 160, seed: 1}}]
  steps: 2
  batch_tokens: 1024
  row_tokens: 512
  lr: 1.0e-3
  eval_fraction: 0.0
rollout: {group_size: 2, max_new_tokens: 12, temperature: 1.0, top_p: 1.0, groups_per_batch: 4}
algo: {dynamic_sampling: false}
reward: {overlong: {enabled: true, buffer: 12}}
optim: {lr: 1.0e-4}
train: {prompts_per_step: 2, micro_batch_tokens: 1024, eval_every: 2}
data:
  eval: [{synth: {tasks: [multihop, docmath], n: 2, length: 160, seed: 9}}]
curriculum:
  phases:
    - {name: short, max_input_tokens: 200, max_response_tokens: 12, steps: 2,
       data: [{synth: {tasks: [multihop, docmath], n: 6, length: 160, seed: 2}}, {synth: {tasks: [multihop], n: 2, length: 400, seed: 2}}]}
    - {name: long, max_input_tokens: 420, max_response_tokens: 12, steps: %(steps)d, overrides: {rollout.temperature: 0.9},
       data: [{synth: {tasks: [multihop, docmath], n: 4, length: 400, seed: 3}}]}
  retrospective: {mode: offline, samples: 2, count: 3, fraction: null}
eval:
  benchmarks: [synthetic-160, synthetic-400]
  synthetic: {n: 3, tasks: [multihop, docmath]}
  max_new_tokens: 12
  max_input_tokens: null
  batch_size: 4
"""


def write_config(tmp_path: Path, steps: int = 2) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(CONFIG % {"steps": steps})
    return path


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The recipe in this process: (config file, run directory, result)."""
    root = tmp_path_factory.mktemp("pipe")
    config = write_config(root)
    return config, root / "run", run_pipeline(load_config(config), root / "run")


@pytest.mark.slow
def test_pipeline_end_to_end(single_run):
    config, out, result = single_run
    for stage in ("sft", "phase1", "retro1", "phase2", "eval/sft", "eval/rl"):
        assert json.loads((out / stage / "stage.json").read_text())["status"] == "done", stage
    # phase filtering: the two 400-token items do not fit phase 1's 200-token limit
    assert json.loads((out / "phase1" / "items.json").read_text())["dropped"] == 2
    # retrospective: earlier items scored K=2 times, the hardest 3 (none solved by a random model) carried
    selection = json.loads((out / "retro1" / "selection.json").read_text())
    assert selection["scored"] == 6 and selection["count"] == 3
    phase2 = json.loads((out / "phase2" / "items.json").read_text())
    assert phase2["carried"] == 3 and phase2["kept"] == 7
    # every metrics line carries its phase; the phase starts from the previous phase's weights
    rows = [json.loads(x) for x in (out / "phase2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["long", "long"]
    # validation during RL: phase 1 before training and at its last step; phase 2 (starting from the
    # weights just scored) at its last step only
    phase1 = [json.loads(x) for x in (out / "phase1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in phase1 if "val/accuracy" in r] == [0, 2]
    assert [r["step"] for r in rows if "val/accuracy" in r] == [2] and rows[-1]["val/items"] == 2
    cfg2 = (out / "phase2" / "config.yaml").read_text()
    assert str(out / "phase1" / "final") in cfg2 and "temperature: 0.9" in cfg2
    assert set(result["eval"]) == {"sft", "rl"}
    assert (out / "report.md").exists() and (out / "dynamics.png").exists() and (out / "accuracy_by_length.png").exists()
    # a rerun redoes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    run_pipeline(load_config(config), out)
    changed = [p for p in before if p.stat().st_mtime_ns != before[p] and p.name not in ("report.md", "pipeline.json")
               and p.suffix != ".png"]
    assert changed == []


@pytest.mark.slow
def test_pipeline_resumes_after_kill_in_phase(tmp_path):
    """SIGKILL in the middle of phase 2, rerun: finished stages untouched, phase 2 resumed to the end."""
    config = write_config(tmp_path, steps=12)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [sys.executable, "-m", "longrl.cli", "pipeline", "--config", str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "phase2" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "phase2" / "stage.json").exists(), "phase 2 finished before the kill; the test needs a longer phase"
    done_before = {s: (out / s / "stage.json").stat().st_mtime_ns for s in ("sft", "phase1", "retro1")}
    phase1_metrics = (out / "phase1" / "metrics.jsonl").read_bytes()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert {s: (out / s / "stage.json").stat().st_mtime_ns for s in done_before} == done_before
    assert (out / "phase1" / "metrics.jsonl").read_bytes() == phase1_metrics
    rows = [json.loads(x) for x in (out / "phase2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["step"] for r in rows if "val/accuracy" in r] == list(range(2, 13, 2))
    assert (out / "eval" / "rl" / "summary.json").exists()


@pytest.mark.slow
def test_pipeline_under_torchrun_matches_one_process(single_run, tmp_path):
    """`torchrun --nproc_per_node 2 -m longrl.cli pipeline`: the same stages, sharded; rank 0 writes; same weights."""
    from safetensors.torch import load_file

    config, one, _ = single_run
    out = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "longrl.cli",
           "pipeline", "--config", str(config), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in ("sft", "phase1", "retro1", "phase2", "eval/sft", "eval/rl"):
        assert json.loads((out / stage / "stage.json").read_text())["status"] == "done", stage
    assert (out / "report.md").exists() and (out / "pipeline.json").exists()
    for phase, steps in (("phase1", [0, 1, 2]), ("phase2", [1, 2])):
        rows, alone = ([json.loads(x) for x in (run / phase / "metrics.jsonl").read_text().splitlines()] for run in (out, one))
        assert [r["step"] for r in rows] == steps and {r["dist/world_size"] for r in rows if r["step"]} == {2}
        # validation split across the ranks: the same held-out scores as one process
        assert [r.get("val/accuracy") for r in rows] == [r.get("val/accuracy") for r in alone]
    assert json.loads((out / "sft" / "metrics.jsonl").read_text().splitlines()[0])["dist/world_size"] == 2

    def diff(stage):
        a, b = (load_file(str(run / stage / "final" / "model.safetensors")) for run in (one, out))
        return max(float((a[k] - b[k]).norm() / a[k].norm()) for k in a)

    print(f"pipeline, 2 ranks vs 1: sft {diff('sft'):.2e}, phase2 {diff('phase2'):.2e}")
    assert diff("sft") < 1e-4
    selected = [json.loads((run / "retro1" / "selection.json").read_text())["selected"] for run in (one, out)]
    assert selected[0] == selected[1]
    assert diff("phase2") < 1e-4


ONE_FILE = """
run: {name: onefile, seed: 0, torch_threads: 1, save_every: 100, keep_checkpoints: 1, dump_samples_every: 0, progress: none}
model:
  path: random
  tiny: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, max_position_embeddings: 1024}
rollout: {group_size: 2, max_new_tokens: 4, temperature: 1.0, top_p: 1.0, groups_per_batch: 4}
algo: {dynamic_sampling: false}
optim: {lr: 1.0e-4}
train: {prompts_per_step: 4, micro_batch_tokens: 1024}
curriculum:
  phases:
    - {name: short, max_input_tokens: 200, max_response_tokens: 4, steps: 1, data: [{path: %(file)s}]}
    - {name: long, max_input_tokens: 420, max_response_tokens: 4, epochs: 1, data: [{path: %(file)s}]}
  retrospective: {mode: offline, samples: 2, count: 2, fraction: null, carry: %(carry)s, replay_copies: 2}
"""


def phase_ids(stage: Path) -> list[str]:
    """The item ids of every rollout group phase `stage` trained on (item_scores.jsonl: one row per draw)."""
    return [json.loads(x)["id"] for x in (stage / "item_scores.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("carry", ["new_plus_carried", "replay"])
def test_two_phases_over_one_file_train_phase2_on_the_carried_items(tmp_path, tokenizer, one_thread, carry):
    """Both phases read one file (as the official run does): phase 2 trains on the carried items, the
    way `carry` says; the earlier items not carried are left out (new_plus_carried) or drawn once (replay)."""
    data = tmp_path / "docqa.jsonl"
    short = synthesize(["multihop", "docmath"], 6, 160, seed=2, tokenizer=tokenizer)     # fit phase 1
    long = synthesize(["multihop", "docmath"], 3, 400, seed=3, tokenizer=tokenizer)      # fit phase 2 only
    write_samples(data, short + long)
    config = tmp_path / "onefile.yaml"
    config.write_text(ONE_FILE % {"file": data, "carry": carry})
    cfg = load_config(config)
    out = tmp_path / "run"
    final = run_phases(cfg, out, cfg.model.path, tokenizer, torch.device("cpu"))

    carried = json.loads((out / "retro1" / "selection.json").read_text())["selected"]
    assert len(carried) == 2 and set(carried) <= {s.id for s in short}
    counts = json.loads((out / "phase2" / "items.json").read_text())
    trained = phase_ids(out / "phase2")
    others = {s.id for s in short} - set(carried)
    if carry == "new_plus_carried":
        # ceil(5 items / 4 prompts per step) = 2 steps: the first epoch's 5 draws cover every item
        assert set(trained) == set(carried) | {s.id for s in long} and not others & set(trained)
        assert {k: counts[k] for k in ("data", "dropped", "seen", "new", "carried", "replayed", "kept", "epoch")} == \
            {"data": 9, "dropped": 0, "seen": 6, "new": 3, "carried": 2, "replayed": 0, "kept": 5, "epoch": 5}
    else:
        # ceil(13 / 4) = 4 steps, 16 draws: the first epoch (13) draws each carried item 3 times, the others once
        first_epoch = trained[:13]
        assert all(first_epoch.count(i) == 3 for i in carried) and all(first_epoch.count(i) == 1 for i in others)
        assert {k: counts[k] for k in ("seen", "new", "carried", "replayed", "kept", "epoch")} == \
            {"seen": 6, "new": 3, "carried": 2, "replayed": 4, "kept": 9, "epoch": 13}
        assert sorted(counts["replayed_ids"]) == sorted(carried * 2)
    assert len(trained) == 4 * (2 if carry == "new_plus_carried" else 4)
    # the frozen list reads back as the epoch trained on (replayed copies included); a rerun redoes nothing
    frozen = phase_items(cfg, 2, tokenizer, [], [], out / "phase2")
    assert sorted(s.id for s in frozen) == sorted(trained[:counts["epoch"]])
    assert run_phases(cfg, out, cfg.model.path, tokenizer, torch.device("cpu")) == final


def test_a_phase_with_nothing_new_and_nothing_carried_says_so(tmp_path, tokenizer):
    """Same file, same limit, nothing carried: new_plus_carried leaves nothing, and the message says why."""
    data = tmp_path / "docqa.jsonl"
    items = synthesize(["multihop"], 3, 160, seed=2, tokenizer=tokenizer)
    write_samples(data, items)
    phases = (f"curriculum.phases=[{{name: a, max_input_tokens: 300, max_response_tokens: 4, data: [{{path: {data}}}]}}, "
              f"{{name: b, max_input_tokens: 300, max_response_tokens: 4, data: [{{path: {data}}}]}}]")
    cfg = load_config(None, ["model.path=random", phases])
    with pytest.raises(UserError, match=r"(?s)phase 'b': nothing to train on: all 3 .*carry=replay"):
        phase_items(cfg, 2, tokenizer, items, [], tmp_path / "phase2")
    replay = load_config(None, ["model.path=random", phases, "curriculum.retrospective.carry=replay"])
    assert phase_items(replay, 2, tokenizer, items, [], tmp_path / "phase2") == items
