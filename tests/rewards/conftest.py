"""Fixtures of the reward tests: a loopback judge server (judge_server.py) and a JudgeConfig for it."""

from __future__ import annotations

import pytest
from judge_server import JudgeServer


@pytest.fixture()
def judge_server():
    server = JudgeServer()
    yield server
    server.close()


@pytest.fixture()
def judge_cfg(judge_server, tmp_path):
    """A JudgeConfig for the loopback server: fast retries, cache in tmp_path."""
    from longrl.rewards.config import JudgeConfig

    return JudgeConfig(base_url=judge_server.url, model="judge-test", timeout_s=2.0, backoff_s=0.01,
                       max_attempts=3, concurrency=4, cache_dir=str(tmp_path / "cache"), api_key_env="LONGRL_TEST_JUDGE_KEY")
