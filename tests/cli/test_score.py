"""`longrl score` end to end: rule + loopback judge, rerun from the cache, bad rows, the API key."""

from __future__ import annotations

import json

import pytest
from judge_server import Reply

from longrl.cli import main

ROWS = [
    {"id": "m1", "task": "multihop", "question": "Which city?", "response": "<think>a</think>Therefore, the answer is Paris.", "answers": ["Paris"]},
    {"id": "m2", "task": "multihop", "question": "Which city?", "response": "<think>a</think>Therefore, the answer is Lutetia.", "answers": ["Paris"]},
    {"id": "m3", "task": "multihop", "question": "Which river?", "response": "<think>a</think>Therefore, the answer is the Rhine.", "answers": ["Seine"]},
    {"id": "d1", "task": "docmath", "question": "Total?", "response": "<think>a</think>Therefore, the answer is $1,250.", "answers": ["1250"]},
    {"id": "d2", "task": "docmath", "question": "Share?", "response": "<think>a</think>Therefore, the answer is one half", "answers": ["0.5"]},
    {"id": "c1", "task": "choice", "question": "Which clause?", "response": "<think>a</think>The correct answer is (B).", "answers": ["(B)"]},
    {"id": "c2", "task": "choice", "question": "Which clause?", "response": "<think>never finished", "answers": ["C"], "extra": {"kept": True}},
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def lenient_judge(body):
    from judge_server import field_of

    yes = field_of(body, "prediction") in ("Lutetia", "one half")
    return Reply(content="Same meaning. [[YES]]" if yes else "Different. [[NO]]")


def test_score_with_judge_then_rerun_from_cache(judge_server, tmp_path, capsys, monkeypatch):
    secret = "sk-cli-secret-42"
    monkeypatch.setenv("LONGRL_JUDGE_API_KEY", secret)
    judge_server.decide = lenient_judge
    inp, out, cache = write_rows(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl", tmp_path / "cache"
    argv = ["score", "--input", inp, "--output", str(out), "--judge-url", judge_server.url, "--judge-model", "judge-m",
            "--cache-dir", str(cache)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    rows = read_rows(out)
    assert [r["id"] for r in rows] == [r["id"] for r in ROWS]
    by_id = {r["id"]: r for r in rows}
    assert by_id["m1"]["score"] == 1.0 and by_id["m1"]["judge_score"] is None and by_id["m1"]["prediction"] == "Paris"
    assert by_id["m2"]["rule_score"] == 0.0 and by_id["m2"]["judge_score"] == 1.0 and by_id["m2"]["score"] == 1.0
    assert by_id["m3"]["judge_score"] == 0.0 and by_id["m3"]["score"] == 0.0
    assert by_id["d1"]["score"] == 1.0 and by_id["d2"]["judge_score"] == 1.0
    assert by_id["c1"]["score"] == 1.0 and by_id["c2"]["status"] == "unfinished_think" and by_id["c2"]["extra"] == {"kept": True}
    assert by_id["m1"]["metrics"] == {"em": 1.0, "f1": 1.0}
    assert judge_server.count == 3
    assert all(r.headers["Authorization"] == f"Bearer {secret}" for r in judge_server.requests)
    assert "scores per task" in captured.out and "multihop" in captured.out and "docmath" in captured.out
    first_output = out.read_text()

    assert main(argv) == 0
    rerun = capsys.readouterr()
    assert judge_server.count == 3  # every verdict came from the cache
    assert out.read_text() == first_output
    for text in (captured.out, captured.err, rerun.out, rerun.err, first_output,
                 *[p.read_text() for p in cache.rglob("*.json")]):
        assert secret not in text


def test_judge_failures_stop_the_command_and_write_nothing(judge_server, tmp_path, capsys):
    judge_server.decide = lambda body: Reply(status=500, body="boom")
    inp, out = write_rows(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
    code = main(["score", "--input", inp, "--output", str(out), "--judge-url", judge_server.url, "--judge-model", "m",
                 "--cache-dir", str(tmp_path / "c"), "reward.judge.backoff_s=0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "the judge failed on 3 of 3 calls" in err and "HTTP 500" in err
    assert not out.exists()


BAD_ROWS = [
    ("[1, 2]", None, "expected a JSON object"),
    ('{"id": "x", "task": "multihop", "question": "q", "response": "r"}', "answers", "non-empty list"),
    ('{"id": "x", "task": "poetry", "question": "q", "response": "r", "answers": ["a"]}', "task", "unknown task 'poetry'"),
    ('{"id": "x", "task": "multihop", "question": "q", "response": 5, "answers": ["a"]}', "response", "expected a string"),
    ('{"id": "x", "task": "docmath", "question": "q", "response": "r", "answers": ["about half"]}', "answers", "no number"),
    ('{"id": "x", "task": "choice", "question": "q", "response": "r", "answers": ["Paris"]}', "answers", "not an option letter"),
    ('{"id": "x", "task": "multihop", "question": "q", "response": "r", "answers": [""]}', "answers", "non-empty strings"),
    ('{"task": "multihop", "question": "q", "response": "r", "answers": ["a"]}', "id", "missing"),
    ('{"id": "x", "task": "multihop"', None, "malformed JSON"),
]


@pytest.mark.parametrize("line,field,problem", BAD_ROWS, ids=[b[-1] for b in BAD_ROWS])
def test_bad_row_names_its_line_and_field(tmp_path, capsys, line, field, problem):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(ROWS[0]) + "\n\n" + line + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["score", "--input", str(inp), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{inp}, line 3" in err and problem in err
    if field:
        assert f"field '{field}'" in err
    assert not out.exists()


def test_flags_config_and_overrides(tmp_path, capsys):
    plain = {"id": "p", "task": "docmath", "question": "q", "response": "Therefore, the answer is 101", "answers": ["100"]}
    inp, out = write_rows(tmp_path / "in.jsonl", [plain]), tmp_path / "out.jsonl"
    assert main(["score", "--input", inp, "--output", str(out)]) == 0
    assert read_rows(out)[0]["status"] == "unfinished_think"
    config = tmp_path / "c.yaml"
    config.write_text("reward:\n  numeric_rel_tol: 0.05\n")
    assert main(["score", "--input", inp, "--output", str(out), "--no-require-think", "--config", str(config)]) == 0
    assert read_rows(out)[0]["score"] == 1.0
    assert main(["score", "--input", inp, "--output", str(out), "--no-require-think", "reward.numeric_rel_tol=0"]) == 0
    assert read_rows(out)[0]["score"] == 0.0
    capsys.readouterr()
    assert main(["score", "--input", inp, "--output", str(out), "--judge-url", "http://127.0.0.1:9/v1"]) == 2
    assert "--judge-url and --judge-model go together" in capsys.readouterr().err
    assert main(["score", "--input", inp, "--output", str(out), "--cache-dir", str(tmp_path)]) == 2
    assert "--cache-dir applies to the judge" in capsys.readouterr().err


def test_overlong_rows_need_lengths(tmp_path, capsys):
    row = {"id": "p", "task": "multihop", "question": "q", "response": "<think>a</think>Therefore, the answer is X", "answers": ["X"]}
    inp, out = write_rows(tmp_path / "in.jsonl", [row]), tmp_path / "out.jsonl"
    assert main(["score", "--input", inp, "--output", str(out), "reward.overlong.enabled=true", "reward.overlong.buffer=10"]) == 2
    assert "field 'response_tokens'" in capsys.readouterr().err
    inp = write_rows(tmp_path / "in2.jsonl", [{**row, "response_tokens": 95, "max_response_tokens": 100}])
    assert main(["score", "--input", inp, "--output", str(out), "reward.overlong.enabled=true", "reward.overlong.buffer=10"]) == 0
    assert read_rows(out)[0]["penalty"] == -0.5 and read_rows(out)[0]["score"] == 0.5


def test_ls_verifiers(capsys):
    assert main(["ls", "verifiers"]) == 0
    assert capsys.readouterr().out.split() == ["choice", "numeric", "qa"]


def test_score_protocol_flag_and_context(tmp_path, capsys):
    rows = [
        {"id": "y", "task": "multihop", "question": "q", "response": "<think>a</think>Therefore, the answer is yesterday",
         "answers": ["yes"]},
        {"id": "t", "task": "docmath", "question": "Sales?", "response": "<think>a</think>Therefore, the answer is 2500",
         "answers": ["2500000"], "context": "Sales (in thousands): 2,500"},
    ]
    source = write_rows(tmp_path / "in.jsonl", rows)
    scores = {}
    for protocol in ("strict", "published"):
        out = tmp_path / f"{protocol}.jsonl"
        assert main(["score", "--protocol", protocol, "--input", source, "--output", str(out)]) == 0
        assert f"(protocol: {protocol})" in capsys.readouterr().err
        scores[protocol] = [r["rule_score"] for r in read_rows(out)]
    assert scores == {"strict": [0.0, 1.0], "published": [1.0, 1.0]}
    bad = write_rows(tmp_path / "bad.jsonl", [{**rows[1], "context": 3}])
    assert main(["score", "--input", bad, "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "context" in capsys.readouterr().err


def test_answers_as_one_plain_string(tmp_path):
    # what the verl and TRL adapters accept, `longrl score` accepts too
    rows = [{**ROWS[0], "answers": "Paris"}, {**ROWS[1], "answers": "Paris"}]
    out = tmp_path / "out.jsonl"
    assert main(["score", "--input", write_rows(tmp_path / "in.jsonl", rows), "--output", str(out)]) == 0
    assert [r["score"] for r in read_rows(out)] == [1.0, 0.0]
