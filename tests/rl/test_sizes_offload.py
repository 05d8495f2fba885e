"""rl/sizes.py's memory check before the first step: offload and a rollout server change what must fit here."""

from __future__ import annotations

from pathlib import Path
import pytest
import torch
from transformers import Qwen2Config

from longrl.config import load_config
from longrl.errors import ConfigError
from longrl.rl.sizes import check_rollout_memory

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
R1_32B = Qwen2Config(vocab_size=152064, hidden_size=5120, num_hidden_layers=64, num_attention_heads=40,
                     num_key_value_heads=8, intermediate_size=27648, tie_word_embeddings=False)


def test_an_in_process_rollout_is_checked_and_a_servers_is_not():
    # the 32B recipe's phase 2 rolled out in process: hundreds of GiB (weights, AdamW state, a 60K group's cache),
    # more than any CPU machine running the tests has
    cfg = load_config(CONFIGS / "qwenlong_l1_32b.yaml", ["rollout.max_input_tokens=60000", "rollout.backend=engine"])
    with pytest.raises(ConfigError, match="the rollout needs about"):
        check_rollout_memory(cfg, R1_32B, torch.device("cpu"), world=1)
    served = load_config(CONFIGS / "qwenlong_l1_32b.yaml", ["rollout.max_input_tokens=60000"])
    assert served.rollout.backend == "server"
    check_rollout_memory(served, R1_32B, torch.device("cpu"), world=1)          # the server's memory is its own
