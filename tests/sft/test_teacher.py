"""The teacher client's pure parts: reasoning put back into <think>, and the key kept out of errors."""

from __future__ import annotations

import asyncio

import pytest

from longrl.config.sft import TeacherConfig
from longrl.sft.teacher import TeacherClient, TeacherError, reply_text


@pytest.mark.parametrize("message, expected", [
    ({"content": "<think>a</think>B"}, "<think>a</think>B"),                      # already in one piece
    ({"reasoning_content": " 6*7=42 ", "content": " Therefore, the answer is 42."},
     "<think>6*7=42</think>Therefore, the answer is 42."),                         # DeepSeek / vLLM reasoning parser
    ({"reasoning": "r", "content": "A"}, "<think>r</think>A"),                      # newer vLLM field name
    ({"reasoning_content": "r", "content": "<think>x</think>A"}, "<think>x</think>A"),  # content wins when whole
    ({"content": "\nr</think>A"}, "<think>r</think>A"),                            # R1 template opened the block
    ({"content": None}, ""),                                                       # empty reply: scores 0 later
])
def test_reply_text(message, expected):
    assert reply_text(message) == expected


def test_errors_never_show_the_key(monkeypatch, teachers):
    monkeypatch.setenv("LONGRL_TEST_TEACHER_KEY", "sk-abc")
    server = teachers.start(lambda body, q: teachers.Fail(503))
    cfg = TeacherConfig(base_url=server.url, model="m", samples=1, backoff_s=0.0, max_attempts=2,
                        api_key_env="LONGRL_TEST_TEACHER_KEY")
    client = TeacherClient(cfg)

    async def call():
        try:
            return await client.sample([{"role": "user", "content": "hi sk-abc"}])
        finally:
            await client.aclose()

    with pytest.raises(TeacherError, match="gave up after 2 attempts") as err:
        asyncio.run(call())
    assert "sk-abc" not in str(err.value) and "sk-abc" not in repr(client)
    assert client.requests == 2
