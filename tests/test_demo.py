"""`longrl demo`: pipeline + the paired SFT-vs-RL comparison written to summary.json."""

import json
import math

import numpy as np
import pytest

from longrl.cli import main
from longrl.demo import paired_comparison


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
    assert main(["demo", "--config", str(write_config(tmp_path)), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_eval"] == 3 and summary["eval_length"] == 400 and summary["start_policy"] == "sft"
    assert set(summary["by_length"]) == {"160", "400"}
    assert 0 <= summary["sft_accuracy"] <= 100 and 0 <= summary["rl_accuracy"] <= 100
    assert "gap ± SE" in capsys.readouterr().out
