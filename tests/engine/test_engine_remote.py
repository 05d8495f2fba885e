"""The rollout-server client: reply checks on a table, then the protocols against scripted loopback servers
(SGLang's and vLLM's reload sequences; a server that is down, slow, malformed or fails to reload)."""

from __future__ import annotations

import math
import socket

import pytest

from longrl.config.rl import RolloutServerConfig
from longrl.engine.generate import SamplingParams
from longrl.engine.remote import (
    RemoteGenerator,
    RolloutServerError,
    completion_body,
    read_group,
    server_root,
)
from loopback import Answer, ScriptedServer, Seen

PARAMS = SamplingParams(max_new_tokens=4, temperature=1.0, top_p=0.9, stop_token_ids=(2, 5))
PROMPT = [7, 8, 9]


def choice(ids, finish="stop", index=0, **extra):
    return {"index": index, "text": "", "finish_reason": finish, "token_ids": ids, **extra}


def reply(*choices, **extra):
    return {"object": "text_completion", "choices": list(choices), **extra}


def test_server_root_strips_the_api_suffix():
    assert server_root("http://h:30000/v1") == server_root("http://h:30000/v1/") == "http://h:30000"
    assert server_root("http://h:30000") == "http://h:30000"


def test_completion_body_asks_for_token_ids_and_longrls_stop_rule():
    body = completion_body("m", PROMPT, 8, SamplingParams(16, temperature=0.7, top_p=0.95, top_k=20,
                                                          stop_token_ids=(9, 3)), 12345, "sglang")
    assert body["prompt"] == PROMPT and body["n"] == 8 and body["seed"] == 12345 and body["max_tokens"] == 16
    assert body["stop_token_ids"] == [3, 9] and body["return_token_ids"] is True
    assert body["top_k"] == 20 and body["no_stop_trim"] is True
    assert "ignore_eos" not in body                                    # SGLang's would switch stop_token_ids off
    vllm = completion_body("m", PROMPT, 2, SamplingParams(16), 1, "vllm")
    assert "top_k" not in vllm and "no_stop_trim" not in vllm          # top_k 0 = off: not sent
    assert vllm["ignore_eos"] is True                                  # vLLM's keeps stop_token_ids in force


def test_read_group_takes_token_ids_in_index_order():
    group = read_group(reply(choice([1, 3, 4, 6], "length", index=1), choice([4, 2], index=0)), PROMPT, 2, PARAMS)
    assert group.completions == [[4, 2], [1, 3, 4, 6]] and group.truncated == [False, True]
    assert group.prompt_ids == PROMPT and all(math.isnan(x) for lps in group.logprobs for x in lps)


def test_read_group_puts_back_a_trimmed_stop_token():
    sglang = read_group(reply(choice([4], matched_stop=5)), PROMPT, 1, PARAMS)       # SGLang's name
    vllm = read_group(reply(choice([4], stop_reason=2)), PROMPT, 1, PARAMS)          # vLLM's name
    assert sglang.completions == [[4, 5]] and vllm.completions == [[4, 2]] and not sglang.truncated[0]


def test_read_group_takes_the_servers_token_logprobs_when_given():
    lps = {"token_logprobs": [-0.5, -1.25], "tokens": ["a", "b"]}
    group = read_group(reply(choice([4, 2], logprobs=lps)), PROMPT, 1, PARAMS)
    assert group.logprobs == [[-0.5, -1.25]]
    trimmed = read_group(reply(choice([4], matched_stop=5, logprobs={"token_logprobs": [-0.5]})), PROMPT, 1, PARAMS)
    assert trimmed.logprobs[0][0] == -0.5 and math.isnan(trimmed.logprobs[0][1])     # the stop token put back
    assert completion_body("m", PROMPT, 2, SamplingParams(16), 1, "vllm", logprobs=True)["logprobs"] == 0
    assert "logprobs" not in completion_body("m", PROMPT, 2, SamplingParams(16), 1, "vllm")


READ_ERRORS = [
    (reply(choice([1, 3, 4, 6], "length", logprobs={"token_logprobs": [-1.0, -2.0]})), 1, "2 token log-probs for 4"),
    (reply(choice([4, 2], logprobs={"token_logprobs": ["x", 1]})), 1, "not a list of numbers"),
    (reply(choice([1, 2])), 2, "n=2 samples, got 1"),                         # the server ignored n
    ({"choices": "x"}, 1, "no choices"),
    (reply({"index": 0, "text": "hi", "finish_reason": "stop"}), 1, "return_token_ids"),   # text only
    (reply(choice([1, 2], prompt_token_ids=[7, 8])), 1, "changed the prompt"),   # e.g. a BOS was added
    (reply(choice([1, 3])), 1, "without one of the stop token ids"),          # stop, but no stop id anywhere
    (reply(choice([1, 3], matched_stop=9)), 1, "stopped on token 9"),         # the server's eos is not longrl's
    (reply(choice([2, 1, 5])), 1, "in the middle"),                           # the server ignored a stop id
    (reply(choice([1, 3, 4, 6, 7], "length")), 1, "max_tokens=4"),            # ran past max_tokens
    (reply(choice([1, 3], "length")), 1, "context window"),                   # cut short by the context
    (reply(choice([1, 3], "abort")), 1, "finish_reason 'abort'"),
    (reply(choice([1, -3], "length")), 1, "return_token_ids"),                # not token ids
]


@pytest.mark.parametrize("payload,n,message", READ_ERRORS, ids=[e[-1] for e in READ_ERRORS])
def test_read_group_refuses_unusable_replies(payload, n, message):
    with pytest.raises(ValueError, match=message):
        read_group(payload, PROMPT, n, PARAMS)


class FakeSGLang(ScriptedServer):
    """SGLang's surface: completions with token ids, /update_weights_from_disk, /model_info."""

    def __init__(self, model_info=True):
        super().__init__()
        self.version, self.model_info = "default", model_info
        self.loaded: list[str] = []

    def respond(self, seen: Seen) -> Answer:
        path = seen.path
        if path == "/v1/models":
            return Answer(json={"data": [{"id": "served"}]})
        if path == "/update_weights_from_disk":
            self.loaded.append(seen.body["model_path"])
            self.version = seen.body["weight_version"]
            return Answer(json={"success": True, "message": "ok", "num_paused_requests": 0})
        if path == "/model_info":
            return Answer(json={"weight_version": self.version}) if self.model_info else Answer(404, json={"detail": "Not Found"})
        if path == "/get_weight_version":
            return Answer(json={"weight_version": self.version})
        if path == "/v1/completions":
            body = seen.body
            ids = [[body["seed"] % 50 + 10, body["stop_token_ids"][0]] for _ in range(body["n"])]
            return Answer(json=reply(*(choice(c, index=i) for i, c in enumerate(ids))))
        return Answer(404, json={"detail": "Not Found"})


def config(url, **kw) -> RolloutServerConfig:
    return RolloutServerConfig(base_url=url, api_key_env=None, timeout_s=kw.pop("timeout_s", 2.0), backoff_s=0.0, **kw)


@pytest.mark.parametrize("model_info", [True, False], ids=["model_info", "older SGLang: get_weight_version"])
def test_sglang_protocol_publish_then_roll_out(tiny_model, tmp_path, model_info):
    with FakeSGLang(model_info) as server:
        generator = RemoteGenerator(config(server.url), tmp_path / "served")
        generator.sync_weights(tiny_model, "step-0")
        assert server.loaded == [str((tmp_path / "served" / "step-0").resolve())]
        assert (tmp_path / "served" / "step-0" / "model.safetensors").is_file()
        groups = generator.generate([PROMPT, [3, 4]], 3, PARAMS, [101, 102])
        assert [g.completions for g in groups] == [[[11, 2]] * 3, [[12, 2]] * 3]     # seed % 50 + 10, stop
        sent = [s.body for s in server.requests if s.path == "/v1/completions"]
        assert [b["prompt"] for b in sent] == [PROMPT, [3, 4]] and {b["n"] for b in sent} == {3}
        assert sorted(b["seed"] for b in sent) == [101, 102] and {b["model"] for b in sent} == {"served"}
        generator.sync_weights(tiny_model, "step-1")                 # the older folder goes once replaced
        assert not (tmp_path / "served" / "step-0").exists() and server.version == "step-1"


def test_vllm_protocol_pauses_reloads_versions_and_resumes(tiny_model, tmp_path):
    state = {"version": None}

    def decide(seen: Seen) -> Answer:
        if seen.path == "/update_weight_version":
            state["version"] = seen.body["new_version"]
        if seen.path == "/weight_info":
            return Answer(json={"weight_version": state["version"]})
        return Answer(json={"status": "ok"})

    with ScriptedServer(decide) as server:
        generator = RemoteGenerator(config(server.url, reload_api="vllm"), tmp_path)
        generator.sync_weights(tiny_model, "step-4")
    paths = [s.path for s in server.requests]
    assert paths == ["/pause", "/collective_rpc", "/update_weight_version", "/resume", "/weight_info"]
    rpc = server.requests[1].body
    assert rpc == {"method": "reload_weights", "kwargs": {"weights_path": str((tmp_path / "step-4").resolve())}}


def test_a_server_that_is_down_is_a_clear_error(tiny_model, tmp_path):
    with socket.socket() as s:                           # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    generator = RemoteGenerator(config(f"http://127.0.0.1:{port}/v1", max_attempts=2), tmp_path)
    with pytest.raises(RolloutServerError, match=r"reloading .*connection error.*gave up after 2 attempts"):
        generator.sync_weights(tiny_model, "step-0")
    with pytest.raises(RolloutServerError, match="no weights published"):
        generator.generate([PROMPT], 2, PARAMS, [0])


def test_a_slow_server_times_out(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url, timeout_s=0.3, max_attempts=2, model_name="served"), tmp_path)
        generator.sync_weights(tiny_model, "step-0")
        server.script = [Answer(json={"weight_version": "step-0"})] + [Answer(delay=1.0)] * 2
        with pytest.raises(RolloutServerError, match=r"prompt 0 \(rollout\).*timed out after 0.3 s"):
            generator.generate([PROMPT], 2, PARAMS, [0])


def test_transient_errors_are_retried(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url), tmp_path)
        generator.sync_weights(tiny_model, "step-0")
        server.script = [Answer(json={"weight_version": "step-0"}), Answer(json={"data": [{"id": "served"}]}),
                         Answer(503, body="busy")]
        (group,) = generator.generate([PROMPT], 2, PARAMS, [7])
        assert group.completions == [[17, 2], [17, 2]]


def test_malformed_replies_are_errors_naming_the_prompt(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url), tmp_path)
        generator.sync_weights(tiny_model, "step-0")
        server.script = [Answer(json={"weight_version": "step-0"}), Answer(json={"data": [{"id": "served"}]}),
                         Answer(body="<html>oops</html>")]
        with pytest.raises(RolloutServerError, match=r"prompt 0 \(rollout\).*not JSON"):
            generator.generate([PROMPT], 2, PARAMS, [7])
        server.script = [Answer(json={"weight_version": "step-0"}), Answer(json=reply(choice([1, 2])))]
        with pytest.raises(RolloutServerError, match=r"prompt 0: malformed reply: asked for n=2"):
            generator.generate([PROMPT], 2, PARAMS, [7])


def test_a_refused_reload_is_an_error_and_nothing_is_rolled_out(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url), tmp_path)
        server.script = [Answer(400, json={"success": False, "message": "shape mismatch in lm_head"})]
        with pytest.raises(RolloutServerError, match="shape mismatch in lm_head"):
            generator.sync_weights(tiny_model, "step-0")
        server.script = [Answer(json={"success": False, "message": "out of memory"})]      # a 200 that says no
        with pytest.raises(RolloutServerError, match="refused .* out of memory"):
            generator.sync_weights(tiny_model, "step-0")
        assert generator.version is None and not any(s.path == "/v1/completions" for s in server.requests)


def test_a_reload_that_does_not_change_the_version_is_an_error(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url), tmp_path)
        server.script = [Answer(json={"success": True}), Answer(json={"weight_version": "default"})]
        with pytest.raises(RolloutServerError, match="reports weight version 'default', not 'step-0'"):
            generator.sync_weights(tiny_model, "step-0")


def test_a_server_holding_other_weights_is_never_rolled_out(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url), tmp_path)
        generator.sync_weights(tiny_model, "step-3")
        server.version = "default"                          # it restarted with its startup weights
        with pytest.raises(RolloutServerError, match="reports weight version 'default'.*published 'step-3'.*rerun"):
            generator.generate([PROMPT], 2, PARAMS, [0])
        assert not any(s.path == "/v1/completions" for s in server.requests)


def test_a_reply_from_other_weights_is_refused(tiny_model, tmp_path):
    with FakeSGLang() as server:
        generator = RemoteGenerator(config(server.url, model_name="served"), tmp_path)
        generator.sync_weights(tiny_model, "step-1")
        server.script = [Answer(json={"weight_version": "step-1"}),
                         Answer(json=reply(choice([4, 2]), metadata={"weight_version": "step-0"}))]
        with pytest.raises(RolloutServerError, match="answered by weight version 'step-0', not the published 'step-1'"):
            generator.generate([PROMPT], 1, PARAMS, [0])
