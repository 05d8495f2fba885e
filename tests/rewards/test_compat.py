"""verl and TRL reward functions, called exactly as those frameworks call them."""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
import pytest

from judge_server import field_of
from longrl.config.reward import OverlongConfig, RewardConfig
from longrl.data.prompt import user_message
from longrl.data.schema import Sample
from longrl.errors import UserError
from longrl.rewards import compat
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


FAKE_VERL = {
    "verl/__init__.py": "",
    "verl/utils/__init__.py": "",
    "verl/utils/reward_score/__init__.py": (
        "def default_compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
        "    if data_source == 'openai/gsm8k':\n"
        "        return 1.0 if str(ground_truth) in solution_str else 0.0\n"
        "    if data_source == 'math_dapo':\n"
        "        return {'score': -1.0, 'acc': False, 'pred': '7'}\n"
        "    raise NotImplementedError(f'Reward function is not implemented for {data_source=}')\n"),
}


@pytest.fixture
def no_warnings_yet(monkeypatch):
    monkeypatch.setattr(compat, "_WARNED_SOURCES", set())


@pytest.fixture
def fake_verl(tmp_path, monkeypatch, no_warnings_yet):
    """A `verl` package on sys.path whose default_compute_score knows two sources (the outside world, faked)."""
    for name, text in FAKE_VERL.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "verl" or m.startswith("verl.")]:
        del sys.modules[name]


def test_verl_unknown_source_without_verl_scores_0_and_warns_once_per_source(monkeypatch, no_warnings_yet):
    monkeypatch.setitem(sys.modules, "verl", None)              # verl not importable (as on this machine)
    with pytest.warns(UserWarning, match=r"data_source 'gsm8k' is not a longrl task .* and verl is not installed: "
                                         r"its responses score 0.0"):
        assert compute_score("gsm8k", R1, "30") == compat.UNKNOWN_SOURCE_SCORE == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # the second time: no warning
        assert compute_score("gsm8k", R1, "30") == 0.0
        assert compute_score("gsm8k", R1, 30, return_dict=True) == {"score": 0.0, "acc": 0.0, "pred": ""}
    with pytest.warns(UserWarning, match="'aime24'"):            # another source: its own warning
        compute_score("aime24", R1, "30")


def test_verl_unknown_source_goes_to_verls_default_when_verl_is_importable(fake_verl):
    assert compute_score("openai/gsm8k", "#### 72", "72") == 1.0
    assert compute_score("openai/gsm8k", "#### 71", "72") == 0.0
    assert compute_score("openai/gsm8k", "#### 72", "72", return_dict=True) == {"score": 1.0, "acc": 1.0, "pred": ""}
    assert compute_score("math_dapo", "x", "7") == {"score": -1.0, "acc": False, "pred": "7"}   # verl's dict as is
    assert compute_score("docmath_qa", R1, "30") == 1.0          # longrl's own sources stay longrl's
    with pytest.warns(UserWarning, match="verl's default_compute_score does not know it either"):
        assert compute_score("my_private_set", R1, "30") == 0.0


def test_a_mixed_verl_batch_never_raises(fake_verl):
    score = load_like_verl("compute_score_dict")
    rows = [("docmath_qa", R1, "30"), ("openai/gsm8k", "#### 3", "3"), ("unknown_src", R1, "x")]
    with pytest.warns(UserWarning, match="'unknown_src'"):
        out = [score(data_source=d, solution_str=s, ground_truth=g, extra_info={"index": i}) for i, (d, s, g) in enumerate(rows)]
    assert [o["score"] for o in out] == [1.0, 1.0, 0.0] and all(set(o) == {"score", "acc", "pred"} for o in out)


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


def load_like_verl(name: str, reward_kwargs: dict | None = None):
    """verl's get_custom_reward_fn: the file loaded as module `custom_module`, the function wrapped with reward_kwargs."""
    import importlib.util
    import sys

    import longrl.rewards.compat as compat

    spec = importlib.util.spec_from_file_location("custom_module", compat.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["custom_module"]
    raw_fn = getattr(module, name)
    kwargs = dict(reward_kwargs or {})

    def wrapped_fn(*args, **call_kwargs):
        return raw_fn(*args, **call_kwargs, **kwargs)

    return wrapped_fn


@pytest.mark.parametrize("ground_truth", [
    30,                                  # int, as many verl datasets carry numeric answers
    30.0,                                # float
    np.int64(30),                        # a numpy scalar out of a parquet column
    np.array([30, 31]),                  # a numpy array of numbers
    np.array(["Therefore, the answer is 30."], dtype=object),   # verl's non-tensor batch: an object array
    ["29", 30],                          # a mixed list
    "30",
])
def test_verl_ground_truth_types(ground_truth):
    score = load_like_verl("compute_score")
    assert score(data_source="docmath_qa", solution_str=R1, ground_truth=ground_truth, extra_info={"index": 0}) == 1.0


def test_verl_numeric_ground_truth_formats():
    response = "<think>x</think>Therefore, the answer is 0.15."
    assert compute_score("docmath", response, 0.15) == 1.0
    assert compute_score("docmath", response, 0.25) == 0.0
    with pytest.raises(UserError, match="ground_truth must be"):
        compute_score("docmath", response, None)
    with pytest.raises(UserError, match="ground_truth must be"):
        compute_score("docmath", response, True)


def test_verl_dict_return_by_name_or_keyword():
    # DAPO's reward manager: result = compute_score(...); if dict: score = result["score"], every key logged,
    # and algorithm.filter_groups.metric=acc reads "acc"
    by_name = load_like_verl("compute_score_dict")
    by_kwarg = load_like_verl("compute_score", {"return_dict": True, "require_think": True})
    for fn in (by_name, by_kwarg):
        right = fn(data_source="docmath_qa", solution_str=R1, ground_truth=np.array(["30"], dtype=object), extra_info=None)
        wrong = fn(data_source="docmath_qa", solution_str=R1, ground_truth=31, extra_info=None)
        assert right == {"score": 1.0, "acc": 1.0, "pred": "30"}
        assert wrong == {"score": 0.0, "acc": 0.0, "pred": "30"}
    plain = load_like_verl("compute_score", {"require_think": False})
    assert plain(data_source="docmath", solution_str="Therefore, the answer is 30.", ground_truth=30) == 1.0


def test_trl_reward_warns_once_when_no_completion_reasons():
    reward = make_trl_reward()
    plain = ["Therefore, the answer is 30.", "Therefore, the answer is 29."]
    with pytest.warns(UserWarning, match="none of the 2 completions contains </think>"):
        assert reward(prompts=["p", "p"], completions=plain, answers=["30", "30"], task=["docmath", "docmath"]) == [0.0, 0.0]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a second call warns no more
        reward(prompts=["p", "p"], completions=plain, answers=["30", "30"], task=["docmath", "docmath"])
        # some completions reason: no warning at all
        make_trl_reward()(prompts=["p", "p"], completions=[R1, plain[0]], answers=["30", "30"], task=["docmath", "docmath"])
        relaxed = make_trl_reward(RewardConfig(require_think=False))
        assert relaxed(prompts=["p", "p"], completions=plain, answers=[30, ["30"]], task=["docmath", "docmath"]) == [1.0, 0.0]
