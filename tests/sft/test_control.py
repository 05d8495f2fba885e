"""sft/control.py: the SFT-long control arm's items and config."""

from __future__ import annotations

import pytest

from longrl.config import load_config
from longrl.data.schema import Sample
from longrl.errors import ConfigError
from longrl.sft.control import long_control_config, traced_items


def item(i: str, trace: str | None = "<think> a </think> the answer is 1") -> Sample:
    return Sample(id=i, task="docmath", context="doc", question="q?", answers=["1"], meta={"trace": trace} if trace else {})


def test_traced_items_keeps_each_item_once_in_order():
    got = traced_items([item("a"), item("b"), item("a"), item("c"), item("b")])
    assert [s.id for s in got] == ["a", "b", "c"]


def test_items_without_traces_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"1 of the RL phases' 2 items have no meta.trace \(first: 'b'\)"):
        traced_items([item("a"), item("b", trace=None)])
    with pytest.raises(ConfigError, match="no items"):
        traced_items([])


def test_long_control_config_starts_from_the_sft_checkpoint_for_the_matched_steps():
    cfg = load_config(None, ["sft.long_control=true", "sft.lr=3e-4", "sft.epochs=2"])
    got = long_control_config(cfg, "runs/x/sft/final", 124)
    assert got.model.path == "runs/x/sft/final" and got.sft.steps == 124 and got.sft.lr == 3e-4
    assert got.sft.long_control is False and cfg.sft.steps is None           # the input config is untouched
    with pytest.raises(ConfigError, match="0 optimizer updates"):
        long_control_config(cfg, "runs/x/sft/final", 0)
