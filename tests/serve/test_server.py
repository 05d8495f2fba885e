"""`longrl serve` on loopback: the OpenAI endpoints, token-exact rollouts, weight reloads, bad requests."""

from __future__ import annotations

import asyncio
import copy
import re
import threading

import httpx
import pytest
import torch

from longrl.config.rl import RolloutServerConfig
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, stop_token_ids
from longrl.engine.remote import RemoteGenerator
from longrl.eval.prompts import EvalPrompt
from longrl.eval.protocol import GenerationParams, Request
from longrl.eval.remote import OpenAIBackend
from longrl.models.weights import save_weights
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker


@pytest.fixture()
def served(tiny_model, tokenizer, tiny_model_dir, tmp_path):
    """longrl serve of the tiny model (a copy: reloads must not touch the test's own model), reloading from tmp_path."""
    model = copy.deepcopy(tiny_model)
    server = ModelServer(ModelWorker(model, tokenizer, "tiny", str(tiny_model_dir), groups_per_batch=4), port=0,
                         weights_root=tmp_path)
    with server:
        yield server


def post(server, path, body, root=False):
    url = (server.url[: -len("/v1")] if root else server.url) + path
    return httpx.post(url, json=body, timeout=30)


def get(server, path):
    return httpx.get(server.url[: -len("/v1")] + path, timeout=30)


def test_models_lists_the_served_model(served, tiny_model_dir):
    card = get(served, "/v1/models").json()["data"][0]
    assert card["id"] == "tiny" and card["root"] == str(tiny_model_dir) and card["max_model_len"] == 4096
    assert get(served, "/model_info").json()["weight_version"] == get(served, "/get_weight_version").json()["weight_version"] == "default"


def test_completions_are_token_exact_with_the_in_process_engine(served, tiny_model, tokenizer):
    prompt = [5, 17, 300, 41, 9, 77]
    stops = (11, 13)
    body = {"model": "tiny", "prompt": prompt, "n": 4, "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "seed": 1234,
            "stop_token_ids": list(stops), "ignore_eos": True, "return_token_ids": True}
    payload = post(served, "/completions", body).json()
    params = SamplingParams(12, temperature=1.0, top_p=0.9, stop_token_ids=stops)
    (expected,) = SharedPrefixGenerator(tiny_model, tokenizer.pad_token_id).generate([prompt], 4, params, [1234])
    assert [c["token_ids"] for c in payload["choices"]] == expected.completions
    assert all(c["prompt_token_ids"] == prompt for c in payload["choices"])
    assert [c["finish_reason"] == "length" for c in payload["choices"]] == expected.truncated
    for c in payload["choices"]:
        if c["finish_reason"] == "stop":
            assert c["matched_stop"] == c["token_ids"][-1] in stops
    assert payload["usage"]["completion_tokens"] == sum(len(c) for c in expected.completions)
    assert payload["metadata"]["weight_version"] == "default"
    text = post(served, "/completions", {**body, "prompt": tokenizer.decode(prompt), "return_token_ids": False}).json()
    assert "token_ids" not in text["choices"][0] and isinstance(text["choices"][0]["text"], str)


def test_concurrent_requests_are_batched_and_each_keeps_its_tokens(served):
    bodies = [{"prompt": [3 + i, 40, 41 + i], "n": 2, "max_tokens": 6, "seed": i, "return_token_ids": True}
              for i in range(6)]
    alone = [post(served, "/completions", b).json()["choices"] for b in bodies]
    before = served.worker.batches
    results = [None] * len(bodies)

    def call(i):
        results[i] = post(served, "/completions", bodies[i]).json()["choices"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
    assert served.worker.batches - before < len(bodies)        # some requests shared a generate() call


def test_the_rollout_client_against_longrl_serve(served, tiny_model, tokenizer, tmp_path):
    """The server backend end to end: publish weights, check the version, roll out token-exactly."""
    policy = tiny_model
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))               # other weights than the server started with
    generator = RemoteGenerator(RolloutServerConfig(base_url=served.url, api_key_env=None, timeout_s=30), tmp_path)
    generator.sync_weights(policy, "step-1")
    assert served.worker.version == generator.version and generator.version.startswith("step-1@")   # server-named
    for name, tensor in served.worker.model.state_dict().items():
        assert torch.equal(tensor, policy.state_dict()[name]), name
    params = SamplingParams(10, temperature=1.0, stop_token_ids=stop_token_ids(tokenizer, policy))
    prompts, seeds = [[5, 6, 7, 8], [9, 10], [11]], [21, 22, 23]
    remote = generator.generate(prompts, 3, params, seeds)
    local = SharedPrefixGenerator(policy, tokenizer.pad_token_id).generate(prompts, 3, params, seeds)
    assert [g.completions for g in remote] == [g.completions for g in local]
    assert [g.truncated for g in remote] == [g.truncated for g in local]


def test_a_reload_changes_version_and_outputs(served, tiny_model, tmp_path):
    body = {"prompt": [5, 6, 7], "n": 3, "max_tokens": 8, "seed": 3, "temperature": 0, "return_token_ids": True,
            "ignore_eos": True}
    before = [c["token_ids"] for c in post(served, "/completions", body).json()["choices"]]
    with torch.no_grad():
        tiny_model.model.norm.weight.mul_(-3.0)               # a different model: greedy tokens change
    save_weights(tiny_model, tmp_path / "new")
    answer = post(served, "/update_weights_from_disk", {"model_path": str(tmp_path / "new"), "weight_version": "v2"}, root=True)
    assert answer.status_code == 200 and answer.json()["success"] is True
    version = answer.json()["weight_version"]
    assert re.fullmatch(r"v2@[0-9a-f]{8}", version)          # the server names each reload
    after = post(served, "/completions", body).json()
    assert after["metadata"]["weight_version"] == version and get(served, "/model_info").json()["weight_version"] == version
    assert [c["token_ids"] for c in after["choices"]] != before


def test_a_bad_reload_keeps_the_served_weights(served, tiny_model, tmp_path, tiny_arch, tokenizer):
    from longrl.models.tiny import build_tiny_model

    state = {k: v.clone() for k, v in served.worker.model.state_dict().items()}
    wider = build_tiny_model(tiny_arch.model_copy(update={"intermediate_size": 96}), tokenizer)
    save_weights(wider, tmp_path / "wider")
    (tmp_path / "empty").mkdir()
    cases = [({"model_path": str(tmp_path / "wider"), "weight_version": "bad"}, "shape"),
             ({"model_path": str(tmp_path / "empty")}, "no \\*.safetensors"),
             ({"model_path": str(tmp_path / "absent")}, "no such folder"),
             ({"weight_version": "x"}, "model_path")]
    for body, message in cases:
        answer = post(served, "/update_weights_from_disk", body, root=True)
        assert answer.status_code == 400 and answer.json()["success"] is False
        assert re.search(message, answer.json()["message"]), answer.json()
    assert served.worker.version == "default"
    for name, tensor in served.worker.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


BAD_REQUESTS = [
    ("/completions", {"prompt": [1, 2], "model": "other"}, 404, "not served here"),
    ("/completions", {"prompt": [1, 2], "stream": True}, 400, "`stream` is not supported"),
    ("/completions", {"prompt": [1, 2], "stop": ["\n"]}, 400, "`stop` is not supported"),
    ("/completions", {"prompt": [1, 99999]}, 400, "outside the vocabulary"),
    ("/completions", {"prompt": []}, 400, "`prompt` must be"),
    ("/completions", {"prompt": [1], "max_tokens": 5000}, 400, "context window"),
    ("/completions", {"prompt": [1], "n": 0}, 400, "`n` must be"),
    ("/completions", {"prompt": [1], "temperature": "hot"}, 400, "`temperature` must be"),
    ("/completions", {"prompt": [1], "seed": 2 ** 70}, 400, "`seed` must be"),
    ("/chat/completions", {"messages": "hi"}, 400, "`messages` must be"),
    ("/completions", {"prompt": [1], "logprobs": 2}, 400, "`logprobs` must be 0"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400,
     "`logprobs` is not supported"),
    ("/nowhere", {}, 404, "no route"),
]


@pytest.mark.parametrize("path,body,status,message", BAD_REQUESTS, ids=[c[-1] for c in BAD_REQUESTS])
def test_bad_requests_get_clear_errors(served, path, body, status, message):
    answer = post(served, path, body)
    assert answer.status_code == status and message in answer.json()["error"]["message"]


def test_a_body_that_is_not_json_is_refused(served):
    answer = httpx.post(served.url + "/completions", content=b"{nope", timeout=30)
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]["message"]


def test_evaluation_runs_against_longrl_serve(served):
    """The eval model backend (chat API, n samples, usage counts) against the local server."""
    backend = OpenAIBackend(served.url, tokenizer=None, api_key_env=None, concurrency=2, timeout_s=30)
    request = Request(key="item-0", prompt=EvalPrompt(text="", user="What is 2 + 2?", ids=None, tokens=0, truncated_tokens=0),
                      seed=5)

    async def run():
        try:
            return await backend.complete([request], 2, GenerationParams(max_new_tokens=8, temperature=1.0, top_p=1.0))
        finally:
            await backend.aclose()

    ((first, second),) = asyncio.run(run())
    assert backend.model_name == "tiny" and 1 <= first.tokens <= 8 and isinstance(second.text, str)
