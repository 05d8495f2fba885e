"""`longrl demo`: pipeline + the paired SFT-vs-RL comparison written to summary.json."""

import json
import math

import numpy as np
import pytest

from longrl.cli import main
from longrl.demo import arm_table, paired_comparison


def test_paired_comparison_matches_numpy():
    rng = np.random.default_rng(0)
    base = {f"i{k}": float(rng.integers(0, 2)) for k in range(50)}
    new = {f"i{k}": float(rng.integers(0, 2)) for k in range(50)} | {"extra": 1.0}  # unpaired items are ignored
    out = paired_comparison(base, new)
    a = np.array([base[f"i{k}"] for k in range(50)])
    b = np.array([new[f"i{k}"] for k in range(50)])
    assert out["n_eval"] == 50
    assert math.isclose(out["sft_accuracy"], 100 * a.mean()) and math.isclose(out["rl_accuracy"], 100 * b.mean())
    assert math.isclose(out["gap"], 100 * (b - a).mean())
    assert math.isclose(out["gap_se"], 100 * (b - a).std(ddof=1) / math.sqrt(50))
    assert math.isclose(out["sft_se"], 100 * a.std(ddof=1) / math.sqrt(50))


def test_arm_table_gives_every_arm_and_rls_gap_to_the_control():
    rng = np.random.default_rng(1)
    arms = {a: {f"i{k}": float(rng.integers(0, 2)) for k in range(40)} for a in ("base", "sft", "sft-long", "rl")}
    out = arm_table(arms, "sft")
    rl, control = (np.array([arms[a][f"i{k}"] for k in range(40)]) for a in ("rl", "sft-long"))
    assert [a["arm"] for a in out["arms"]] == ["base", "sft", "sft-long", "rl"]
    for got, (arm, scores) in zip(out["arms"], arms.items()):
        values = np.array([scores[f"i{k}"] for k in range(40)])
        assert math.isclose(got["accuracy"], 100 * values.mean())
        assert math.isclose(got["se"], 100 * values.std(ddof=1) / math.sqrt(40))
    assert math.isclose(out["gap_vs_sft_long"], 100 * (rl - control).mean())
    assert math.isclose(out["gap_vs_sft_long_se"], 100 * (rl - control).std(ddof=1) / math.sqrt(40))
    assert "gap_vs_sft_long" not in arm_table({"sft": arms["sft"], "rl": arms["rl"]}, "sft")


def test_no_common_items_is_an_error():
    with pytest.raises(ValueError, match="share no item"):
        paired_comparison({"a": 1.0}, {"b": 1.0})


def test_missing_config_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_summary(tmp_path, capsys):
    from test_pipeline import write_config

    out = tmp_path / "run"
    assert main(["demo", "--config", str(write_config(tmp_path)), "--out", str(out), "sft.long_control=true",
                 "eval.include_base=true"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_eval"] == 3 and summary["eval_length"] == 400 and summary["start_policy"] == "sft"
    assert set(summary["by_length"]) == {"160", "400"}
    assert 0 <= summary["sft_accuracy"] <= 100 and 0 <= summary["rl_accuracy"] <= 100
    assert [a["arm"] for a in summary["arms"]] == ["base", "sft", "sft-long", "rl"] and "gap_vs_sft_long_se" in summary
    # the control made as many optimizer steps as the two RL phases (2 + 2 steps, one update each),
    # from the SFT checkpoint, on the RL phases' items
    stage = json.loads((out / "sft_long" / "stage.json").read_text())
    rl_updates = sum(json.loads(x).get("optim/updates", 0) for k in (1, 2)
                     for x in (out / f"phase{k}" / "metrics.jsonl").read_text().splitlines())
    assert stage["steps"] == rl_updates == 4 and stage["items"] == 6 + 4          # the carried 3 are phase 1 items
    assert str(out / "sft" / "final") in (out / "sft_long" / "config.yaml").read_text()
    text = capsys.readouterr().out
    assert "SFT-long" in text and "RL - SFT-long" in text and "± 2 SE" in text
    report = (out / "report.md").read_text()
    assert all(f"| {arm} |" in report for arm in ("base", "sft", "sft-long", "rl")) and "± 2 standard errors" in report
