"""Phase filtering by tokenized prompt length, phase length, and per-phase config."""

import pytest

from longrl.config import load_config
from longrl.config.curriculum import PhaseConfig, RetrospectiveConfig
from longrl.curriculum.phases import (
    filter_by_length,
    mix_phase,
    phase_config,
    phase_steps,
    prompt_tokens,
    prompts_per_round,
    with_replays,
)
from longrl.data.synthetic import synthesize
from longrl.errors import ConfigError
from longrl.rl.sampler import PromptSampler


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


# Retrospective carry: what phase 2 trains on, when both phases read one file and when each has its own.
L1, L2 = 400, 800        # phase input limits: 150- and 300-token documents fit phase 1, 600-token ones only phase 2


def ids(samples):
    return [s.id for s in samples]


@pytest.fixture(scope="module")
def two_phases(mixed_lengths, tokenizer):
    """(phase 1's items, the 2 carried hard ones, phase 2's own items that fit) with one file for both phases."""
    phase1 = filter_by_length(mixed_lengths, tokenizer, L1).kept
    carried = [phase1[5], phase1[2]]                 # what the retrospective picked, hardest first
    return phase1, carried, filter_by_length(mixed_lengths, tokenizer, L2).kept


def test_new_plus_carried_is_the_default():
    assert RetrospectiveConfig().carry == "new_plus_carried" and RetrospectiveConfig().replay_copies == 1


def test_one_file_new_plus_carried_trains_on_the_longer_items_and_the_carried_ones(two_phases, tokenizer):
    phase1, carried, own = two_phases
    mix = mix_phase(own, carried, ids(phase1))
    longer = [s for s in own if prompt_tokens(tokenizer, s) > L1]
    assert len(longer) == 4 and len(phase1) == 8
    assert mix.items == longer + carried and mix.replayed == [] and mix.epoch() == mix.items
    assert mix.counts == {"seen": 8, "new": 4, "carried": 2, "replayed": 0, "kept": 6, "epoch": 6}
    # the phase-1 items not carried are not trained on again
    assert not set(ids(mix.items)) & (set(ids(phase1)) - set(ids(carried)))


def test_one_file_replay_keeps_everything_and_repeats_the_carried_ones(two_phases):
    phase1, carried, own = two_phases
    mix = mix_phase(own, carried, ids(phase1), carry="replay", replay_copies=2)
    assert mix.items == own and ids(mix.replayed) == [carried[0].id] * 2 + [carried[1].id] * 2
    assert mix.counts == {"seen": 8, "new": 4, "carried": 2, "replayed": 4, "kept": 12, "epoch": 16}
    epoch = ids(mix.epoch())
    assert {i: epoch.count(i) for i in ids(carried)} == {carried[0].id: 3, carried[1].id: 3}
    assert all(epoch.count(i) == 1 for i in ids(own) if i not in ids(carried))
    # one epoch of the prompt sampler draws each carried item 1 + replay_copies times
    drawn = [d.item.id for d in PromptSampler(mix.epoch(), seed=0).next(len(epoch))]
    assert sorted(drawn) == sorted(epoch)
    # the frozen form (distinct items + replayed ids) gives the same epoch back
    assert with_replays(mix.items, ids(mix.replayed)) == mix.epoch()


def test_separate_files_every_own_item_is_new(two_phases, mixed_lengths):
    phase1, carried, _ = two_phases
    own = mixed_lengths[8:]                          # stands for another file: none of its ids in phase 1
    assert not set(ids(own)) & set(ids(phase1))
    mix = mix_phase(own, carried, ids(phase1))
    assert mix.items == own + carried
    assert mix.counts == {"seen": 0, "new": 4, "carried": 2, "replayed": 0, "kept": 6, "epoch": 6}
    replay = mix_phase(own, carried, ids(phase1), carry="replay")
    assert replay.items == own + carried and replay.replayed == carried
    assert replay.counts == {"seen": 0, "new": 4, "carried": 2, "replayed": 2, "kept": 6, "epoch": 8}


def test_nothing_carried_the_first_phase_is_all_new(mixed_lengths):
    mix = mix_phase(mixed_lengths, [], [])
    assert mix.items == list(mixed_lengths) and mix.counts["new"] == len(mixed_lengths) == mix.counts["epoch"]
    with pytest.raises(ValueError, match="carry"):
        mix_phase(mixed_lengths, [], [], carry="sometimes")
