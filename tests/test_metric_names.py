"""metric_names.py: the names trackers get (longrl's, verl's, both), and the README table that shows them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from longrl.metric_names import DERIVED, VERL_NAMES, tracker_values

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = {"reward/mean": 0.25, "reward/max": 1.0, "loss/policy": -0.5, "loss/clip_frac": 0.125, "entropy": 2.0,
       "advantage/mean": 0.1, "response_len/mean": 40.0, "time/step": 3.0, "accuracy": 0.5, "loss/clip_frac_high": 0.1,
       "tokens_per_s": 900.0, "dist/world_size": 3.0, "rollout/refills": 2.0, "val/accuracy": 0.4,
       "val/docmath/accuracy": 0.3}


def test_longrl_names_pass_unchanged():
    assert tracker_values(ROW, "longrl", step=7) == ROW


def test_verl_names_replace_longrl_ones_where_verl_has_the_quantity():
    got = tracker_values(ROW, "verl", step=7, val_n=4)
    assert got["critic/score/mean"] == got["critic/rewards/mean"] == 0.25
    assert got["critic/score/max"] == 1.0 and got["actor/pg_loss"] == -0.5 and got["actor/pg_clipfrac"] == 0.125
    assert got["actor/entropy"] == 2.0 and got["critic/advantages/mean"] == 0.1 and got["response_length/mean"] == 40.0
    assert got["timing_s/step"] == got["perf/time_per_step"] == 3.0
    assert got["perf/throughput"] == 300.0                      # per rank, as verl divides by its GPUs
    assert got["train/num_gen_batches"] == 3.0 and got["training/global_step"] == 7.0
    assert got["val-core/docmath/acc/mean@4"] == 0.3
    # quantities verl does not log keep longrl's names; renamed ones are not sent twice
    assert got["accuracy"] == 0.5 and got["loss/clip_frac_high"] == 0.1 and got["val/accuracy"] == 0.4
    assert not {"reward/mean", "loss/policy", "entropy", "time/step", "val/docmath/accuracy"} & set(got)


def test_both_keeps_every_longrl_name_and_adds_verl_ones():
    got = tracker_values(ROW, "both", step=7)
    assert {k: got[k] for k in ROW} == ROW
    assert got["critic/score/mean"] == 0.25 and got["val-core/docmath/acc/mean@1"] == 0.3


def test_unknown_naming_is_refused():
    with pytest.raises(ValueError, match="unknown metric names 'mlflow'; known: longrl, verl, both"):
        tracker_values(ROW, "mlflow")


def readme_table() -> dict[str, tuple[str, ...]]:
    """longrl name -> verl names, from the README's table (between its two marker comments)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- metric-names -->")[1].split("<!-- /metric-names -->")[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = tuple(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def test_the_readme_table_is_the_code_table():
    table = readme_table()
    renames = {k: v for k, v in table.items() if k in VERL_NAMES}
    assert renames == VERL_NAMES
    derived = {name for k, v in table.items() if k not in VERL_NAMES for name in v}
    assert derived == set(DERIVED)
