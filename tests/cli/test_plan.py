"""`longrl plan`: every recipe plans for 8 and 32 GPUs; a phase that does not fit is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longrl.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = ["qwenlong_l1_1p5b.yaml", "qwenlong_l1_14b.yaml", "qwenlong_l1_32b.yaml"]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("gpus", [8, 32])
def test_every_recipe_plans_for_8_and_32_gpus(recipe, gpus, tmp_path, capsys):
    out = tmp_path / "plan.json"
    status = main(["plan", "--config", str(CONFIGS / recipe), "--gpus", str(gpus), "--gpu-memory-gb", "80",
                   "--json", str(out)])
    plan = json.loads(out.read_text())
    names = [p["name"] for p in plan["phases"]]
    assert names == ["sft", "p1_20k", "p2_60k"] and plan["gpus"] == gpus
    assert all(p["update_gib"] > 0 and p["activations_gib"]["with checkpointing"] > 0 for p in plan["phases"])
    printed = capsys.readouterr()
    assert "p2_60k" in printed.out and ("rollout KV" in printed.out or "rollout: by the server" in printed.out)
    fits = all(p["fits"] for p in plan["phases"])
    assert status == (0 if fits else 2)
    if not fits:
        assert "does not fit" in printed.err and "fits with" in printed.err


def test_the_1p5b_recipe_fits_one_80gb_gpu(tmp_path):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_1p5b.yaml"), "--gpus", "1", "--gpu-memory-gb", "80",
                 "--json", str(out)]) == 0
    phases = json.loads(out.read_text())["phases"]
    assert all(p["fits"] for p in phases) and max(p["update_gib"] for p in phases) < 72


@pytest.mark.parametrize("recipe", ["qwenlong_l1_14b.yaml", "qwenlong_l1_32b.yaml"])
def test_the_14b_and_32b_recipes_fit_32_gpus_of_141gb(recipe, capsys):
    assert main(["plan", "--config", str(CONFIGS / recipe), "--gpus", "32", "--gpu-memory-gb", "141"]) == 0
    assert capsys.readouterr().out.count("  fits;") == 3


def test_the_32b_recipe_fits_the_official_shape_in_every_phase(tmp_path, capsys):
    """32 x 80 GB, Ulysses SP 8, parameter + optimizer offload, rollouts by a vLLM server (the official script's)."""
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_32b.yaml"), "--gpus", "32", "--gpu-memory-gib", "80",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("  fits;") == 3 and printed.count("SP 8, offload params+optimizer") == 3
    assert "rollout: by the server" in printed and "not planned" in printed and "NCCL" in printed
    phases = json.loads(out.read_text())["phases"]
    assert [p["name"] for p in phases] == ["sft", "p1_20k", "p2_60k"] and all(p["fits"] for p in phases)
    for p in phases:      # the states left the GPU: what remains is gathered layers, activations and buffers
        assert p["update"]["weights"] == 0 and p["update"]["optimizer"] == 0 and p["update_gib"] < 0.9 * 80
        assert p["host_gib_per_rank"] == pytest.approx(16 * 32.76e9 / 32 / 2**30, rel=0.01)
        assert p["sequence_parallel"] == 8 and p["offload"] == {"params": True, "optimizer": True}
    assert phases[2]["update"]["all-to-all"] > 0 and phases[2]["rollout_gib"] == 0


def test_the_32b_with_rollouts_in_process_does_not_fit_80gb_and_says_by_how_much(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_32b.yaml"), "--gpus", "32", "--gpu-memory-gib", "80",
                 "--json", str(out), "rollout.backend=engine"]) == 2
    err = capsys.readouterr().err
    assert "does not fit 32 x 80 GiB: p1_20k" in err and "roll out from a server (rollout.backend=server)" in err
    p1, p2 = json.loads(out.read_text())["phases"][1:]
    assert p1["update_gib"] < 72 and p2["update_gib"] < 72                         # the update fits; the rollout:
    assert p2["rollout"]["compute copies"] == pytest.approx(2 * 32.76e9 / 2**30, rel=0.01)   # full bf16 weights
    assert p1["rollout_gib"] > 72 and p2["rollout_gib"] > 72


def test_the_14b_recipe_fits_one_node_of_8_x_80gb_at_60k(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_14b.yaml"), "--gpus", "8", "--gpu-memory-gib", "80",
                 "--json", str(out)]) == 0
    assert capsys.readouterr().out.count("  fits;") == 3
    phases = json.loads(out.read_text())["phases"]
    assert all(p["sequence_parallel"] == 4 and p["offload"] == {"params": False, "optimizer": True} for p in phases)
    assert all(p["update"]["optimizer"] == 0 and p["rollout"]["optimizer"] == 0 for p in phases[1:])
    # without the offload, AdamW's moments (8 bytes x 14.77B / 8 = 13.8 GiB) no longer leave room for the rollout
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_14b.yaml"), "--gpus", "8", "--gpu-memory-gib", "80",
                 "train.offload.optimizer=false", "sft.offload.optimizer=false"]) == 2
    assert "p2_60k (needs 73.8 GiB" in capsys.readouterr().err


def test_sequence_parallel_must_divide_the_gpus_and_the_heads(capsys):
    args = ["plan", "--config", str(CONFIGS / "qwenlong_l1_32b.yaml"), "--gpus", "32", "--gpu-memory-gib", "80"]
    assert main([*args, "train.sequence_parallel=3"]) == 2
    assert "train.sequence_parallel=3: the 32 ranks cannot form sequence-parallel groups" in capsys.readouterr().err
    assert main([*args, "sft.sequence_parallel=16"]) == 2
    assert "sft.sequence_parallel=16: the model's 40 attention heads cannot be split" in capsys.readouterr().err


def test_a_phase_that_does_not_fit_and_a_rank_count_that_does_not_divide_are_errors(capsys):
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_32b.yaml"), "--gpus", "8", "--gpu-memory-gb", "80",
                 "train.offload.params=false", "train.offload.optimizer=false", "sft.offload.params=false",
                 "sft.offload.optimizer=false"]) == 2
    assert "does not fit 8 x 80 GiB: sft" in capsys.readouterr().err
    assert main(["plan", "--config", str(CONFIGS / "qwenlong_l1_14b.yaml"), "--gpus", "3", "--gpu-memory-gb", "80"]) == 2
    assert "cannot share train.prompts_per_step=128" in capsys.readouterr().err


def test_plan_figures_are_labelled_gib_and_are_gib(tmp_path, capsys):
    """14.77B parameters, fp32, over 32 ranks: 1.846e9 bytes a rank = 1.72 GiB, printed as GiB (not "GB")."""
    out = tmp_path / "plan.json"
    args = ["plan", "--config", str(CONFIGS / "qwenlong_l1_14b.yaml"), "--gpus", "32", "--json", str(out)]
    assert main([*args, "--gpu-memory-gib", "141"]) == 0
    printed = capsys.readouterr().out
    assert "141 GiB per GPU" in printed and "GiB per GPU" in printed and " GB" not in printed
    weights = json.loads(out.read_text())["phases"][0]["update"]["weights"]
    assert weights == pytest.approx(14.77e9 * 4 / 32 / 2**30, rel=0.01) and "│ weights        │   1.72 │" in printed
    assert json.loads(out.read_text())["unit"] == "GiB"
    assert main([*args, "--gpu-memory-gb", "141"]) == 0                     # the earlier name: the same option
    assert capsys.readouterr().out == printed


def header_plan(path: Path) -> list[str]:
    """The `longrl plan` arguments a config's header documents, else one 80 GB GPU."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and "longrl plan --config" in line:
            args = line.split("longrl plan", 1)[1].split("#")[0].split()
            return args[args.index("--gpus"):args.index("--gpus") + 4]
    return ["--gpus", "1", "--gpu-memory-gb", "80"]


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_validates_and_plans_on_its_documented_hardware(config, capsys):
    path = CONFIGS / config
    assert main(["validate", "--config", str(path)]) == 0
    assert main(["plan", "--config", str(path), *header_plan(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "fits" in out or "nothing to train" in out


def test_plan_covers_pretraining_and_derives_the_longest_synthetic_prompt(capsys):
    assert main(["plan", "--config", str(CONFIGS / "demo_base.yaml"), "--gpus", "1", "--gpu-memory-gb", "16"]) == 0
    assert "pretrain: micro-batches" in capsys.readouterr().out
    assert main(["plan", "--config", str(CONFIGS / "smoke.yaml"), "--gpus", "1", "--gpu-memory-gb", "16"]) == 0
    assert "rl: prompts <= 346" in capsys.readouterr().out            # synth length 256: 1.1 x 256 + 64 template
    assert main(["plan", "--config", str(CONFIGS / "smoke.yaml"), "--gpus", "1", "--gpu-memory-gb", "16",
                 "data.train=[{path: data/x.jsonl}]"]) == 2
    assert "rollout.max_input_tokens is not set and data.train reads files" in capsys.readouterr().err
