"""`longrl eval` through `main(argv)`: flags, config file, resume, errors; the eval config validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from longrl.cli import main
from longrl.eval.loopback import LoopbackServer, chat_reply

ROOT = Path(__file__).resolve().parents[2]


def answer(path, body):
    question = re.search(r"</text>\n\n(.*?)\n\nFormat", body["messages"][0]["content"], re.DOTALL).group(1)
    reply = {"Where was Ilo born?": "Tarsk", "What is Ilo's trade?": "a barrel maker", "Which dataset is used?": "Kest corpus"}
    return 200, chat_reply([f"<think>ok</think> Therefore, the answer is {reply.get(question, 'unknown')}."] * body["n"])


def judge(path, body):
    return 200, chat_reply(["[[YES]]" if "barrel maker" in body["messages"][-1]["content"] else "[[NO]]"])


def test_eval_command_end_to_end_and_rerun(tmp_path, tiny_model_dir, docqa_dir, capsys):
    data = docqa_dir(tmp_path / "data")
    out = tmp_path / "out"
    with LoopbackServer(answer) as server, LoopbackServer(judge) as judge_server:
        argv = ["eval", "--model", server.url, "--model-name", "m", "--tokenizer", str(tiny_model_dir),
                "--benchmarks", "hotpotqa,qasper", "--data-dir", str(data), "--out", str(out),
                "--judge-url", judge_server.url, "--judge-model", "j", "--samples", "2", "--limit", "5",
                "eval.concurrency=2", "eval.judge.api_key_env=null", f"eval.judge.cache_dir={tmp_path / 'cache'}"]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert "HotpotQA" in printed and "Qasper" in printed
        assert len(server.requests) == 3 and {b["n"] for _, b in server.requests} == {2}
        assert main(argv) == 0                      # the same command again: nothing left to ask
        assert len(server.requests) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["hotpotqa"]["score"] == 100.0  # Tarsk by rule, "a barrel maker" by the judge
    assert summary["benchmarks"]["qasper"]["score"] == 100.0 and summary["average"] == 100.0
    assert summary["judge"] == "j" and summary["config"]["samples"] == 2
    assert "| m | 100.0 | 100.0 | 100.0 |" in (out / "results.md").read_text()
    config = (out / "config.yaml").read_text()
    assert "benchmarks:\n  - hotpotqa\n  - qasper" in config or "- hotpotqa" in config


def test_eval_command_from_the_config_file(tmp_path, tiny_model_dir, docqa_dir):
    data = docqa_dir(tmp_path / "data")
    with LoopbackServer(answer) as server:
        argv = ["eval", "--config", str(ROOT / "configs" / "eval_docqa7.yaml"), "--out", str(tmp_path / "out"),
                f"eval.model={server.url}", "eval.model_name=m", f"eval.tokenizer={tiny_model_dir}", f"eval.data_dir={data}"]
        assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["benchmarks"]) == ["docmath", "frames", "2wikimqa", "hotpotqa", "musique", "narrativeqa", "qasper"]
    assert summary["benchmarks"]["qasper"]["score"] == 100.0 and summary["benchmarks"]["docmath"]["score"] == 0.0
    assert summary["config"]["max_new_tokens"] == 10000 and summary["judge"] is None
    body = server.requests[0][1]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["n"]) == (0.7, 0.95, 10000, 1)


def test_eval_protocol_published_is_reported_and_not_mixed(tmp_path, tiny_model_dir, docqa_dir, capsys):
    data = docqa_dir(tmp_path / "data")
    out = tmp_path / "out"

    def replies(path, body):  # "a cooper" for "cooper": a whole word under both protocols; "Kest" only inside the gold
        question = re.search(r"</text>\n\n(.*?)\n\nFormat", body["messages"][0]["content"], re.DOTALL).group(1)
        reply = {"Where was Ilo born?": "Tarsk", "What is Ilo's trade?": "The", "Which dataset is used?": "Kest"}
        return 200, chat_reply([f"<think>ok</think> Therefore, the answer is {reply[question]}."] * body["n"])

    with LoopbackServer(replies) as server:
        argv = ["eval", "--model", server.url, "--model-name", "m", "--tokenizer", str(tiny_model_dir),
                "--benchmarks", "hotpotqa,qasper", "--data-dir", str(data), "--out", str(out), "--protocol", "published"]
        assert main(argv) == 0
        assert "protocol: published" in capsys.readouterr().err
        assert main(argv[:-1] + ["strict"]) == 2    # the same --out under the other protocol: refused, not mixed
        assert "protocol: 'published' -> 'strict'" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "published"
    hotpot, qasper = summary["benchmarks"]["hotpotqa"], summary["benchmarks"]["qasper"]
    assert hotpot["score"] == 100.0 and hotpot["rule/published"] == 100.0 and hotpot["rule/strict"] == 50.0  # "The"
    assert qasper["score"] == 100.0 and qasper["rule/strict"] == 0.0     # strict: half of "kest corpus" is a fragment
    report = (out / "results.md").read_text()
    assert "(protocol: published)" in report and "Protocol: published (prompts and rule scoring as the published" in report
    assert "| published | 100.0 | 100.0 | 100.0 |" in report and "| strict | 50.0 | 0.0 | 25.0 |" in report


def test_config_validates_and_names_are_listed(capsys):
    assert main(["validate", "--config", str(ROOT / "configs" / "eval_docqa7.yaml")]) == 0
    capsys.readouterr()
    assert main(["ls", "evals"]) == 0
    assert capsys.readouterr().out.split() == ["2wikimqa", "docmath", "frames", "hotpotqa", "musique", "narrativeqa",
                                               "qasper", "synthetic-<length>"]


@pytest.mark.parametrize("extra, message", [
    (["--judge-url", "http://127.0.0.1:9/v1"], "--judge-url and --judge-model go together"),
    (["--benchmarks", "hotpot"], "eval.benchmarks: unknown evaluation benchmark 'hotpot'; known: 2wikimqa, docmath"),
    (["--benchmarks", "qasper", "--data-dir", "{tmp}/nowhere"], "nowhere/qasper.jsonl, open: no such file"),
    (["--benchmarks", "synthetic-256", "data.train=[{synth: {seed: 10007}}]"], "eval.synthetic.seed=10007 is also a training data seed"),
    (["--samples", "2", "eval.pass_k=[4]"], "pass_k"),
    (["--model", "http://127.0.0.1:9/v1", "--benchmarks", "synthetic-64"], "--tokenizer"),
])
def test_eval_command_errors(tmp_path, capsys, extra, message):
    argv = ["eval", "--out", str(tmp_path / "out")] + [x.replace("{tmp}", str(tmp_path)) for x in extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_refused_eval_rerun_changes_nothing(tmp_path, tiny_model_dir, docqa_dir, capsys):
    data = docqa_dir(tmp_path / "data")
    out = tmp_path / "out"
    with LoopbackServer(answer) as server:
        argv = ["eval", "--model", server.url, "--model-name", "m", "--tokenizer", str(tiny_model_dir),
                "--benchmarks", "hotpotqa,qasper", "--data-dir", str(data), "--out", str(out), "--limit", "2"]
        assert main(argv) == 0
        assert any("$ longrl eval" in line for line in (out / "log.txt").read_text().splitlines())
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert main(argv + ["--samples", "3"]) == 2                       # another protocol: refused
        assert "another protocol" in capsys.readouterr().err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # An unreachable server fails while its model name is asked for (GET /models): before the run starts.
    never = tmp_path / "never"
    assert main(["eval", "--model", server.url, "--tokenizer", str(tiny_model_dir), "--benchmarks", "qasper",
                 "--data-dir", str(data), "--out", str(never), "eval.max_attempts=1"]) == 2
    assert not never.exists()
