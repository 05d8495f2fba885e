"""Evaluating a server with no --tokenizer: its /tokenize and /detokenize (a loopback server tokenizing the
way vLLM does, with a real tokenizer) count and truncate prompts exactly as the local tokenizer would."""

from __future__ import annotations

import json
import re

import pytest

from longrl.cli import main
from longrl.data.prompt import render_chat, user_message
from longrl.errors import ConfigError
from longrl.eval.loopback import LoopbackServer, chat_reply
from longrl.eval.prompts import prepare_prompt
from longrl.eval.server_tokenizer import ServerTokenizer


def tokenizing_server(tokenizer, chat_messages: bool = True, detokenize_key: str = "prompt"):
    """A handler answering like vLLM (chat messages accepted) or SGLang (prompts only, "text" from /detokenize)."""

    def handler(path, body):
        if path == "/tokenize":
            if "messages" in body:
                if not chat_messages:
                    return 400, {"error": "prompt is required"}
                text = tokenizer.apply_chat_template(body["messages"], tokenize=False,
                                                     add_generation_prompt=body.get("add_generation_prompt", True))
                ids = tokenizer.encode(text, add_special_tokens=False)
            else:
                ids = tokenizer.encode(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))
            return 200, {"tokens": ids, "count": len(ids), "max_model_len": 4096}
        if path == "/detokenize":
            return 200, {detokenize_key: tokenizer.decode(body["tokens"])}
        if path == "/models":
            return 200, {"data": [{"id": "served"}]}
        if path == "/chat/completions":
            question = re.search(r"</text>\n\n(.*?)\n\nFormat", body["messages"][0]["content"], re.DOTALL).group(1)
            answer = {"Where was Ilo born?": "Tarsk"}.get(question, "unknown")
            return 200, chat_reply([f"<think>ok</think> Therefore, the answer is {answer}."] * body["n"])
        return 404, {"error": "not found"}

    return handler


def test_counts_and_cuts_like_the_local_tokenizer(tokenizer, samples):
    with LoopbackServer(tokenizing_server(tokenizer)) as server:
        remote = ServerTokenizer.connect(server.url, None, None)
        assert remote.model_name == "served"                       # asked GET /models once
        text = "Revenue was 1,250 in 2023."
        assert remote.encode(text) == tokenizer.encode(text, add_special_tokens=False)
        assert remote.decode(tokenizer.encode(text, add_special_tokens=False)) == text
        user = user_message(samples[0])
        assert remote.apply_chat_template([{"role": "user", "content": user}]) == render_chat(tokenizer, user)
        for sample in samples[:3]:
            local = prepare_prompt(tokenizer, sample, None, with_ids=False)
            served = prepare_prompt(remote, sample, None, with_ids=False)
            assert (served.text, served.user, served.tokens) == (local.text, local.user, local.tokens)
            cut = prepare_prompt(remote, sample, local.tokens - 40, with_ids=False)   # middle-truncated by the server's counts
            assert cut.truncated_tokens > 0 and cut.tokens <= local.tokens - 40
            assert len(tokenizer.encode(cut.text, add_special_tokens=False)) == cut.tokens
        assert {body.get("model") for path, body in server.requests if path in ("/tokenize", "/detokenize")} == {"served"}
        remote.close()


def test_a_server_without_chat_tokenization_still_counts_the_user_turn(tokenizer, samples, capsys):
    with LoopbackServer(tokenizing_server(tokenizer, chat_messages=False, detokenize_key="text")) as server:
        remote = ServerTokenizer.connect(server.url, "m", None)
        user = user_message(samples[0])
        assert remote.apply_chat_template([{"role": "user", "content": user}]) == user
        assert "takes no chat messages" in capsys.readouterr().err
        assert prepare_prompt(remote, samples[0], None).tokens == len(tokenizer.encode(user, add_special_tokens=False))


def test_a_server_that_cannot_tokenize_asks_for_the_flag():
    with LoopbackServer(lambda path, body: (404, {"error": "no such route"})) as server:
        with pytest.raises(ConfigError, match="/tokenize did not answer .*pass --tokenizer"):
            ServerTokenizer.connect(server.url, "m", None)


def test_eval_command_without_tokenizer(tmp_path, tokenizer, docqa_dir):
    data = docqa_dir(tmp_path / "data")
    with LoopbackServer(tokenizing_server(tokenizer)) as server:
        argv = ["eval", "--model", server.url, "--benchmarks", "hotpotqa", "--data-dir", str(data),
                "--out", str(tmp_path / "out"), "--limit", "3", "eval.max_input_tokens=120"]
        assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["benchmarks"]["hotpotqa"]["n"] == 2 and summary["benchmarks"]["hotpotqa"]["score"] == 50.0  # Tarsk right
    protocol = json.loads((tmp_path / "out" / "hotpotqa" / "protocol.json").read_text())
    assert protocol["tokenizer"] == server.url[: -len("/v1")] + "/tokenize"
    rows = [json.loads(line) for line in (tmp_path / "out" / "hotpotqa" / "samples.jsonl").read_text().splitlines()]
    assert all(r["prompt_tokens"] <= 120 for r in rows)
