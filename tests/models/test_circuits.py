"""The retrieval circuit: positional heads at offsets 1 and 2, and values found at init on held-out items."""

from __future__ import annotations

import pytest
import torch

from longrl.config.model import TinyArchConfig
from longrl.models.circuits import check_shape, init_retrieval_circuit
from longrl.models.tiny import build_tiny_model, tiny_model_config

SHAPE = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
             intermediate_size=128, rope_theta=1e8)


@pytest.fixture(scope="module")
def circuit_model(tokenizer):
    return build_tiny_model(TinyArchConfig(**SHAPE, init="retrieval"), tokenizer).eval()


def test_layer0_heads_attend_one_and_two_tokens_back(circuit_model):
    circuit_model.set_attn_implementation("eager")
    try:
        ids = torch.randint(10, 1300, (1, 200), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            attn = circuit_model(input_ids=ids, output_attentions=True).attentions[0][0]   # (heads, T, T)
    finally:
        circuit_model.set_attn_implementation("sdpa")
    positions = torch.arange(3, 200)
    for head, offset in ((0, 1), (1, 2)):
        weight = attn[head, positions, positions - offset]
        assert weight.min() > 0.99, (head, float(weight.min()))


def test_values_are_found_at_init_and_not_without_the_circuit(circuit_model, tokenizer):
    from longrl.data.synthetic import synthesize
    from longrl.pretrain import value_accuracy

    items = synthesize(["lookup"], 6, 300, seed=5, hops=8, tokenizer=tokenizer)
    assert value_accuracy(circuit_model, tokenizer, items)["value_accuracy"] >= 95
    plain = build_tiny_model(TinyArchConfig(**SHAPE), tokenizer).eval()
    assert value_accuracy(plain, tokenizer, items)["value_accuracy"] <= 10


def test_far_apart_facts_still_match(circuit_model, tokenizer):
    from longrl.data.synthetic import synthesize
    from longrl.pretrain import value_accuracy

    items = synthesize(["lookup"], 2, 1500, seed=6, hops=8, tokenizer=tokenizer)
    assert value_accuracy(circuit_model, tokenizer, items)["value_accuracy"] >= 90


def test_shapes_that_cannot_hold_it_are_refused(tokenizer):
    with pytest.raises(ValueError, match="2 attention heads"):
        check_shape(tiny_model_config(TinyArchConfig(**{**SHAPE, "num_attention_heads": 4, "num_key_value_heads": 4}), tokenizer))
    with pytest.raises(ValueError, match="rope_theta"):
        check_shape(tiny_model_config(TinyArchConfig(**{**SHAPE, "rope_theta": 10000.0}), tokenizer))


def test_same_seed_same_weights_and_plain_qwen2(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from longrl.models.tiny import save_pretrained

    a = build_tiny_model(TinyArchConfig(**SHAPE, init="retrieval"), tokenizer)
    b = build_tiny_model(TinyArchConfig(**SHAPE, init="retrieval"), tokenizer)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    save_pretrained(a, tokenizer, tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert type(again).__name__ == "Qwen2ForCausalLM"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), again.state_dict().values()))


def test_init_writes_in_place(tokenizer):
    model = build_tiny_model(TinyArchConfig(**SHAPE), tokenizer)
    init_retrieval_circuit(model, tokenizer)
    assert float(model.model.layers[0].mlp.down_proj.weight.abs().sum()) == 0.0
