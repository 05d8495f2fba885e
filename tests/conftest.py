"""Test environment: offline, CPU, 2 torch threads, deterministic, no network but loopback.

Fixtures:
  tokenizer      the default byte-level BPE tokenizer shipped with longrl
  tiny_arch      a very small TinyArchConfig (hidden 64, 2 layers, GQA) for fast tests
  tiny_model     a seeded random-init Qwen2ForCausalLM of that shape, fp32, eval mode
  tiny_model_dir that model saved as a Hugging Face folder (safetensors + tokenizer)
  samples        a dozen synthetic samples (all three families) at ~200 tokens
  judge_server   a loopback OpenAI-compatible judge (judge_server.py); judge_cfg: a JudgeConfig for it
  docqa_rows     {benchmark: [row, ...]}: tiny rows in the published formats of the seven DocQA benchmarks
  docqa_dir      a function folder -> folder, writing docmath.jsonl, frames.jsonl and the five LongBench files
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

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
from judge_server import JudgeServer  # noqa: E402

torch.set_num_threads(2)

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
        raise OSError(f"tests are offline: connection to {host!r} blocked (only loopback is allowed)")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need a CUDA device: skipped (with the reason) where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
    from longrl.config.model import TinyArchConfig

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


@pytest.fixture()
def judge_server():
    server = JudgeServer()
    yield server
    server.close()


@pytest.fixture()
def judge_cfg(judge_server, tmp_path):
    """A JudgeConfig for the loopback server: fast retries, cache in tmp_path."""
    from longrl.config.reward import JudgeConfig

    return JudgeConfig(base_url=judge_server.url, model="judge-test", timeout_s=2.0, backoff_s=0.01,
                       max_attempts=3, concurrency=4, cache_dir=str(tmp_path / "cache"), api_key_env="LONGRL_TEST_JUDGE_KEY")


DOCMATH = [
    {"question_id": "dm-1", "question": "What was the total revenue in 2019 and 2020, in millions?",
     "paragraphs": ["Revenue was $1,200 million in 2019.", "  ", "Revenue was $1,350 million in 2020."], "ground_truth": 2550},
    {"question": "By what fraction did costs grow?", "paragraphs": ["Costs went from 200 to 250."], "ground_truth": 0.25},
]
FRAMES = [
    {"Prompt": "Which river flows through the capital of Veldra?", "Answer": "The Sarn",
     "wiki_items": [{"title": "Veldra", "text": "The capital of Veldra is Oster."}, {"title": "Oster", "text": "Oster lies on the Sarn."}]},
]
LONGBENCH = {
    "2wikimqa": [{"_id": "w1", "input": "Who directed the film Nora?", "context": "Passage 1: Nora is a film by Ada Kell.", "answers": ["Ada Kell"]}],
    "hotpotqa": [{"_id": "h1", "input": "Where was Ilo born?", "context": "Ilo was born in Tarsk.", "answers": ["Tarsk"]},
                 {"_id": "h2", "input": "What is Ilo's trade?", "context": "Ilo is a cooper.", "answers": ["cooper", "a cooper"]}],
    "musique": [{"_id": "m1", "input": "Which country is Tarsk in?", "context": "Tarsk is a town in Brevia.", "answers": ["Brevia"]}],
    "narrativeqa": [{"_id": "n1", "input": "Who finds the key?", "context": "In the end, Mara finds the key.", "answers": ["Mara"]}],
    "qasper": [{"_id": "q1", "input": "Which dataset is used?", "context": "We evaluate on the Kest corpus.", "answers": ["Kest corpus"]}],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def docqa_rows() -> dict[str, list]:
    return {"docmath": DOCMATH, "frames": FRAMES, **LONGBENCH}


@pytest.fixture()
def docqa_dir(docqa_rows):
    def write(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in docqa_rows.items():
            write_jsonl(folder / f"{name}.jsonl", rows)
        return folder

    return write
