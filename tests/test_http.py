"""longrl.http: the pure helpers on tables, then OpenAIClient against a real loopback server."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest
from loopback import Answer, ScriptedServer

from longrl.errors import UserError
from longrl.http import (
    OpenAIClient,
    RetryPolicy,
    ServerError,
    api_key_from_env,
    backoff_delay,
    is_retryable,
    parse_retry_after,
    redact,
    snippet,
)

FAST = RetryPolicy(max_attempts=3, backoff_s=0.0, max_backoff_s=1.0, timeout_s=2.0)


def reference_delay(attempt, backoff_s, max_backoff_s, retry_after=None):
    """Naive schedule: start at backoff_s and double once per earlier failure; Retry-After replaces it."""
    wait = backoff_s
    for _ in range(attempt - 1):
        wait *= 2
    if retry_after is not None:
        wait = retry_after
    return min(max_backoff_s, wait)


@pytest.mark.parametrize("backoff_s,max_backoff_s", [(0.5, 30.0), (1.0, 60.0), (0.0, 5.0), (0.01, 0.05), (2.0, 0.0)])
@pytest.mark.parametrize("retry_after", [None, 0.0, 3.0, 120.0])
def test_backoff_delay_matches_reference(backoff_s, max_backoff_s, retry_after):
    for attempt in range(1, 12):
        expected = reference_delay(attempt, backoff_s, max_backoff_s, retry_after)
        assert backoff_delay(attempt, backoff_s, max_backoff_s, retry_after) == pytest.approx(expected), attempt


BACKOFF_CASES = [
    ((1, 0.5, 30.0), 0.5, "the first wait is backoff_s"),
    ((3, 0.5, 30.0), 2.0, "doubles per attempt"),
    ((8, 0.5, 30.0), 30.0, "capped at max_backoff_s"),
    ((10_000, 1.0, 60.0), 60.0, "a huge attempt count does not overflow"),
    ((2, 0.5, 30.0, 0.0), 0.0, "Retry-After 0 means now (not the exponential wait)"),
    ((1, 0.5, 30.0, 120.0), 30.0, "Retry-After is capped too"),
]


@pytest.mark.parametrize("args,expected,reason", BACKOFF_CASES, ids=[c[-1] for c in BACKOFF_CASES])
def test_backoff_delay_cases(args, expected, reason):
    assert backoff_delay(*args) == expected, reason


RETRY_AFTER_CASES = [
    ("2", 2.0, "whole seconds"),
    ("0.5", 0.5, "fractions"),
    (" 3 ", 3.0, "surrounding spaces"),
    ("0", 0.0, "zero: retry now"),
    ("3599", 3599.0, "just under an hour"),
    ("3600", None, "an hour or more is no retry hint"),
    ("-1", None, "negative"),
    ("nan", None, "not a number"),
    ("inf", None, "infinite"),
    ("soon", None, "text"),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None, "the HTTP-date form is not read"),
    ("", None, "empty"),
    (None, None, "absent"),
]


@pytest.mark.parametrize("value,expected,reason", RETRY_AFTER_CASES, ids=[c[-1] for c in RETRY_AFTER_CASES])
def test_parse_retry_after(value, expected, reason):
    assert parse_retry_after(value) == expected, reason


@pytest.mark.parametrize("status,expected", [(400, False), (401, False), (404, False), (422, False), (429, True),
                                             (500, True), (502, True), (503, True), (599, True)])
def test_is_retryable(status, expected):
    assert is_retryable(status) is expected


REDACT_CASES = [
    ("key sk-1 and sk-1 again", "sk-1", "key *** and *** again", "every occurrence"),
    ("nothing secret", "sk-1", "nothing secret", "absent secret"),
    ("any text", "", "any text", "no key: nothing to hide"),
]


@pytest.mark.parametrize("text,secret,expected,reason", REDACT_CASES, ids=[c[-1] for c in REDACT_CASES])
def test_redact(text, secret, expected, reason):
    assert redact(text, secret) == expected, reason


SNIPPET_CASES = [
    ("a\n  b\tc ", 200, "a b c", "whitespace runs collapse to one space"),
    ("x" * 200, 200, "x" * 200, "exactly the limit stays whole"),
    ("x" * 201, 200, "x" * 200 + "...", "longer is cut and marked"),
    ("", 200, "", "empty"),
]


@pytest.mark.parametrize("text,limit,expected,reason", SNIPPET_CASES, ids=[c[-1] for c in SNIPPET_CASES])
def test_snippet(text, limit, expected, reason):
    assert snippet(text, limit) == expected, reason


def test_api_key_from_env(monkeypatch):
    monkeypatch.setenv("LONGRL_TEST_HTTP_KEY", "  sk-abc\n")
    assert api_key_from_env("LONGRL_TEST_HTTP_KEY") == "sk-abc"  # a key pasted with its newline still works
    monkeypatch.delenv("LONGRL_TEST_HTTP_KEY")
    assert api_key_from_env("LONGRL_TEST_HTTP_KEY") == ""        # unset: no key (keyless local servers)
    assert api_key_from_env(None) == ""
    monkeypatch.setenv("LONGRL_TEST_HTTP_KEY", "sk-a\nsk-b")
    with pytest.raises(UserError, match="LONGRL_TEST_HTTP_KEY holds characters") as err:
        api_key_from_env("LONGRL_TEST_HTTP_KEY")
    assert "sk-a" not in str(err.value)


def chat(text: str = "ok") -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def call(client: OpenAIClient, method: str = "POST", path: str = "/chat/completions", body: dict | None = None):
    """One request in its own event loop (POST sends {"model": "m"} unless given a body)."""
    if body is None and method == "POST":
        body = {"model": "m"}

    async def go():
        try:
            return await client.request(method, path, body)
        finally:
            await client.aclose()

    return asyncio.run(go())


def client_for(server, retry: RetryPolicy = FAST, **kw) -> OpenAIClient:
    kw.setdefault("api_key_env", None)
    kw.setdefault("concurrency", 4)
    return OpenAIClient(server.url, retry=retry, **kw)


def test_request_and_reply():
    with ScriptedServer(lambda seen: Answer(json=chat("hello"))) as server:
        client = client_for(server)
        reply = call(client, body={"model": "m", "messages": []})
        models = call(client, "GET", "/models")
    assert reply.payload == chat("hello") and reply.attempts == 1 and models.attempts == 1
    post, get = server.requests
    assert (post.method, post.path, post.body) == ("POST", "/v1/chat/completions", {"model": "m", "messages": []})
    assert (get.method, get.path, get.body) == ("GET", "/v1/models", None)
    assert "Authorization" not in post.headers and client.attempts == 2


def test_retries_429_and_5xx_then_succeeds():
    with ScriptedServer(lambda seen: Answer(json=chat())) as server:
        server.script = [Answer(429, json={"error": "slow down"}, headers={"Retry-After": "0"}), Answer(502, body="bad gateway")]
        reply = call(client_for(server))
    assert reply.attempts == 3 and reply.payload == chat() and server.count == 3


def test_gives_up_after_max_attempts_with_the_last_error():
    with ScriptedServer(lambda seen: Answer(503, body="overloaded\n  try later")) as server:
        with pytest.raises(ServerError) as err:
            call(client_for(server))
    assert isinstance(err.value, UserError) and err.value.attempts == 3 and server.count == 3
    assert err.value.problem == "HTTP 503: overloaded try later (gave up after 3 attempts)"
    assert str(err.value) == f"{server.url}/chat/completions: {err.value.problem}"


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_fail_at_once(status):
    with ScriptedServer(lambda seen: Answer(status, json={"error": "bad model"})) as server:
        with pytest.raises(ServerError, match=f"HTTP {status}: .*bad model") as err:
            call(client_for(server))
    assert err.value.attempts == 1 and server.count == 1 and "gave up" not in err.value.problem


def test_reply_that_is_not_json_fails_at_once():
    with ScriptedServer(lambda seen: Answer(body="<html>gateway</html>")) as server:
        with pytest.raises(ServerError, match=r"malformed reply \(not JSON\): <html>gateway</html>"):
            call(client_for(server))
    assert server.count == 1


def gaps(server) -> list[float]:
    times = [seen.at for seen in server.requests]
    return [b - a for a, b in zip(times, times[1:])]


def test_exponential_backoff_between_attempts():
    retry = RetryPolicy(max_attempts=3, backoff_s=0.1, max_backoff_s=10.0, timeout_s=2.0)
    with ScriptedServer(lambda seen: Answer(500, body="boom")) as server, pytest.raises(ServerError):
        call(client_for(server, retry))
    first, second = gaps(server)
    assert 0.1 <= first < 0.6 and 0.2 <= second < 0.8  # 0.1 s, then 0.2 s (plus the round trip)


def test_retry_after_is_honoured_capped_and_ignored_past_an_hour():
    slow = RetryPolicy(max_attempts=2, backoff_s=5.0, max_backoff_s=10.0, timeout_s=2.0)
    with ScriptedServer(lambda seen: Answer(json=chat())) as server:
        server.script = [Answer(429, headers={"Retry-After": "0.3"})]
        call(client_for(server, slow))                       # the server's 0.3 s, not the 5 s backoff
        [gap] = gaps(server)
    assert 0.3 <= gap < 2.0
    capped = RetryPolicy(max_attempts=2, backoff_s=0.0, max_backoff_s=0.05, timeout_s=2.0)
    with ScriptedServer(lambda seen: Answer(json=chat())) as server:
        server.script = [Answer(503, headers={"Retry-After": "30"})]
        call(client_for(server, capped))                     # 30 s capped at 0.05 s
        [gap] = gaps(server)
    assert gap < 2.0
    quick = RetryPolicy(max_attempts=2, backoff_s=0.05, max_backoff_s=60.0, timeout_s=2.0)
    with ScriptedServer(lambda seen: Answer(json=chat())) as server:
        server.script = [Answer(503, headers={"Retry-After": "86400"})]
        call(client_for(server, quick))                      # a day: no hint, the 0.05 s backoff instead
        [gap] = gaps(server)
    assert 0.05 <= gap < 2.0


def test_timeouts_are_retried():
    retry = RetryPolicy(max_attempts=2, backoff_s=0.0, max_backoff_s=1.0, timeout_s=0.2)
    with ScriptedServer(lambda seen: Answer(json=chat("in time"))) as server:
        server.script = [Answer(json=chat("late"), delay=0.8)]
        reply = call(client_for(server, retry))
        assert reply.payload == chat("in time") and reply.attempts == 2
        server.script = [Answer(delay=0.8)] * 2
        with pytest.raises(ServerError, match=r"timed out after 0.2 s \(gave up after 2 attempts\)"):
            call(client_for(server, retry))


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    client = OpenAIClient(f"http://127.0.0.1:{port}/v1/", api_key_env=None, concurrency=2, retry=FAST)
    with pytest.raises(ServerError, match=r"connection error \(ConnectError: .*\) \(gave up after 3 attempts\)") as err:
        call(client)
    assert err.value.url == f"http://127.0.0.1:{port}/v1/chat/completions" and client.attempts == 3


def test_api_key_is_sent_and_never_shown(monkeypatch):
    secret = "sk-http-test-0123456789"
    monkeypatch.setenv("LONGRL_TEST_HTTP_KEY", secret)
    with ScriptedServer(lambda seen: Answer(500, body=f"internal error for key {secret}")) as server:
        client = client_for(server, api_key_env="LONGRL_TEST_HTTP_KEY")
        with pytest.raises(ServerError) as err:
            call(client)
    assert all(seen.headers["Authorization"] == f"Bearer {secret}" for seen in server.requests)
    assert secret not in str(err.value) and "***" in err.value.problem
    assert secret not in repr(client) and client.redact(f"x{secret}y") == "x***y"


def test_json_escaped_key_echo_is_redacted(monkeypatch):
    """A key holding a quote and a backslash, echoed by the server inside a JSON error body."""
    secret = 'sk-q"uo\\te/0123'
    monkeypatch.setenv("LONGRL_TEST_HTTP_KEY", secret)
    body = json.dumps({"error": {"message": f"invalid key {secret}"}})
    with ScriptedServer(lambda seen: Answer(400, body=body)) as server:
        with pytest.raises(ServerError) as err:
            call(client_for(server, api_key_env="LONGRL_TEST_HTTP_KEY"))
    assert json.dumps(secret)[1:-1] in body                 # the echo really is escaped
    text = str(err.value)
    assert secret not in text and json.dumps(secret)[1:-1] not in text and "sk-q" not in text and "***" in text


def test_url_credentials_are_used_but_never_shown():
    with ScriptedServer(lambda seen: Answer(500, body=f"denied for {seen.headers.get('Authorization')}")) as server:
        url = server.url.replace("http://", "http://alice-the-user:sk-url-secret-42@")
        client = OpenAIClient(url, api_key_env=None, concurrency=2, retry=FAST)
        with pytest.raises(ServerError) as err:
            call(client)
    basic = base64.b64encode(b"alice-the-user:sk-url-secret-42").decode()
    assert server.requests[0].headers["Authorization"] == f"Basic {basic}"   # httpx sends them as Basic auth
    shown = " ".join([str(err.value), err.value.url, repr(client), client.url("/models"), client.base_url])
    for secret in ("sk-url-secret-42", "alice-the-user", basic):
        assert secret not in shown
    assert err.value.url.startswith("http://***@127.0.0.1:") and "***" in err.value.problem


def test_missing_key_is_explained_on_401(monkeypatch):
    monkeypatch.delenv("LONGRL_TEST_HTTP_KEY", raising=False)
    with ScriptedServer(lambda seen: Answer(401, body="unauthorized")) as server:
        with pytest.raises(ServerError, match="no API key sent: environment variable LONGRL_TEST_HTTP_KEY is not set"):
            call(client_for(server, api_key_env="LONGRL_TEST_HTTP_KEY"))
        with pytest.raises(ServerError, match="no API key sent: no api_key_env is configured"):
            call(client_for(server, api_key_env=None))
    assert all("Authorization" not in seen.headers for seen in server.requests) and server.count == 2


def test_concurrency_limit_over_lanes_and_event_loops():
    server = ScriptedServer(lambda seen: Answer(json=chat(), delay=0.05))
    client = client_for(server, concurrency=5, lane_connections=2)  # lanes of 2, 2 and 1 connections

    async def many(n, close):
        replies = await asyncio.gather(*(client.request("POST", "/chat/completions", {"i": i}) for i in range(n)))
        if close:
            await client.aclose()
        return replies

    with server:
        for close in (False, True):  # two event loops, the first left unclosed
            assert all(r.attempts == 1 for r in asyncio.run(many(15, close)))
    assert server.count == 30 and client.attempts == 30 and server.max_in_flight == 5


def test_waiting_out_a_backoff_holds_no_slot():
    """With one slot, a request sleeping before its retry lets another one through meanwhile."""
    retry = RetryPolicy(max_attempts=2, backoff_s=0.0, max_backoff_s=5.0, timeout_s=2.0)

    def answer(seen):
        return Answer(json=chat(seen.body["name"]))

    with ScriptedServer(answer) as server:
        server.script = [Answer(503, headers={"Retry-After": "0.4"})]
        client = client_for(server, retry, concurrency=1)

        async def both():
            first = asyncio.create_task(client.request("POST", "/chat/completions", {"name": "first"}))
            await asyncio.sleep(0.1)  # `first` got its 503 and sleeps
            second = await client.request("POST", "/chat/completions", {"name": "second"})
            result = await first, second
            await client.aclose()
            return result

        first, second = asyncio.run(both())
    assert [seen.body["name"] for seen in server.requests] == ["first", "second", "first"]
    assert first.attempts == 2 and second.attempts == 1


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIClient("http://127.0.0.1:9/v1", api_key_env=None, concurrency=0, retry=FAST)
    with pytest.raises(ValueError, match="lane_connections"):
        OpenAIClient("http://127.0.0.1:9/v1", api_key_env=None, concurrency=4, retry=FAST, lane_connections=0)
