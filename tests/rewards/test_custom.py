"""reward.custom: a scoring function from a file the config names, combined with the rule, the judge and
overlong shaping by the documented rule; clear errors at start-up, counted (or fatal) errors at run time."""

from __future__ import annotations

import sys
import textwrap

import pytest

from longrl.config.reward import CustomRewardConfig, OverlongConfig, RewardConfig
from longrl.errors import ConfigError, UserError
from longrl.rewards.custom import CustomRewardError, load_custom
from longrl.rewards.hybrid import HybridReward, RewardInput, summarize
from longrl.rewards.judge import JudgeVerdict

REWARD_FILE = '''
CALLS = []
with open(__file__ + ".loads", "a") as fh:      # one mark per time the file runs
    fh.write("x")

def compute_score(data_source, solution_str, ground_truth, extra_info=None, bonus=0.0):
    CALLS.append((data_source, solution_str, ground_truth, extra_info))
    if "raise" in solution_str:
        raise ValueError("cannot score this")
    if "none" in solution_str:
        return None
    if "nan" in solution_str:
        return float("nan")
    if "dict" in solution_str:
        return {"score": -1.0, "acc": False, "pred": "x"}
    if "half" in solution_str:
        return 0.5
    return 1.0 + bonus if any(g in solution_str for g in ground_truth) else 0.0
'''


def write(tmp_path, text=REWARD_FILE, name="my_reward.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def custom_cfg(path, **kw) -> RewardConfig:
    return RewardConfig(custom=CustomRewardConfig(path=str(path), **kw))


def item(response, task="multihop", golds=("Paris",), **kw):
    return RewardInput(task=task, question="Which city?", answers=list(golds), response=response, context="doc", **kw)


def module_of(reward: HybridReward):
    return sys.modules[reward.custom.fn.__module__]


def test_the_custom_score_replaces_the_rule_and_sees_the_row(tmp_path):
    reward = HybridReward(custom_cfg(write(tmp_path), reward_kwargs={"bonus": 0.5}))
    results = reward.score([item("<think>x</think>Paris it is"), item("<think>x</think>Therefore, the answer is Paris."),
                            item("no think, but Paris"), item("<think>x</think>Therefore, the answer is Rome.")])
    # the built-in rule would give 0, 1, 0 (no </think>), 0: the custom function decides instead
    assert [r.score for r in results] == [1.5, 1.5, 1.5, 0.0]
    assert all(r.custom and r.custom_error is None for r in results)
    assert results[1].prediction == "Paris" and results[2].status == "unfinished_think"   # longrl's extraction still
    task, text, golds, extra = module_of(reward).CALLS[0]
    assert (task, text, golds) == ("multihop", "<think>x</think>Paris it is", ["Paris"])
    assert extra == {"question": "Which city?", "context": "doc", "response_tokens": 0, "max_response_tokens": None}
    m = summarize(results)
    assert m["reward/custom"] == 1.0 and m["reward/custom_errors"] == 0.0 and m["reward/rule"] == pytest.approx(4.5 / 4)


def test_tasks_limits_the_custom_function_to_the_tasks_it_names(tmp_path):
    reward = HybridReward(custom_cfg(write(tmp_path), tasks=["docmath"]))
    qa, math_ = reward.score([item("<think>x</think>Therefore, the answer is Paris."),
                              item("<think>x</think>the answer: 42", task="docmath", golds=["42"])])
    assert (qa.custom, qa.score, qa.metrics) == (False, 1.0, {"em": 1.0, "f1": 1.0})    # the built-in rule
    assert (math_.custom, math_.score) == (True, 1.0)                                   # the custom function
    assert [c[0] for c in module_of(reward).CALLS] == ["docmath"]


def test_a_dict_result_gives_its_score_and_logs_its_other_numbers(tmp_path):
    (r,) = HybridReward(custom_cfg(write(tmp_path))).score([item("<think>x</think>dict")])
    assert r.score == -1.0 and r.metrics == {"custom/acc": 0.0}          # "pred" is text: not a metric
    assert summarize([r])["reward/custom/acc"] == 0.0


class FakeJudge:
    """Says yes to every prediction; records what it was asked."""

    def __init__(self):
        self.asked = []

    async def judge(self, question, prediction, gold):
        self.asked.append(prediction)
        return JudgeVerdict(True, "[[YES]]")

    async def aclose(self):
        pass


def test_the_judge_is_asked_below_1_and_a_yes_lifts_the_score(tmp_path):
    judge = FakeJudge()
    cfg = custom_cfg(write(tmp_path)).model_copy(update={"overlong": OverlongConfig(enabled=True, buffer=10)})
    reward = HybridReward(cfg, judge=judge)
    kw = {"response_tokens": 95, "max_response_tokens": 100}                  # overlong penalty -0.5
    results = reward.score([item("<think>x</think>Therefore, the answer is half.", **kw),      # 0.5: judge says yes
                            item("<think>x</think>Therefore, the answer is Paris.", **kw),     # 1: not asked
                            item("<think>x</think>Therefore, the answer is dict.", **kw),      # -1: judge says yes
                            item("<think>x</think>no answer sentence, half", **kw)])            # no prediction: not asked
    assert judge.asked == ["half", "dict"]
    assert [r.score for r in results] == [0.5, 0.5, 0.5, 0.0]                # max(custom, yes) + penalty
    assert [r.rule_score for r in results] == [0.5, 1.0, -1.0, 0.5]


def test_without_a_judge_a_negative_custom_score_stays_negative(tmp_path):
    (r,) = HybridReward(custom_cfg(write(tmp_path))).score([item("<think>x</think>dict")])
    assert r.score == -1.0 and r.judge_score is None


def test_a_failing_call_stops_the_batch_by_default_naming_the_function_and_the_task(tmp_path):
    path = write(tmp_path)
    reward = HybridReward(custom_cfg(path))
    with pytest.raises(CustomRewardError, match=rf"reward.custom: compute_score from {path} failed on 1 of 2 responses "
                                                r"in this batch \(50% > reward.custom.max_error_rate=0\); first, on task "
                                                r"'multihop': ValueError: cannot score this"):
        reward.score([item("Paris"), item("raise")])
    assert issubclass(CustomRewardError, UserError)                           # exit 2 at the command line


@pytest.mark.parametrize("text, error", [("raise", "ValueError: cannot score this"),
                                         ("none", "returned NoneType None, not a finite number or a dict"),
                                         ("nan", "returned float nan, not a finite number")])
def test_failures_within_the_error_budget_score_0_and_are_counted(tmp_path, text, error):
    reward = HybridReward(custom_cfg(write(tmp_path), max_error_rate=0.5), judge=FakeJudge())
    results = reward.score([item("<think>x</think>Therefore, the answer is Paris."), item(f"<think>x</think>{text}")])
    assert results[0].score == 1.0 and results[1].score == 0.0 and error in results[1].custom_error
    assert reward.judge.asked == []                                           # a failed call is not the judge's
    assert summarize(results)["reward/custom_errors"] == 1.0


def test_the_file_runs_once_per_process(tmp_path):
    path = write(tmp_path)
    first, second = HybridReward(custom_cfg(path)), HybridReward(custom_cfg(path, name="compute_score"))
    assert first.custom.fn is second.custom.fn and (tmp_path / "my_reward.py.loads").read_text() == "x"


def test_no_custom_reward_changes_nothing():
    assert HybridReward(RewardConfig()).custom is None
    (r,) = HybridReward(RewardConfig()).score([item("<think>x</think>Therefore, the answer is Paris.")])
    assert not r.custom and "reward/custom" not in summarize([r])


@pytest.mark.parametrize("files, cfg, message", [
    ({}, {"path": "nope.py"}, r"reward.custom.path: no such file: {d}/nope.py \(a relative path is read from the "
                              r"working directory, {d}\)"),
    ({"r.txt": "x = 1"}, {"path": "r.txt"}, r"reward.custom.path: {d}/r.txt is not a Python file \(.py\)"),
    ({"r.py": "def f(:\n"}, {"path": "r.py"}, r"reward.custom.path: {d}/r.py failed to load \(line 1\): SyntaxError"),
    ({"r.py": "import no_such_module_here\n"}, {"path": "r.py"},
     r"reward.custom.path: {d}/r.py failed to load: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ({"r.py": "def other(a, b, c, d):\n    return 1\n"}, {"path": "r.py"},
     r"reward.custom.name: {d}/r.py defines no 'compute_score'; functions it defines: other"),
    ({"r.py": "compute_score = 3\n"}, {"path": "r.py"}, r"reward.custom.name: 'compute_score' in {d}/r.py is a int"),
    ({"r.py": "def compute_score(text):\n    return 1\n"}, {"path": "r.py"},
     r"reward.custom: compute_score\(text\) in {d}/r.py cannot be called as compute_score\(data_source, solution_str, "
     r"ground_truth, extra_info, \*\*reward_kwargs\)"),
    ({"r.py": "def compute_score(a, b, c, d):\n    return 1\n"}, {"path": "r.py", "reward_kwargs": {"k": 1}},
     r"cannot be called as .*unexpected keyword argument 'k'"),
    ({"r.py": REWARD_FILE}, {"path": "r.py", "tasks": ["gsm8k"]},
     r"reward.custom.tasks: unknown task 'gsm8k'; known: .*multihop"),
])
def test_start_up_errors_name_the_key_and_the_problem(tmp_path, monkeypatch, files, cfg, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)                                # relative paths: the working directory
    d = str(tmp_path.resolve())
    with pytest.raises(ConfigError, match=message.replace("{d}", d.replace(".", r"\."))):
        load_custom(CustomRewardConfig(**cfg))


def test_a_relative_path_is_read_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub")
    monkeypatch.chdir(tmp_path)
    custom = load_custom(CustomRewardConfig(path="sub/my_reward.py"))
    assert custom.label == f"compute_score from {tmp_path.resolve() / 'sub' / 'my_reward.py'}"
    assert custom.score(item("Paris")).score == 1.0


def test_longrl_score_uses_the_custom_function_once_per_response(tmp_path):
    import json

    from longrl.cli import main

    path = write(tmp_path, REWARD_FILE + '''
with open(__file__ + ".calls", "w") as fh:
    pass

_plain = compute_score

def compute_score(*args, **kwargs):
    with open(__file__ + ".calls", "a") as fh:
        fh.write("x")
    return _plain(*args, **kwargs)
''')
    rows = [{"id": "a", "task": "qa", "question": "q", "response": "<think>a</think>Paris", "answers": ["Paris"]},
            {"id": "b", "task": "qa", "question": "q", "response": "<think>a</think>half", "answers": ["Paris"]}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                 f"reward.custom.path={path}"]) == 0
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["score"] for r in scored] == [1.0, 0.5]
    assert (tmp_path / "my_reward.py.calls").read_text() == "xx"


def test_evaluation_keeps_the_benchmarks_protocol(tmp_path):
    from longrl.config import load_config
    from longrl.eval.harness import build_reward

    cfg = load_config(None, [f"reward.custom.path={write(tmp_path)}"])
    assert HybridReward(cfg.reward).custom is not None and build_reward(cfg).custom is None
