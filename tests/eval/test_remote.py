"""The server backend against a loopback OpenAI-compatible server: requests, replies, retries, errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from longrl.eval.protocol import GenerationParams, Request
from longrl.eval.loopback import LoopbackServer, chat_reply, completion_reply
from longrl.eval.prompts import EvalPrompt
from longrl.eval.remote import BackendError, OpenAIBackend

PARAMS = GenerationParams(max_new_tokens=50, temperature=0.7, top_p=0.95)


def request(key="b/1", seed=5):
    return Request(key, EvalPrompt(text="<|im_start|>user\nQ?<|im_end|>\n", user="Q?", ids=None, tokens=7, truncated_tokens=0), seed)


def complete(backend, requests, n=1, params=PARAMS):
    async def go():
        try:
            return await backend.complete(requests, n, params)
        finally:
            await backend.aclose()
    return asyncio.run(go())


def backend_for(server, tokenizer=None, **kw):
    kw.setdefault("backoff_s", 0.0)
    kw.setdefault("api_key_env", None)
    return OpenAIBackend(server.url, kw.pop("model_name", "m"), tokenizer, **kw)


def test_chat_request_and_reply(tokenizer):
    def answer(path, body):
        return 200, chat_reply(["<think>a</think> Therefore, the answer is 4.", "cut off"], completion_tokens=99) | {
            "choices": [{"index": 1, "message": {"content": "cut off"}, "finish_reason": "length"},
                        {"index": 0, "message": {"content": "<think>a</think> Therefore, the answer is 4."}, "finish_reason": "stop"}]}

    with LoopbackServer(answer) as server:
        [[first, second]] = complete(backend_for(server, tokenizer), [request()], n=2)
    path, body = server.requests[0]
    assert path == "/chat/completions"
    assert body == {"model": "m", "max_tokens": 50, "temperature": 0.7, "top_p": 0.95, "n": 2, "seed": 5,
                    "messages": [{"role": "user", "content": "Q?"}]}
    assert (first.text, first.truncated) == ("<think>a</think> Therefore, the answer is 4.", False)  # ordered by index
    assert (second.text, second.truncated) == ("cut off", True)
    assert first.tokens == len(tokenizer.encode(first.text, add_special_tokens=False))  # n > 1: counted, not usage


def test_completions_api_reasoning_and_top_k(tokenizer):
    with LoopbackServer(lambda p, b: (200, completion_reply(["raw text"]) | {"usage": {"completion_tokens": 12}})) as server:
        [[c]] = complete(backend_for(server, tokenizer, api="completions"), [request()], params=GenerationParams(50, 0.0, 1.0, top_k=20))
    path, body = server.requests[0]
    assert path == "/completions" and body["prompt"] == "<|im_start|>user\nQ?<|im_end|>\n" and body["top_k"] == 20
    assert (c.text, c.tokens) == ("raw text", 12)

    reply = {"choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"content": "\n\nTherefore, the answer is 4.", "reasoning_content": "\n2+2=4\n"}}]}
    with LoopbackServer(lambda p, b: (200, reply)) as server:
        [[c]] = complete(backend_for(server, tokenizer), [request()])
    assert c.text == "<think>\n2+2=4\n</think>\n\nTherefore, the answer is 4."


def test_retries_5xx_and_429_then_succeeds():
    statuses = iter([500, 429, 200])

    def answer(path, body):
        status = next(statuses)
        return status, chat_reply(["ok"]) if status == 200 else {"error": "busy"}

    with LoopbackServer(answer) as server:
        [[c]] = complete(backend_for(server, max_attempts=3), [request()])
    assert c.text == "ok" and len(server.requests) == 3


def test_gives_up_after_max_attempts_and_fails_fast_on_4xx():
    with LoopbackServer(lambda p, b: (503, {"error": "down"})) as server:
        with pytest.raises(BackendError, match=r"b/1: model server http://127.0.0.1:\d+/v1/chat/completions: HTTP 503.*gave up after 3 attempts"):
            complete(backend_for(server, max_attempts=3), [request()])
    assert len(server.requests) == 3
    with LoopbackServer(lambda p, b: (400, {"error": "bad model"})) as server:
        with pytest.raises(BackendError, match="HTTP 400.*bad model"):
            complete(backend_for(server, max_attempts=3), [request()])
    assert len(server.requests) == 1


def test_timeouts_are_retried():
    with LoopbackServer(lambda p, b: (200, chat_reply(["late"])), latency_s=0.5) as server:
        with pytest.raises(BackendError, match="timed out after 0.1 s.*gave up after 2 attempts"):
            complete(backend_for(server, max_attempts=2, timeout_s=0.1), [request()])
    assert len(server.requests) == 2


def test_api_key_is_sent_but_never_shown(monkeypatch):
    monkeypatch.setenv("TEST_EVAL_KEY", "sk-secret-123")
    echo = lambda p, b: (401, {"error": "rejected"})  # noqa: E731
    with LoopbackServer(echo) as server:
        backend = backend_for(server, api_key_env="TEST_EVAL_KEY")
        assert "sk-secret" not in repr(backend)
        with pytest.raises(BackendError) as err:
            complete(backend, [request()])
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in str(err.value)

    leaky = lambda p, b: (400, {"error": "your key sk-secret-123 is bad"})  # noqa: E731
    with LoopbackServer(leaky) as server, pytest.raises(BackendError) as err:
        complete(backend_for(server, api_key_env="TEST_EVAL_KEY"), [request()])
    assert "sk-secret" not in str(err.value) and "***" in str(err.value)


def test_n_separate_requests_when_request_n_is_off(tokenizer):
    with LoopbackServer(lambda p, b: (200, chat_reply([f"seed {b['seed']}"]))) as server:
        [item] = complete(backend_for(server, tokenizer, request_n=False), [request(seed=10)], n=3)
    assert sorted(c.text for c in item) == ["seed 10", "seed 11", "seed 12"]
    assert all(body["n"] == 1 for _, body in server.requests)


def test_wrong_choice_count_and_malformed_reply():
    with LoopbackServer(lambda p, b: (200, chat_reply(["only one"]))) as server:
        with pytest.raises(BackendError, match="asked .* for 2 samples, got 1; .*request_n=false"):
            complete(backend_for(server), [request()], n=2)
    with LoopbackServer(lambda p, b: (200, {"result": "?"})) as server:
        with pytest.raises(BackendError, match="malformed reply"):
            complete(backend_for(server), [request()])


def test_model_name_from_the_server():
    def answer(path, body):
        if path == "/models":
            return 200, {"data": [{"id": "served-model"}, {"id": "other"}]}
        return 200, chat_reply([body["model"]])

    with LoopbackServer(answer) as server:
        backend = backend_for(server, model_name=None)
        out = complete(backend, [request("b/1"), request("b/2")])
    assert [c[0].text for c in out] == ["served-model"] * 2 and backend.name == "served-model"
    assert [p for p, _ in server.requests].count("/models") == 1


def test_concurrency_limit_holds():
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def answer(path, body):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        import time
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return 200, chat_reply(["x"])

    with LoopbackServer(answer) as server:
        complete(backend_for(server, concurrency=3), [request(f"b/{i}") for i in range(12)])
    assert len(server.requests) == 12 and state["peak"] == 3
