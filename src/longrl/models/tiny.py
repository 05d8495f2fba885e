"""The embedded default model: a tiny Qwen2-architecture decoder built offline, seeded.

    tokenizer = load_default_tokenizer()
    model = build_tiny_model(TinyArchConfig(hidden_size=64, num_hidden_layers=2), tokenizer)
    save_pretrained(model, tokenizer, "runs/tiny")   # loads back with AutoModelForCausalLM

It is an ordinary `Qwen2ForCausalLM`: every code path that trains it is the one a 32B run uses.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from longrl.config.model import TinyArchConfig
from longrl.models.circuits import init_retrieval_circuit
from longrl.models.tokenizer import IM_END, PAD, save_tokenizer


def tiny_model_config(arch: TinyArchConfig, tokenizer):
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        max_position_embeddings=arch.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": arch.rope_theta},
        tie_word_embeddings=arch.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        use_sliding_window=False,
        torch_dtype="float32",
    )


def build_tiny_model(arch: TinyArchConfig, tokenizer):
    """A randomly initialised Qwen2ForCausalLM; the same `arch.init_seed` gives the same weights.

    `arch.init: retrieval` then writes the retrieval circuit of `longrl.models.circuits` into it.
    """

    config = tiny_model_config(arch, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch.init_seed)
        model = Qwen2ForCausalLM(config)
    if arch.init == "retrieval":
        init_retrieval_circuit(model, tokenizer, seed=arch.init_seed)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model


def save_pretrained(model, tokenizer, path: str | Path) -> None:
    """Model (safetensors) + tokenizer in one Hugging Face folder."""
    model.save_pretrained(str(path), safe_serialization=True)
    save_tokenizer(tokenizer, path)
