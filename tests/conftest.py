"""Test environment: offline, CPU, 2 torch threads, deterministic, no network but loopback.

Fixtures:
  tokenizer      the default byte-level BPE tokenizer shipped with longrl
  tiny_arch      a very small TinyArchConfig (hidden 64, 2 layers, GQA) for fast tests
  tiny_model     a seeded random-init Qwen2ForCausalLM of that shape, fp32, eval mode
  tiny_model_dir that model saved as a Hugging Face folder (safetensors + tokenizer)
  samples        a dozen synthetic samples (all three families) at ~200 tokens
"""

from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LONGRL_NO_PROGRESS", "1")
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine (CI, parallel jobs) spinning
# threads make small torch ops up to ~40x slower. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
        raise OSError(f"tests are offline: connection to {host!r} blocked (only loopback is allowed)")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tokenizer():
    from longrl.models.tokenizer import load_default_tokenizer

    return load_default_tokenizer()


@pytest.fixture(scope="session")
def tiny_arch():
    from longrl.models.config import TinyArchConfig

    return TinyArchConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=128, max_position_embeddings=4096, init_seed=0)


@pytest.fixture()
def tiny_model(tiny_arch, tokenizer):
    from longrl.models.tiny import build_tiny_model

    return build_tiny_model(tiny_arch, tokenizer).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_arch, tokenizer):
    from longrl.models.tiny import build_tiny_model, save_pretrained

    path = tmp_path_factory.mktemp("tiny_model")
    save_pretrained(build_tiny_model(tiny_arch, tokenizer), tokenizer, path)
    return path


@pytest.fixture(scope="session")
def samples(tokenizer):
    from longrl.data.synthetic import synthesize

    return synthesize(["docmath", "multihop", "choice"], n=12, length=200, seed=0, tokenizer=tokenizer)
