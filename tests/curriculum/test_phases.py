"""Phase filtering by tokenized prompt length, phase length, and per-phase config."""

import pytest

from longrl.config import load_config
from longrl.config.curriculum import PhaseConfig
from longrl.curriculum.phases import (
    filter_by_length,
    phase_config,
    phase_steps,
    prompt_tokens,
    prompts_per_round,
)
from longrl.data.synthetic import synthesize
from longrl.errors import ConfigError


@pytest.fixture(scope="module")
def mixed_lengths(tokenizer):
    return [s for length in (150, 300, 600) for s in synthesize(["multihop", "docmath"], 4, length, seed=0, tokenizer=tokenizer)]


def test_filter_keeps_only_items_that_fit(mixed_lengths, tokenizer):
    result = filter_by_length(mixed_lengths, tokenizer, 400)
    assert result.counts() == {"kept": 8, "dropped": 4}
    assert all(prompt_tokens(tokenizer, s) <= 400 for s in result.kept)
    assert all(prompt_tokens(tokenizer, s) > 400 for s in result.dropped)
    assert result.kept == [s for s in mixed_lengths if s in result.kept]  # order kept


def test_limit_is_on_the_whole_chat_prompt(mixed_lengths, tokenizer):
    s = mixed_lengths[0]
    n = prompt_tokens(tokenizer, s)
    assert filter_by_length([s], tokenizer, n).counts() == {"kept": 1, "dropped": 0}
    assert filter_by_length([s], tokenizer, n - 1).counts() == {"kept": 0, "dropped": 1}


def test_phase_steps():
    assert phase_steps(PhaseConfig(name="a", max_input_tokens=100, max_response_tokens=10, steps=7), 100, 4) == 7
    assert phase_steps(PhaseConfig(name="a", max_input_tokens=100, max_response_tokens=10, epochs=2), 10, 4) == 5
    assert phase_steps(PhaseConfig(name="a", max_input_tokens=100, max_response_tokens=10), 0, 4) == 1


def test_phase_epochs_count_generation_rounds_of_gen_prompts():
    # As verl's total_epochs counts gen_batch_size batches: 1,600 items in rounds of 384 -> 5 steps an epoch.
    phase = PhaseConfig(name="a", max_input_tokens=100, max_response_tokens=10, epochs=1)
    cfg = load_config(None, ["train.prompts_per_step=128", "algo.gen_prompts=384"])
    assert prompts_per_round(cfg) == 384 and phase_steps(phase, 1600, prompts_per_round(cfg)) == 5
    assert prompts_per_round(load_config(None, ["train.prompts_per_step=128"])) == 128      # adaptive refills
    assert prompts_per_round(cfg, phase.model_copy(update={"overrides": {"algo.dynamic_sampling": False}})) == 128
    assert prompts_per_round(cfg, phase.model_copy(update={"overrides": {"algo.gen_prompts": 256}})) == 256


def test_phase_config_applies_limits_start_and_overrides():
    cfg = load_config(None, ["algo.clip_eps_high=0.28"])
    phase = PhaseConfig(name="p2", max_input_tokens=600, max_response_tokens=48,
                        overrides={"algo.clip_eps_high": 0.3, "rollout.temperature": 0.9})
    out = phase_config(cfg, phase, init_from="runs/x/phase1/final", steps=12)
    assert out.model.path == "runs/x/phase1/final" and out.train.steps == 12
    assert (out.rollout.max_input_tokens, out.rollout.max_new_tokens) == (600, 48)
    assert out.algo.clip_eps_high == 0.3 and out.rollout.temperature == 0.9
    bad = PhaseConfig(name="p3", max_input_tokens=600, max_response_tokens=48, overrides={"algo.clip_hi": 1})
    with pytest.raises(ConfigError, match=r"(?s)curriculum phase .p3..*algo.clip_hi.*unknown key"):
        phase_config(cfg, bad, init_from="x", steps=1)
