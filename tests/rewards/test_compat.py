"""verl and TRL reward functions, called exactly as those frameworks call them."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from judge_server import field_of

from longrl.config.reward import OverlongConfig, RewardConfig
from longrl.data.prompt import user_message
from longrl.data.schema import Sample
from longrl.errors import UserError
from longrl.rewards.compat import compute_score, longrl_reward, make_trl_reward

R1 = "<think>The report lists 12 and 18.</think>Therefore, the answer is 30."


def test_verl_naive_reward_manager_call():
    # verl: score = self.compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)
    assert compute_score(data_source="docmath_qa", solution_str=R1, ground_truth="Therefore, the answer is 30.",
                         extra_info={"index": 3, "split": "train"}) == 1.0
    assert compute_score(data_source="docmath_qa", solution_str=R1, ground_truth="31", extra_info=None) == 0.0
    choice = "<think>...</think>The correct answer is (B)."
    assert compute_score(data_source="long_toc_choices_0", solution_str=choice, ground_truth="The correct answer is (B)") == 1.0
    multihop = "<think>...</think>Therefore, the answer is Gustave Eiffel."
    assert compute_score(data_source="musique", solution_str=multihop, ground_truth=np.array(["Eiffel", "G. Eiffel"])) == 1.0
    assert compute_score(data_source="multihop", solution_str=multihop, ground_truth=["Rilu"]) == 0.0


def test_verl_reward_kwargs_are_passed_through():
    # verl binds custom_reward_function.reward_kwargs with functools.partial
    plain = functools.partial(compute_score, require_think=False)
    response = "Therefore, the answer is 30."
    assert compute_score("docmath", response, "30") == 0.0
    assert plain(data_source="docmath", solution_str=response, ground_truth="30", extra_info={}) == 1.0


def test_verl_unknown_source_is_an_error():
    with pytest.raises(UserError, match="known prefix"):
        compute_score("gsm8k", R1, "30")


def test_trl_plain_completions():
    # GRPOTrainer: reward_func(prompts=prompts, completions=completions, completion_ids=ids, **reward_kwargs)
    out = longrl_reward(prompts=["p1", "p2", "p3"],
                        completions=[R1, "<think>x</think>Therefore, the answer is 29.", "<think>x</think>The correct answer is (A)"],
                        completion_ids=[[1, 2], [3], [4]], answers=[["30"], ["30"], ["A"]],
                        task=["docmath", "docmath", "choice"], id=["a", "b", "c"], trainer_state=None)
    assert out == [1.0, 0.0, 1.0]
    assert longrl_reward.__name__ == "longrl_reward"


def test_trl_conversational_completions_and_data_source_column():
    prompts = [[{"role": "user", "content": "Question?"}]] * 2
    completions = [[{"role": "assistant", "content": R1}], [{"role": "assistant", "content": "<think>x</think>No idea."}]]
    out = longrl_reward(prompts=prompts, completions=completions, answers=["30", "30"], data_source=["docmath_qa", "docmath_qa"])
    assert out == [1.0, 0.0]


def test_trl_missing_columns_are_explained():
    with pytest.raises(UserError, match="'answers' and 'task'"):
        longrl_reward(prompts=["p"], completions=[R1])


def test_trl_reward_with_judge_and_overlong(judge_server, judge_cfg):
    sample = Sample(id="s", task="multihop", context="Long document about Paris.", question="Which city hosts the tower?",
                    answers=["Paris"])
    prompt = [{"role": "user", "content": user_message(sample)}]
    cfg = RewardConfig(judge=judge_cfg, overlong=OverlongConfig(enabled=True, buffer=4))
    reward = make_trl_reward(cfg, max_completion_length=10, name="docqa")
    out = reward(prompts=[prompt, prompt], completions=[[{"role": "assistant", "content": "<think>x</think>Therefore, the answer is paris!"}],
                                                        [{"role": "assistant", "content": "<think>x</think>Therefore, the answer is Lutetia"}]],
                 completion_ids=[[0] * 8, [0] * 3], answers=[["Paris"], ["Paris"]], task=["multihop", "multihop"])
    assert out == [0.5, 0.0] and reward.__name__ == "docqa"
    assert judge_server.count == 1
    assert field_of(judge_server.requests[0].body, "question") == "Which city hosts the tower?"
