"""The harness end to end against loopback model and judge servers: scores by hand, resume, protocol."""

from __future__ import annotations

import json
import re

import pytest

from judge_server import field_of
from longrl.config.eval import DOCQA7, EvalConfig
from longrl.config.reward import JudgeConfig, RewardConfig
from longrl.errors import ConfigError
from longrl.eval.benchmarks import load_suites
from longrl.eval.harness import evaluate, item_seed
from longrl.eval.loopback import LoopbackServer, chat_reply
from longrl.eval.remote import BackendError, OpenAIBackend
from longrl.rewards.hybrid import HybridReward


def said(answer: str) -> str:
    return f"<think>I read the text.</think> Therefore, the answer is {answer}."


# question -> the two samples the model server returns for it
REPLIES = {
    "What was the total revenue in 2019 and 2020, in millions?": [said("2,550"), said("2550")],     # docmath: right, right
    "By what fraction did costs grow?": [said("0.25"), said("0.25")],                                # docmath: right, right
    "Which river flows through the capital of Veldra?": [said("The Sarn"), said("the Sarn")],        # frames: right, right
    "Who directed the film Nora?": [said("Bob Stone"), said("Bob Stone")],                          # 2wiki: rule 0, judge YES
    "Where was Ilo born?": [said("Tarsk"), said("Oster")],                                           # hotpotqa: right; rule 0 + judge NO
    "What is Ilo's trade?": ["<think>Ilo is a", "<think>Ilo is a"],                                  # hotpotqa: unfinished think
    "Which country is Tarsk in?": [said("Oster"), said("Oster")],                                    # musique: rule 0, judge NO
    "Who finds the key?": ["<think>x</think> Mara, I think.", "<think>x</think> Mara."],             # narrativeqa: no answer phrase
    "Which dataset is used?": [said("the Kest corpus"), said("Kest corpus")],                        # qasper: right, right
}
EXPECTED = {"docmath": 100.0, "frames": 100.0, "2wikimqa": 100.0, "hotpotqa": 25.0, "musique": 0.0, "narrativeqa": 0.0, "qasper": 100.0}
QUESTION_RE = re.compile(r"</text>\n\n(.*?)\n\nFormat your response", re.DOTALL)


def question_of(body) -> str:
    return QUESTION_RE.search(body["messages"][0]["content"]).group(1)


def model_answer(path, body):
    return 200, chat_reply(REPLIES[question_of(body)][: body["n"]])


def judge_answer(path, body):
    user = body["messages"][-1]["content"]
    return 200, chat_reply(["Same person. [[YES]]" if "Bob Stone" in user else "Different. [[NO]]"])


@pytest.fixture()
def setup(tmp_path, tokenizer, docqa_dir):
    suites = load_suites(DOCQA7, docqa_dir(tmp_path / "data"))
    cfg = EvalConfig(samples=2, pass_k=[2], concurrency=4)
    return suites, cfg


def run(server, judge, tokenizer, suites, cfg, out, tmp_path, **kw):
    backend = OpenAIBackend(server.url, "m", tokenizer, concurrency=cfg.concurrency, backoff_s=0.0, api_key_env=None, max_attempts=2)
    judge_cfg = JudgeConfig(base_url=judge.url, model="judge", api_key_env=None, cache_dir=str(tmp_path / "cache"))
    return evaluate(backend, tokenizer, suites, cfg, HybridReward(RewardConfig(judge=judge_cfg)), out, seed=3, progress="none", **kw)


def test_scores_by_hand(setup, tokenizer, tmp_path):
    suites, cfg = setup
    out = tmp_path / "out"
    with LoopbackServer(model_answer) as server, LoopbackServer(judge_answer) as judge:
        summary = run(server, judge, tokenizer, suites, cfg, out, tmp_path)
    scores = {name: b["score"] for name, b in summary["benchmarks"].items()}
    assert scores == pytest.approx(EXPECTED)
    assert summary["average"] == pytest.approx(425 / 7)
    hotpot = summary["benchmarks"]["hotpotqa"]
    assert hotpot["n"] == 2 and hotpot["samples"] == 2 and hotpot["pass@1"] == pytest.approx(25.0)
    assert hotpot["pass@2"] == pytest.approx(50.0)                   # h1 has a right sample, h2 none
    assert hotpot["reward/unfinished_think"] == pytest.approx(0.5)
    assert summary["benchmarks"]["narrativeqa"]["reward/no_answer"] == 1.0
    assert summary["benchmarks"]["2wikimqa"]["reward/judge"] == 1.0 and summary["benchmarks"]["2wikimqa"]["reward/rule"] == 0.0
    assert summary["benchmarks"]["docmath"]["version"] == "longrl-docqa/1" and summary["judge"] == "judge"
    assert summary["model"] == "m" and summary["config"]["samples"] == 2
    # the judge was asked only where the rule said 0 and a prediction existed: Bob Stone and Oster (once each: cached/deduplicated)
    asked = sorted({field_of(b, "prediction") for _, b in judge.requests})
    assert asked == ["Bob Stone", "Oster"]
    # one request per item, all n samples in it, seeded per item
    assert len(server.requests) == 9 and all(b["n"] == 2 for _, b in server.requests)
    seeds = {question_of(b): b["seed"] for _, b in server.requests}
    assert seeds["Where was Ilo born?"] == item_seed(3, "hotpotqa", "h1")
    # per-sample rows
    rows = sorted((json.loads(x) for x in (out / "hotpotqa" / "samples.jsonl").read_text().splitlines()),
                  key=lambda r: (r["id"], r["sample"]))  # file order = finishing order
    assert [(r["id"], r["sample"], r["score"]) for r in rows] == [("h1", 0, 1.0), ("h1", 1, 0.0), ("h2", 0, 0.0), ("h2", 1, 0.0)]
    assert rows[1]["prediction"] == "Oster" and rows[1]["rule_score"] == 0.0 and rows[1]["judge_score"] == 0.0
    assert rows[0]["judge_score"] is None and rows[0]["prompt_tokens"] > 20 and rows[0]["truncated_tokens"] == 0
    assert rows[2]["status"] == "unfinished_think" and rows[2]["answers"] == ["cooper", "a cooper"]
    # reports
    table = (out / "results.md").read_text()
    assert "| model | DocMath | Frames | 2Wiki | HotpotQA | MuSiQue | NarrativeQA | Qasper | Avg |" in table
    assert "| m | 100.0 | 100.0 | 100.0 | 25.0 | 0.0 | 0.0 | 100.0 | 60.7 |" in table
    assert json.loads((out / "summary.json").read_text())["average"] == pytest.approx(425 / 7)


def test_interrupted_run_resumes_without_repeating_requests(setup, tokenizer, tmp_path):
    suites, cfg = setup
    out = tmp_path / "out"
    broken = "Which country is Tarsk in?"  # musique: the server fails on it for good

    def flaky(path, body):
        return (500, {"error": "overloaded"}) if question_of(body) == broken else model_answer(path, body)

    with LoopbackServer(flaky) as server, LoopbackServer(judge_answer) as judge:
        with pytest.raises(BackendError, match="musique/m1: .*HTTP 500.*gave up after 2 attempts"):
            run(server, judge, tokenizer, suites, cfg, out, tmp_path)
    finished = {name: {json.loads(x)["id"] for x in (out / name / "samples.jsonl").read_text().splitlines()} for name in DOCQA7}
    done = {q for q in REPLIES if any(q == s.question for n in DOCQA7 for s in suites[n].samples if s.id in finished[n])}
    assert broken not in done and 0 < len(done) < 9
    assert not (out / "summary.json").exists()

    with LoopbackServer(model_answer) as server, LoopbackServer(judge_answer) as judge:
        summary = run(server, judge, tokenizer, suites, cfg, out, tmp_path)
    asked = [question_of(b) for _, b in server.requests]
    assert sorted(asked) == sorted(set(REPLIES) - done)  # no finished item asked again, every missing one asked once
    assert {n: b["score"] for n, b in summary["benchmarks"].items()} == pytest.approx(EXPECTED)

    # a kill mid-write leaves a torn last line: that item alone is asked again
    path = out / "qasper" / "samples.jsonl"
    path.write_bytes(path.read_bytes()[:-15])
    with LoopbackServer(model_answer) as server, LoopbackServer(judge_answer) as judge:
        again = run(server, judge, tokenizer, suites, cfg, out, tmp_path)
    assert [question_of(b) for _, b in server.requests] == ["Which dataset is used?"]
    assert again["benchmarks"] == summary["benchmarks"]

    # nothing left: a rerun sends no request at all
    with LoopbackServer(model_answer) as server, LoopbackServer(judge_answer) as judge:
        run(server, judge, tokenizer, suites, cfg, out, tmp_path)
    assert server.requests == []


def test_other_protocol_is_refused_limit_can_grow(setup, tokenizer, tmp_path):
    suites, cfg = setup
    out = tmp_path / "out"
    with LoopbackServer(model_answer) as server, LoopbackServer(judge_answer) as judge:
        first = run(server, judge, tokenizer, {"hotpotqa": suites["hotpotqa"]}, cfg.model_copy(update={"limit": 1}), out, tmp_path)
        assert first["benchmarks"]["hotpotqa"]["n"] == 1
        grown = run(server, judge, tokenizer, {"hotpotqa": suites["hotpotqa"]}, cfg, out, tmp_path)
        assert grown["benchmarks"]["hotpotqa"]["n"] == 2 and len(server.requests) == 2  # h1 once, then h2 only
        with pytest.raises(ConfigError, match=r"another protocol \(temperature: 0.7 -> 0.5\)"):
            run(server, judge, tokenizer, {"hotpotqa": suites["hotpotqa"]}, cfg.model_copy(update={"temperature": 0.5}), out, tmp_path)


def test_plain_sample_lists_and_truncated_prompts(tokenizer, samples, tmp_path):
    cfg = EvalConfig(samples=1, max_input_tokens=120)  # the ~200-token synthetic prompts get cut

    def echo(path, body):
        return 200, chat_reply([said("nothing")], finish="length", completion_tokens=7)

    with LoopbackServer(echo) as server:
        backend = OpenAIBackend(server.url, "m", tokenizer, api_key_env=None)
        summary = evaluate(backend, tokenizer, {"held-out": samples[:3]}, cfg, HybridReward(RewardConfig()), tmp_path, progress="none")
    entry = summary["benchmarks"]["held-out"]
    assert entry["version"] == "custom" and entry["n"] == 3 and entry["score"] == 0.0
    assert entry["prompt_tokens/mean"] == 120 and entry["prompt_truncated_frac"] == 1.0
    assert entry["response_truncated_frac"] == 1.0 and entry["response_tokens/mean"] == 7
    for _, body in server.requests:
        text = body["messages"][0]["content"]
        assert text.startswith("Please read the following text") and "Format your response as follows" in text
