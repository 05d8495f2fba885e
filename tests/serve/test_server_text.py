"""`longrl serve` and text no UTF-8 can carry: a lone surrogate in a request is a 400, never a 500."""

from __future__ import annotations

import copy

import httpx
import pytest

from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker


@pytest.fixture()
def served(tiny_model, tokenizer, tiny_model_dir):
    server = ModelServer(ModelWorker(copy.deepcopy(tiny_model), tokenizer, "tiny", str(tiny_model_dir), groups_per_batch=4),
                         port=0)
    with server:
        yield server


@pytest.mark.parametrize("path,body", [
    ("/completions", b'{"prompt": "Where is \\ud800 Paris?", "max_tokens": 2}'),
    ("/chat/completions", b'{"messages": [{"role": "user", "content": "x\\udfff"}], "max_tokens": 2}'),
    ("/completions", b'{"prompt": "ok", "max_tokens": 2, "stop": ["\\ud83d"]}'),
])
def test_a_lone_surrogate_in_a_request_is_a_400(served, path, body):
    """Issue 25, case 9: JSON-escaped lone surrogates got a 500 from the tokenizer."""
    answer = httpx.post(served.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert "lone surrogate" in answer.json()["error"]["message"]
    fine = httpx.post(served.url + "/completions", json={"prompt": "Where is \U0001f600 Paris?", "max_tokens": 2}, timeout=30)
    assert fine.status_code == 200                         # a real pair (an emoji) is text like any other
