"""rl/dynamic.py: informative-group selection and refill budget, without a model."""

from __future__ import annotations

import pytest

from longrl.rl.dynamic import collect_groups, is_informative, refill_size


class Stream:
    """Groups from a fixed script of reward rows; records how many were asked for each round."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.asked = []
        self.pos = 0

    def __call__(self, n):
        self.asked.append(n)
        out = [(self.pos + i, self.rows[(self.pos + i) % len(self.rows)]) for i in range(n)]
        self.pos += n
        return out


def rewards_of(group):
    return group[1]


def test_is_informative():
    assert is_informative([0, 1, 0])
    assert is_informative([0.5, 0.25])
    assert not is_informative([1, 1, 1])
    assert not is_informative([0.0, 0.0])
    assert not is_informative([1.0])  # a single sample has no advantage either


@pytest.mark.parametrize("want,have,generated,kept,expected", [
    (8, 8, 8, 8, 0),      # full
    (8, 0, 8, 0, 8),      # nothing informative yet: a full round
    (8, 6, 8, 6, 3),      # 2 missing at keep rate 3/4 -> ceil(2.67)
    (8, 2, 8, 2, 8),      # 6 missing at 1/4 -> 24, capped at one step's worth
    (4, 3, 4, 3, 2),      # ceil(1 * 4/3)
])
def test_refill_size(want, have, generated, kept, expected):
    assert refill_size(want, have, generated, kept) == expected


def test_all_informative_needs_one_round():
    stream = Stream([[0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=2, drop_uniform=True)
    assert stream.asked == [4]
    assert [g[0] for g in out.groups] == [0, 1, 2, 3]
    m = out.metrics()
    assert m["filtered_groups_frac"] == 0.0 and m["rollout/refills"] == 0.0 and m["rollout/fill_frac"] == 1.0


def test_refills_until_full_and_drops_surplus():
    # Every other group is uniform: round 1 (4 asked) keeps 2, round 2 asks 4 more -> 2 more.
    stream = Stream([[1, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=3, drop_uniform=True)
    assert stream.asked == [4, 4]
    assert [g[0] for g in out.groups] == [1, 3, 5, 7]
    assert len(out.all) == 8 and out.uniform == 4 and out.refills == 1
    assert out.metrics()["filtered_groups_frac"] == 0.5


def test_surplus_informative_groups_are_generated_not_trained():
    stream = Stream([[1, 1], [0, 1], [0, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=3, drop_uniform=True)
    # round 1: 3 of 4 kept; round 2 asks ceil(1 * 4/3) = 2 -> both informative, one surplus.
    assert stream.asked == [4, 2]
    assert [g[0] for g in out.groups] == [1, 2, 3, 5]
    assert out.metrics()["filtered_groups_frac"] == pytest.approx(2 / 6)


def test_budget_spent_trains_on_what_it_has():
    stream = Stream([[1, 1], [1, 1], [1, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=1, drop_uniform=True)
    assert stream.asked == [4, 4]
    assert [g[0] for g in out.groups] == [3, 7]
    assert out.metrics()["rollout/fill_frac"] == 0.5


def test_no_informative_group_at_all_returns_empty_not_error():
    stream = Stream([[0, 0, 0]])
    out = collect_groups(stream, rewards_of, want=3, max_refills=2, drop_uniform=True)
    assert out.groups == [] and len(out.all) == 9 and out.refills == 2
    m = out.metrics()
    assert m["filtered_groups_frac"] == 1.0 and m["rollout/uniform_groups_frac"] == 1.0


def test_without_dynamic_sampling_one_round_keeps_everything():
    stream = Stream([[1, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=5, drop_uniform=False)
    assert stream.asked == [4]
    assert len(out.groups) == 4 and out.uniform == 2
    m = out.metrics()
    assert m["filtered_groups_frac"] == 0.0 and m["rollout/uniform_groups_frac"] == 0.5


def test_fixed_generation_rounds_as_the_official_script():
    # The script's shape scaled down: rounds of 6 prompts (gen_batch_size 384) for 2 trained (128).
    # 1 group in 4 is informative (3, 7, 11, ...): round 1 keeps one, a second round of the same size the other.
    stream = Stream([[1, 1], [1, 1], [1, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=2, max_refills=9, drop_uniform=True, round_size=6)
    assert stream.asked == [6, 6]                     # every round the same size, not sized by what is missing
    assert [g[0] for g in out.groups] == [3, 7] and out.refills == 1 and len(out.all) == 12
    adaptive = Stream([[1, 1], [1, 1], [1, 1], [0, 1]])
    collect_groups(adaptive, rewards_of, want=2, max_refills=9, drop_uniform=True)
    assert adaptive.asked[0] == 2                     # without round_size the first round is one step's worth


def test_fixed_rounds_stop_at_the_bound():
    # max_refills 9 = the script's max_num_gen_batches 10: ten rounds at most, then train on what there is.
    stream = Stream([[1, 1]] * 29 + [[0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=9, drop_uniform=True, round_size=6)
    assert stream.asked == [6] * 10 and out.refills == 9 and len(out.all) == 60
    assert [g[0] for g in out.groups] == [29, 59]     # the two informative groups of 60 generated
    assert out.metrics()["rollout/fill_frac"] == 0.5


def test_fixed_rounds_one_round_when_it_has_enough_and_surplus_is_not_trained():
    stream = Stream([[0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=9, drop_uniform=True, round_size=12)
    assert stream.asked == [12] and [g[0] for g in out.groups] == [0, 1, 2, 3] and len(out.all) == 12
    assert out.metrics()["filtered_groups_frac"] == pytest.approx(8 / 12)


def test_fixed_rounds_without_dynamic_sampling_draw_one_step():
    stream = Stream([[1, 1], [0, 1]])
    out = collect_groups(stream, rewards_of, want=4, max_refills=9, drop_uniform=False, round_size=12)
    assert stream.asked == [4] and len(out.groups) == 4


def test_round_smaller_than_a_step_is_refused():
    with pytest.raises(ValueError, match="round_size"):
        collect_groups(Stream([[0, 1]]), rewards_of, want=4, max_refills=1, drop_uniform=True, round_size=3)
