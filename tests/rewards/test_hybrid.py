"""The hybrid reward: rule first, the judge on loopback when the rule says no, overlong shaping, metrics."""

from __future__ import annotations

import asyncio

import pytest

from judge_server import Reply, field_of
from longrl.config.reward import OverlongConfig, RewardConfig
from longrl.errors import ConfigError
from longrl.rewards.hybrid import HybridReward, RewardInput, overlong_penalty, summarize
from longrl.rewards.judge import JudgeError, JudgeVerdict


def naive_overlong(length: int, limit: int, buffer: int) -> float:
    if length <= limit - buffer:
        return 0.0
    if length <= limit:
        return ((limit - buffer) - length) / buffer
    return -1.0


def test_overlong_penalty_matches_reference():
    for limit in (10, 64, 100):
        for buffer in (1, 5, limit):
            for length in range(0, limit + 20):
                assert overlong_penalty(length, limit, buffer) == pytest.approx(naive_overlong(length, limit, buffer))
    assert [overlong_penalty(n, 100, 20) for n in (80, 90, 100, 120)] == [0.0, -0.5, -1.0, -1.0]


def item(task="multihop", answer="Therefore, the answer is Rome.", golds=("Paris",), question="Which city?", **kw):
    return RewardInput(task=task, question=question, answers=list(golds), response=f"<think>...</think>{answer}", **kw)


def test_rule_only_scores_and_statuses():
    reward = HybridReward(RewardConfig())
    results = reward.score([
        item(answer="Therefore, the answer is Paris."),
        item(answer="Therefore, the answer is Rome."),
        RewardInput("multihop", "q", ["Paris"], "<think>never closed"),
        item(answer="No idea."),
        item(task="docmath", answer="Therefore, the answer is 12.5%", golds=["0.125"]),
        item(task="choice", answer="The correct answer is (B)", golds=["B"]),
    ])
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert [r.status for r in results] == ["ok", "ok", "unfinished_think", "no_answer", "ok", "ok"]
    assert all(r.judge_score is None and r.penalty == 0.0 for r in results)
    assert results[0].metrics == {"em": 1.0, "f1": 1.0} and results[2].metrics == {"em": 0.0, "f1": 0.0}
    m = summarize(results)
    assert m["reward/mean"] == pytest.approx(0.5) and m["reward/rule"] == pytest.approx(0.5)
    assert (m["reward/min"], m["reward/max"]) == (0.0, 1.0)
    assert m["reward/unfinished_think"] == pytest.approx(1 / 6) and m["reward/no_answer"] == pytest.approx(1 / 6)
    assert m["reward/judge"] == 0.0 and m["reward/judge_calls"] == 0.0 and m["reward/judge_errors"] == 0.0
    assert m["reward/em"] == pytest.approx(1 / 4) and m["reward/parsed"] == 1.0
    assert summarize([]) == {}


def test_require_think_off_accepts_plain_responses():
    plain = RewardInput("multihop", "q", ["Paris"], "Therefore, the answer is Paris.")
    assert HybridReward(RewardConfig()).score([plain])[0].status == "unfinished_think"
    assert HybridReward(RewardConfig(require_think=False)).score([plain])[0].score == 1.0


def test_judge_asked_only_when_rule_fails_with_a_prediction(judge_server, judge_cfg):
    reward = HybridReward(RewardConfig(judge=judge_cfg))
    items = [
        item(answer="Therefore, the answer is Paris."),                           # rule 1: no call
        item(answer="Therefore, the answer is the city of paris", golds=["Paris"]),  # rule 1 (containment): no call
        item(answer="Therefore, the answer is The capital", golds=["Paris"]),      # rule 0: judge says no
        item(answer="Therefore, the answer is Lutetia Parisiorum", golds=["Lutetia Parisiorum Civitas"]),  # rule 1 (2/3 of the gold)
        item(answer="Therefore, the answer is Londinium", golds=["London"]),       # rule 0, judge asked
        RewardInput("multihop", "q", ["Paris"], "<think>never closed"),           # no prediction: no call
        item(answer="nothing"),                                                   # no answer: no call
        item(task="choice", answer="The correct answer is (C)", golds=["B"]),      # choice is exact: no call
        item(task="docmath", answer="Therefore, the answer is 1/2", golds=["0.5"]),  # numeric rule 0: asked
    ]
    judge_server.decide = lambda body: Reply(content="[[YES]]" if field_of(body, "prediction") in ("Londinium", "1/2") else "[[NO]]")
    results = reward.score(items)
    asked = sorted(field_of(r.body, "prediction") for r in judge_server.requests)
    assert asked == ["1/2", "Londinium", "The capital"]
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert results[4].rule_score == 0.0 and results[4].judge_score == 1.0
    assert results[2].judge_score == 0.0 and results[0].judge_score is None
    m = summarize(results)
    assert m["reward/judge_calls"] == pytest.approx(3 / 9)
    assert m["reward/rule"] + m["reward/judge"] == pytest.approx(m["reward/mean"])


def test_identical_questions_in_a_batch_are_sent_once_then_cached(judge_server, judge_cfg):
    reward = HybridReward(RewardConfig(judge=judge_cfg))
    batch = [item(answer="Therefore, the answer is Lutèce")] * 4 + [item(answer="Therefore, the answer is Rome")]
    results = reward.score(batch)
    assert judge_server.count == 2 and all(r.judge_score == 0.0 for r in results)
    again = reward.score(batch)
    assert judge_server.count == 2 and all(r.judge_cached for r in again)
    assert summarize(again)["reward/judge_cached"] == 1.0


def test_several_golds_go_to_the_judge_as_a_list(judge_server, judge_cfg):
    HybridReward(RewardConfig(judge=judge_cfg)).score([item(answer="Therefore, the answer is Lutetia", golds=["Paris", "Paname"])])
    assert field_of(judge_server.requests[0].body, "gold") == "- Paris\n- Paname"


def test_error_rate_above_threshold_raises(judge_server, judge_cfg):
    judge_server.decide = lambda body: Reply(content="I cannot decide.")
    reward = HybridReward(RewardConfig(judge=judge_cfg))
    with pytest.raises(JudgeError, match=r"failed on 2 of 2 calls .*max_error_rate=0.1.*no \[\[YES\]\]/\[\[NO\]\] verdict"):
        reward.score([item(answer="Therefore, the answer is Rome"), item(answer="Therefore, the answer is Lyon")])


def test_error_rate_within_threshold_is_counted_not_zeroed_silently(judge_server, judge_cfg):
    judge_server.decide = lambda body: Reply(content="unsure") if field_of(body, "prediction") == "Lyon" else Reply(content="[[NO]]")
    reward = HybridReward(RewardConfig(judge=judge_cfg.model_copy(update={"max_error_rate": 0.5})))
    results = reward.score([item(answer="Therefore, the answer is Rome"), item(answer="Therefore, the answer is Lyon")])
    assert results[1].judge_score is None and "verdict" in results[1].judge_error and results[1].score == 0.0
    m = summarize(results)
    assert m["reward/judge_errors"] == 1.0 and m["reward/judge_error_rate"] == 0.5


def test_ascore_from_a_running_loop_and_score_refuses_one(judge_server, judge_cfg):
    reward = HybridReward(RewardConfig(judge=judge_cfg))

    async def run():
        first = await reward.ascore([item(answer="Therefore, the answer is Paris."), item(answer="Therefore, the answer is Rome")])
        with pytest.raises(RuntimeError, match="ascore"):
            reward.score([item(answer="Therefore, the answer is Lyon")])
        second = await reward.ascore([item(answer="Therefore, the answer is Nice")])
        await reward.aclose()
        return first + second

    results = asyncio.run(run())
    assert [r.score for r in results] == [1.0, 0.0, 0.0] and judge_server.count == 2


def test_published_docmath_asks_the_judge_when_the_published_reward_does(judge_server, judge_cfg):
    """Under protocol published, DocMath asks the judge only about a number literal after the last </think>,
    read with parentheses kept (the published RL reward's condition); strict asks whenever its extraction
    found a prediction, a phrase included. Gold 8: every rule says 0."""
    T = "<think>reading</think>"
    responses = {
        "after think": T + "Therefore, the answer is 7.",                   # both ask
        "a phrase": T + "Therefore, the answer is seven",                   # strict asks; published reads no number
        "no </think>": "Therefore, the answer is 7.",                       # the published rule reads 7; no judge
        "empty after </think>": "<think>so the answer is 7</think>",        # likewise
        "in parentheses": T + "Therefore, the answer is (7).",              # the rule drops them; the judge step keeps them
        "a dot, then 7": T + "Therefore, the answer is (.), the answer is 7",  # the rule reads nothing; judged on 7
    }
    items = [RewardInput("docmath", "How many?", ["8"], response) for response in responses.values()]

    def asked(protocol):
        judge_server.requests.clear()
        results = HybridReward(RewardConfig(protocol=protocol, judge=judge_cfg.model_copy(update={"cache": False}))).score(items)
        assert all(r.rule_score == 0.0 and r.score == 0.0 for r in results)
        shown = sorted(field_of(request.body, "prediction") for request in judge_server.requests)
        return [name for name, r in zip(responses, results) if r.judge_asked], shown

    assert asked("published") == (["after think", "a dot, then 7"], ["7"])  # one call: identical questions merge
    assert asked("strict") == (["after think", "a phrase", "in parentheses", "a dot, then 7"], ["7", "seven"])


def test_published_protocol_and_prompt_together(judge_server, judge_cfg):
    judge_server.decide = lambda body: Reply(content="Answer 1 matches Answer 2: YES")  # no [[YES]]: the published reading
    cfg = RewardConfig(protocol="published", judge=judge_cfg.model_copy(update={"prompt": "published"}))
    response = "<think>.</think>Therefore, the answer is **1/2**"
    results = HybridReward(cfg).score([RewardInput("docmath", "What share?", ["0.5"], response)])
    assert results[0].rule_score == 0.0 and results[0].judge_score == 1.0 and results[0].score == 1.0
    assert judge_server.requests[0].body["messages"][1]["content"] == "\nProblem: What share?\nAnswer 1: 1\nAnswer 2: 0.5\n"


class RecordingJudge:
    """A JudgeClient of the test's own (the protocol lets callers bring any judge)."""

    def __init__(self):
        self.calls = []

    async def judge(self, question, prediction, gold):
        self.calls.append((question, prediction, gold))
        return JudgeVerdict(prediction == "Lutetia", raw="[[YES]]")

    async def aclose(self):
        pass


def test_injected_judge_client():
    judge = RecordingJudge()
    results = HybridReward(RewardConfig(), judge=judge).score([item(answer="Therefore, the answer is Lutetia")])
    assert results[0].score == 1.0 and judge.calls == [("Which city?", "Lutetia", "Paris")]


def test_overlong_shaping():
    cfg = RewardConfig(overlong=OverlongConfig(enabled=True, buffer=20))
    reward = HybridReward(cfg)
    results = reward.score([
        item(answer="Therefore, the answer is Paris.", response_tokens=90, max_response_tokens=100),
        item(answer="Therefore, the answer is Rome.", response_tokens=50, max_response_tokens=100),
    ])
    assert [r.penalty for r in results] == [-0.5, 0.0] and [r.score for r in results] == [0.5, 0.0]
    assert summarize(results)["reward/overlong_frac"] == 0.5
    with pytest.raises(ValueError, match="max_response_tokens"):
        reward.score([item()])
    with pytest.raises(ConfigError, match="buffer"):
        reward.score([item(response_tokens=5, max_response_tokens=10)])


def test_unknown_names_fail_loudly():
    from longrl.errors import UserError

    with pytest.raises(ConfigError, match="known: choice, numeric, qa"):
        HybridReward(RewardConfig(judge_verifiers=["qa", "exact"]))
    with pytest.raises(UserError, match="unknown task 'poetry'"):
        HybridReward(RewardConfig()).score([item(task="poetry")])


def test_adversarial_responses_score_in_bounded_time():
    """Hostile responses of ~1 MB (nested braces and parentheses, floods, digit runs) through both
    protocols and every task kind. The bound is generous (the target, 50 ms, is `longrl bench
    adversarial`'s); quadratic extraction took 20 s on 5,000 nested \\boxed{ and minutes at 1 MB."""
    import time

    from longrl.rewards.bench import adversarial_inputs

    think = "<think>x</think>Therefore, the answer is "
    cases = adversarial_inputs() + [
        ("20,000 nested parentheses", think + "(" * 20000 + "42" + ")" * 20000),
        ("5,000 nested \\boxed{ around parentheses", think + "\\boxed{(" * 5000 + "42" + ")}" * 5000),
        ("300 nested \\boxed{ around parentheses", think + "\\boxed{(" * 300 + "42" + ")}" * 300),
        ("1,900 nested parentheses", think + "(" * 1900 + "42" + ")" * 1900),
    ]
    # strict: answer lines over 4,000 characters are no answer; the nested ones under it are unwrapped to 42
    expected_strict_docmath = {"300 nested \\boxed{ around parentheses": 1.0, "1,900 nested parentheses": 1.0,
                               "thinking of the size, short answer": 1.0}
    golds = {"multihop": ["Paris"], "docmath": ["42"], "choice": ["B"]}
    slowest = (0.0, "")
    for protocol in ("strict", "published"):
        reward = HybridReward(RewardConfig(protocol=protocol))
        for name, response in cases:
            for task, gold in golds.items():
                start = time.process_time()
                outcome = reward.rule(RewardInput(task=task, question="q", answers=gold, response=response))
                spent = time.process_time() - start
                slowest = max(slowest, (spent, f"{protocol}/{task}/{name}"))
                assert outcome.verdict.score in (0.0, 1.0)
                if protocol == "strict" and task == "docmath":
                    assert outcome.verdict.score == expected_strict_docmath.get(name, 0.0), name
    assert slowest[0] < 2.0, slowest
