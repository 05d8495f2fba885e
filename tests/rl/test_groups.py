"""rl/groups.py: a group survives its JSON trip between ranks; whole-group splits; the split check."""

from __future__ import annotations

import math

import pytest

from longrl.data.schema import Sample
from longrl.engine.distributed import SINGLE
from longrl.errors import ConfigError
from longrl.rewards.hybrid import RewardResult
from longrl.rl.groups import Group, check_split, group_from_payload, group_payload, roll_across_ranks
from longrl.rl.sampler import Draw


def make_group(index: int) -> Group:
    item = Sample(id=f"item-{index}", task="docmath", context="doc", question="q?", answers=["3"])
    results = [RewardResult(score=1.0, rule_score=1.0, judge_score=None, prediction="3", status="ok", penalty=0.0,
                            metrics={"parsed": 1.0}),
               RewardResult(score=-0.5, rule_score=0.0, judge_score=0.0, prediction=None, status="no_answer",
                            penalty=-0.5, judge_error=None, judge_cached=True)]
    return Group(Draw(index, item), [1, 2, 3], [[4, 5], [6]], [False, True], ["a", "b"], results, [1.0, -0.5])


def test_a_group_survives_its_json_trip():
    import json

    group = make_group(7)
    back = group_from_payload(json.loads(json.dumps(group_payload(group))), group.draw)
    assert back == group and back.correct == [1.0, 0.0]
    nan = make_group(1)
    nan.results[0].metrics["f1"] = math.nan                      # NaN metrics pass too
    assert math.isnan(group_from_payload(json.loads(json.dumps(group_payload(nan))), nan.draw).results[0].metrics["f1"])


def test_one_process_rolls_every_draw_itself():
    draws = [make_group(i).draw for i in range(3)]
    calls = []

    def roll(step, share):
        calls.append((step, [d.index for d in share]))
        return [make_group(d.index) for d in share]

    groups = roll_across_ranks(roll, 5, draws, SINGLE)
    assert calls == [(5, [0, 1, 2])] and [g.draw.index for g in groups] == [0, 1, 2]


def test_ranks_must_share_each_mini_batch_evenly():
    check_split(8, 2, 4)                 # 4 groups per mini-batch, 1 per rank
    check_split(6, 4, 1)                 # one process takes any split
    with pytest.raises(ConfigError, match="multiple of mini_batches x ranks = 8"):
        check_split(12, 2, 4)


def test_step_metrics_give_the_accuracy_of_each_task_rolled_out():
    from dataclasses import replace

    from longrl.rl.rollout import rollout_metrics

    docmath = make_group(0)                                               # 1 of 2 correct
    multihop = make_group(1)
    multihop = replace(multihop, draw=Draw(1, replace(multihop.draw.item, task="multihop")),
                       results=[multihop.results[1], multihop.results[1]])     # 0 of 2 correct
    m = rollout_metrics([docmath, make_group(2), multihop])
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["accuracy/docmath"] == 0.5 and m["accuracy/multihop"] == 0.0
    assert "accuracy/choice" not in m                                     # only tasks the step rolled out
